"""Thread counts set for one block and given back: torch's and FAISS's counts are per-process (or per
OpenMP thread) knobs, and a count set for good leaks into every later computation of the caller."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager


@contextmanager
def scoped_threads(get: Callable[[], int], set_: Callable[[int], None], n: int) -> Iterator[None]:
    """`set_(n)` for the block, then `set_` the count `get` read before it."""
    prev = get()
    set_(n)
    try:
        yield
    finally:
        set_(prev)
