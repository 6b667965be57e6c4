"""llama.cpp's log, routed into Python logging (logger `llama.cpp`) at its true levels.

llama-cpp-python 0.3.x reads ggml's log levels by an older enum (NONE 0, INFO 1, WARN 2, ERROR 3, DEBUG 4), but the
ggml it ships numbers them NONE 0, DEBUG 1, INFO 2, WARN 3, ERROR 4, CONT 5. With `verbose=False` llama.cpp's
warnings therefore reached stderr as errors ("n_ctx_seq (512) > n_ctx_train (384) -- possible training context
overflow" for every context a 384-token model opened: llama.cpp pads the context it allocates, while the runtime
never lets a sequence past the trained length), and its errors were dropped as debug. Here errors are errors;
warnings and chatter are debug, since they concern choices the runtime makes and checks itself (context size,
cache types)."""

from __future__ import annotations

import ctypes
import logging
import threading
from typing import Any

log = logging.getLogger("llama.cpp")

# ggml_log_level -> logging level; CONT (5) continues the previous message
LEVELS = {0: logging.DEBUG, 1: logging.DEBUG, 2: logging.DEBUG, 3: logging.DEBUG, 4: logging.ERROR}
_CONT = 5


class _Lines:
    """llama.cpp logs a line in pieces; one record per finished line, at the level its first piece had."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.parts: list[str] = []
        self.level = logging.DEBUG

    def feed(self, level: int, text: str) -> None:
        with self.lock:
            if level != _CONT and not self.parts:
                self.level = LEVELS.get(level, logging.DEBUG)
            self.parts.append(text)
            if not text.endswith("\n"):
                return
            line, self.parts = "".join(self.parts).rstrip(), []
            lvl = self.level
        if line:
            log.log(lvl, "%s", line)


_lines = _Lines()
_callback: Any = None  # the ctypes callback must outlive every llama.cpp call


def route_llama_logs() -> None:
    """Install the routing (once per process; after llama-cpp-python installed its own on import)."""
    global _callback
    if _callback is not None:
        return
    import llama_cpp
    import llama_cpp.llama  # noqa: F401 - imports llama-cpp-python's logger, which sets its callback first

    @llama_cpp.llama_log_callback
    def callback(level: int, text: bytes, user_data: ctypes.c_void_p) -> None:
        _lines.feed(int(level), text.decode("utf-8", errors="replace"))

    _callback = callback
    llama_cpp.llama_log_set(_callback, ctypes.c_void_p(0))
