"""Logging to stderr (humans) and JSONL files (machines); stdout stays for results."""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path
from typing import Any


def setup_logging(level: str = "INFO") -> None:
    root = logging.getLogger()
    if any(getattr(h, "_ragkiln", False) for h in root.handlers):
        root.setLevel(level)
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S"))
    handler._ragkiln = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level)


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
