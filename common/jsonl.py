"""JSON-lines input files (patterns, annotations, pairs, QA, queries): one reader, so every command
names a bad line the same way ("file:line: invalid JSON: ...") and skips blank lines alike."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from common.errors import InvalidInput, NotFound


def iter_jsonl(path: Path | str, what: str = "file") -> Iterator[tuple[str, Any]]:
    """(where, value) per non-blank line; `where` is "path:line" for the caller's own checks."""
    path = Path(path)
    if not path.is_file():
        raise NotFound(f"{what} {path} does not exist")
    with open(path, encoding="utf-8") as f:
        n = 0
        try:
            for n, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    value = json.loads(line)
                except json.JSONDecodeError as e:
                    raise InvalidInput(f"{path}:{n}: invalid JSON: {e.msg}") from e
                yield f"{path}:{n}", value
        except UnicodeDecodeError as e:
            raise InvalidInput(f"{path}:{n + 1}: not UTF-8 text") from e
