"""Run one build stage in a child process of its own.

In one process a build holds on to what every earlier stage allocated: torch's and spaCy's caches and the
C allocator's arenas are not handed back to the system when a stage ends, so a standard build peaked at the
sum (9.5 GB on SciFact) rather than at its largest stage. A child per stage gives everything back when it
exits. The child is not forked from the build's process, which may have run OpenMP threads a fork cannot copy,
but from a fork server that only imported the heavy libraries.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import pickle
import select
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from common.errors import ProcessDied
from common.memory import peak_rss_mb


@dataclass(frozen=True)
class ChildResult:
    outputs: dict[str, Any]
    paths: list[str]
    peak_rss_mb: float | None  # the stage process's own high-water mark (VmHWM)


def run_in_child(fn: Callable[[Any], tuple[dict[str, Any], list[str]]], arg: Any, name: str) -> ChildResult:
    """`fn(arg)` in a child process (fn and arg must pickle: a module-level function, plain data). Its
    exception, if any, is raised here with the child's traceback as a note. An exception or Ctrl-C here
    stops the child."""
    ctx = _context()
    recv, send = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(send, fn, arg, _log_level(), os.getpid()), name=f"ragkiln-{name}")
    proc.start()
    send.close()  # the child holds the only writer: its death reads as EOF here
    try:
        try:
            kind, *payload = recv.recv()
        except EOFError:
            proc.join()
            raise ProcessDied(f"{name}: its process ended without a result ({_how(proc.exitcode)})") from None
        proc.join()
    finally:
        recv.close()
        _stop(proc)
    if kind == "ok":
        (outputs, paths), peak = payload
        return ChildResult(outputs, paths, peak)
    exc, tb = payload
    if tb:
        exc.add_note(f"in the process of {name}:\n{tb}")
    raise exc


# Imported once by the fork server, so a stage's process starts with them loaded (sentence-transformers alone
# takes 6 s to import) instead of paying for them per stage.
PRELOAD = ["torch", "sentence_transformers", "spacy", "faiss", "pipeline.stages"]


def _context() -> Any:
    """A fork server: it imports PRELOAD once and never runs a thread pool, so forking from it is safe."""
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(PRELOAD)
    return ctx


def _child(send: Any, fn: Callable[[Any], Any], arg: Any, level: str, parent: int) -> None:
    _die_with_parent(parent)
    from common.jsonlog import setup_logging

    setup_logging(level)
    try:
        result = fn(arg)
        send.send(("ok", result, peak_rss_mb()))
    except KeyboardInterrupt:
        sys.exit(130)  # the parent saw the same Ctrl-C; no traceback from here
    except Exception as e:  # noqa: BLE001 - every error crosses to the parent, which raises it
        send.send(("error", _picklable(e), traceback.format_exc()))
    finally:
        send.close()


def _picklable(e: Exception) -> Exception:
    """The exception itself where it survives pickling, else a RuntimeError with its type and message."""
    try:
        pickle.loads(pickle.dumps(e))
        return e
    except Exception:  # noqa: BLE001
        return RuntimeError(f"{type(e).__name__}: {e}")


def _stop(proc: Any) -> None:
    if proc.is_alive():
        proc.terminate()
        proc.join(30)
    if proc.is_alive():
        proc.kill()
        proc.join()


def _how(exitcode: int | None) -> str:
    if exitcode is not None and exitcode < 0:
        sig = signal.Signals(-exitcode).name if -exitcode in signal.valid_signals() else str(-exitcode)
        hint = ": out of memory?" if -exitcode == signal.SIGKILL else ""
        return f"killed by {sig}{hint}"
    return f"exit code {exitcode}"


def _log_level() -> str:
    """The level the parent's handler shows our lines at, so the child logs alike."""
    from common.jsonlog import handler_level

    return logging.getLevelName(handler_level())


def _die_with_parent(parent: int) -> None:
    """The child ends (SIGTERM) as soon as the build's process dies, even by SIGKILL: no orphan trains on.
    Its own parent is the fork server, which outlives the build while any child it forked runs, so the
    child watches the build's process itself."""

    def watch() -> None:
        try:
            fd = os.pidfd_open(parent)
        except (AttributeError, OSError):  # no pidfd (not Linux >= 5.3): poll
            while _alive(parent):
                time.sleep(1.0)
        else:
            select.select([fd], [], [])  # readable once the process has exited
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="watch-build", daemon=True).start()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
