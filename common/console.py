"""Progress bars only where someone watches them: a terminal redraws a tqdm bar in place, while a log file
or a pipe keeps every redraw, so `ragkiln build > build.log` would fill it with bar frames."""

from __future__ import annotations

import sys
from typing import IO, Any

FILE_INTERVAL_S = 30.0  # one bar line every 30 s into a file or pipe


def is_terminal(stream: IO[Any] | None = None) -> bool:
    """Whether `stream` (standard error by default) is a terminal."""
    s = sys.stderr if stream is None else stream
    return bool(getattr(s, "isatty", lambda: False)())


def bar_interval(stream: IO[Any] | None = None) -> float:
    """tqdm's `mininterval`: its own default on a terminal, FILE_INTERVAL_S elsewhere."""
    return 0.1 if is_terminal(stream) else FILE_INTERVAL_S
