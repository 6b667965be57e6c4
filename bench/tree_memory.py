"""Memory of a process and all its descendants, sampled from /proc.

`/usr/bin/time -v` reports the largest single process it waited for; a build whose stages run in processes
forked from a fork server (`stage_processes`) is a tree that time never waits on. The sum of PSS over the
tree counts pages shared between the fork server and a stage once, which a sum of RSS would not.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any


def descendants(root: int) -> list[int]:
    """`root` and every process below it (one /proc scan)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        pid = int(stat.parent.name)
        ppid = int(text.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(pid)
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, []))
    return out


def rollup_kb(pid: int) -> tuple[int, int]:
    """(Rss, Pss) in kB from /proc/PID/smaps_rollup; (0, 0) for a process that is gone."""
    rss = pss = 0
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Rss:"):
                rss = int(line.split()[1])
            elif line.startswith("Pss:"):
                pss = int(line.split()[1])
    except (OSError, ValueError):
        return 0, 0
    return rss, pss


class TreeSampler:
    """Samples the tree under `root` every `interval` s in a thread; the peaks are rewritten to `out` (JSON)
    after each sample, so a build stopped by hand still leaves them."""

    def __init__(self, root: int, out: Path, interval: float = 1.0) -> None:
        self.root, self.out, self.interval = root, out, interval
        self.peak: dict[str, Any] = {"pss_gb": 0.0, "rss_sum_gb": 0.0, "processes_at_peak": 0, "samples": 0}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> "TreeSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            pids = descendants(self.root)
            sizes = [rollup_kb(p) for p in pids]
            pss = sum(p for _, p in sizes) / 2**20
            rss = sum(r for r, _ in sizes) / 2**20
            self.peak["samples"] += 1
            if pss > self.peak["pss_gb"]:
                self.peak.update(pss_gb=round(pss, 2), processes_at_peak=len(pids), at=time.strftime("%H:%M:%S"))
            self.peak["rss_sum_gb"] = max(self.peak["rss_sum_gb"], round(rss, 2))
            self.out.write_text(json.dumps(self.peak))
            self._stop.wait(self.interval)
