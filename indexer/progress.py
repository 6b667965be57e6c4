"""Per-stage progress of a streamed ingest: documents done, their rate, the chunks per second and an ETA.

On a terminal each stage is a tqdm bar; elsewhere (a log file, a CI job, `--json`-less pipes) one log line
every `interval` seconds and one at the end. Stages run on their own threads, so every update takes a lock.
The number of documents a stage will see grows while the scan runs (it is only known once the scan ends),
so an ETA before that counts the documents found so far.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import IO, Any

from common.console import is_terminal

log = logging.getLogger(__name__)


@dataclass
class StageMeter:
    """What one stage did: documents (the unit of its total) and items (chunks) since its first update."""

    name: str
    unit: str = "doc"  # what `total` and `docs` count (the load stage counts files)
    item_unit: str = "chunk"
    total: int = 0  # documents this stage will see, as far as known
    final: bool = False  # the total is known for good
    docs: int = 0
    items: int = 0
    started: float | None = None
    finished: float | None = None
    bar: Any = field(default=None, repr=False)

    def rates(self, now: float) -> tuple[float, float]:
        """(documents per second, items per second) since the stage started."""
        if self.started is None:
            return 0.0, 0.0
        dt = max((self.finished or now) - self.started, 1e-9)
        return self.docs / dt, self.items / dt

    def eta(self, now: float) -> float | None:
        """Seconds left at the current rate, None before the first document."""
        doc_rate, _ = self.rates(now)
        if doc_rate <= 0:
            return None
        return max(self.total - self.docs, 0) / doc_rate

    def line(self, now: float) -> str:
        doc_rate, item_rate = self.rates(now)
        total = f"{self.total}" if self.final else f"{self.total}+"
        eta = self.eta(now)
        tail = "" if eta is None or self.docs >= self.total and self.final else f", ETA {_clock(eta)}"
        return (f"{self.name} {self.docs}/{total} {self.unit}s ({doc_rate:.1f} {self.unit}/s, {self.items} {self.item_unit}s, "
                f"{item_rate:.1f} {self.item_unit}/s{tail})")


def _clock(seconds: float) -> str:
    s = int(round(seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


class IngestProgress:
    """`update(stage, docs, items)` from any thread; `expect(stage, docs)` as the scan finds work. Stages are
    (name, unit, item unit): ("chunk", "doc", "chunk") counts documents and reports chunks per second."""

    def __init__(self, stages: Sequence[tuple[str, str, str]], enabled: bool = True, stream: IO[str] | None = None,
                 interval: float = 10.0) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = enabled
        self.tty = enabled and is_terminal(self.stream)
        self.interval = interval
        self.meters = {name: StageMeter(name, unit, item) for name, unit, item in stages}
        self._lock = threading.Lock()
        self._t0 = self._last_log = time.monotonic()
        self._closed = False
        if self.tty:
            from tqdm import tqdm

            for pos, m in enumerate(self.meters.values()):
                m.bar = tqdm(total=0, desc=f"{m.name:>6}", unit=m.unit, position=pos, leave=True, file=self.stream,
                             dynamic_ncols=True)

    def expect(self, stage: str, docs: int, final: bool = False) -> None:
        """`docs` more documents will pass through `stage`; `final` once no more will be found."""
        with self._lock:
            m = self.meters[stage]
            m.total += docs
            m.final = m.final or final
            if m.bar is not None:
                m.bar.total = m.total
                m.bar.refresh()

    def finish_totals(self) -> None:
        """The scan ended: every stage's total is now exact."""
        with self._lock:
            for m in self.meters.values():
                m.final = True

    def update(self, stage: str, docs: int, items: int = 0) -> None:
        now = time.monotonic()
        with self._lock:
            m = self.meters[stage]
            if m.started is None:  # rates count from the ingest's start: a stage waits for its first batch
                m.started = self._t0
            m.docs += docs
            m.items += items
            if m.bar is not None:
                m.bar.update(docs)
                _, item_rate = m.rates(now)
                m.bar.set_postfix_str(f"{m.items} {m.item_unit}s, {item_rate:.1f} {m.item_unit}/s", refresh=False)
            elif self.enabled and now - self._last_log >= self.interval:
                self._last_log = now
                self._log(now)

    def stage_done(self, stage: str) -> None:
        with self._lock:
            self.meters[stage].finished = time.monotonic()

    def _log(self, now: float) -> None:
        active = [m.line(now) for m in self.meters.values() if m.started is not None or m.total]
        if active:
            log.info("ingest: %s", " | ".join(active))

    def close(self) -> None:
        now = time.monotonic()
        with self._lock:
            if self._closed:
                return
            self._closed = True
            for m in self.meters.values():
                if m.bar is not None:
                    m.bar.close()
                    m.bar = None
            if self.enabled and not self.tty:
                self._log(now)

    def summary(self) -> dict[str, dict[str, float]]:
        """Per stage: documents, items and their rates (for reports and benches)."""
        now = time.monotonic()
        with self._lock:
            out = {}
            for m in self.meters.values():
                doc_rate, item_rate = m.rates(now)
                out[m.name] = {"docs": m.docs, "items": m.items, "docs_per_s": round(doc_rate, 2),
                               "items_per_s": round(item_rate, 2)}
            return out
