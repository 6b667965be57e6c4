"""Logging to stderr (humans) and JSONL files (machines); stdout stays for results."""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path
from typing import Any


OUR_PACKAGES = frozenset({"common", "indexer", "ner", "trainer", "quantize", "pipeline", "server", "cli"})


class _DependencyFilter(logging.Filter):
    """Our modules log at the chosen level; a dependency's INFO and DEBUG lines only at DEBUG, its
    warnings (and Python `warnings`, captured into the `py.warnings` logger) always, through our format."""

    def __init__(self, level: int) -> None:
        super().__init__()
        self.level = level

    def filter(self, record: logging.LogRecord) -> bool:
        ours = record.name.split(".", 1)[0] in OUR_PACKAGES or record.name == "__main__"
        floor = self.level if ours or self.level <= logging.DEBUG else max(self.level, logging.WARNING)
        return record.levelno >= floor


def setup_logging(level: str = "INFO") -> None:
    """One stderr handler on the root logger; calling again only changes the level."""
    numeric = logging.getLevelName(level.upper())
    root = logging.getLogger()
    logging.captureWarnings(True)
    for h in root.handlers:
        if getattr(h, "_ragkiln", False):
            h.filters = [_DependencyFilter(numeric)]
            root.setLevel(logging.DEBUG if numeric <= logging.DEBUG else logging.INFO)
            return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S"))
    handler.addFilter(_DependencyFilter(numeric))
    handler._ragkiln = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    # The root lets INFO through to the filter, so a library's INFO is judged (and dropped) there.
    root.setLevel(logging.DEBUG if numeric <= logging.DEBUG else logging.INFO)


def handler_level() -> int:
    """The level our stderr handler shows our own lines at (INFO before `setup_logging`)."""
    for h in logging.getLogger().handlers:
        if getattr(h, "_ragkiln", False):
            for f in h.filters:
                if isinstance(f, _DependencyFilter):
                    return f.level
    return logging.INFO


class JsonlLog:
    """Append-only JSONL event log (training curves, ingest reports); each line is flushed."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._f = open(self.path, "a", encoding="utf-8")

    def write(self, event: str, **fields: Any) -> None:
        self._f.write(json.dumps({"t": round(time.time(), 3), "event": event, **fields}) + "\n")
        self._f.flush()

    def close(self) -> None:
        self._f.close()

    def __enter__(self) -> "JsonlLog":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]
