"""Dynamic micro-batching of query embeddings: concurrent requests share one transformer forward pass.

One query costs a few milliseconds of embedding, mostly fixed per-call overhead, so at 8+
concurrent clients one forward pass per request would saturate the CPU long before the 150 req/s
target. A single worker thread takes every query queued while the previous batch ran (optionally
waiting `wait_ms` for more), embeds them together and hands each vector back to its caller: an
idle server adds no latency, a busy one amortises the pass over the batch.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

log = logging.getLogger(__name__)


class QueryEncoder(Protocol):
    id: str

    def encode(self, texts: Sequence[str], is_query: bool = False) -> np.ndarray: ...


@dataclass
class BatchStats:
    batches: int = 0
    queries: int = 0
    largest: int = 0
    seconds: float = 0.0
    sizes: deque[int] = field(default_factory=lambda: deque(maxlen=1000))

    @property
    def mean_size(self) -> float:
        return self.queries / self.batches if self.batches else 0.0


@dataclass
class _Item:
    encoder: QueryEncoder
    text: str
    deliver: Any  # callable(result | BaseException)


class QueryBatcher:
    """`await batcher.embed(encoder, text)` -> (dim,) float32; thread-safe, one worker thread."""

    def __init__(self, max_batch: int = 64, wait_ms: float = 0.0, thread_init: Any = None) -> None:
        """`thread_init` runs first on the worker thread (per-thread settings such as torch/OpenMP threads)."""
        if max_batch < 1:
            raise ValueError("max_batch must be >= 1")
        self._thread_init = thread_init
        self.max_batch = max_batch
        self.wait_s = wait_ms / 1000.0
        self.stats = BatchStats()
        self._queue: deque[_Item] = deque()
        self._cond = threading.Condition()
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name="query-batcher", daemon=True)
        self._thread.start()

    @property
    def depth(self) -> int:
        """Queries waiting for a batch (a Prometheus gauge)."""
        return len(self._queue)

    async def embed(self, encoder: QueryEncoder, text: str) -> np.ndarray:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[np.ndarray] = loop.create_future()

        def deliver(result: Any) -> None:
            loop.call_soon_threadsafe(_settle, fut, result)

        self._put(_Item(encoder, text, deliver))
        return await fut

    def embed_sync(self, encoder: QueryEncoder, text: str, timeout: float | None = None) -> np.ndarray:
        """For callers on worker threads (sync code paths)."""
        fut: concurrent.futures.Future[np.ndarray] = concurrent.futures.Future()

        def deliver(result: Any) -> None:
            if isinstance(result, BaseException):
                fut.set_exception(result)
            else:
                fut.set_result(result)

        self._put(_Item(encoder, text, deliver))
        return fut.result(timeout)

    def _put(self, item: _Item) -> None:
        with self._cond:
            if self._stopped:
                raise RuntimeError("the query batcher is stopped")
            self._queue.append(item)
            self._cond.notify()

    def _take(self) -> list[_Item] | None:
        with self._cond:
            while not self._queue and not self._stopped:
                self._cond.wait()
            if self._stopped and not self._queue:
                return None
        if self.wait_s > 0 and len(self._queue) < self.max_batch:
            deadline = time.perf_counter() + self.wait_s
            while len(self._queue) < self.max_batch and (left := deadline - time.perf_counter()) > 0:
                time.sleep(min(left, 0.0005))
        with self._cond:
            n = min(self.max_batch, len(self._queue))
            return [self._queue.popleft() for _ in range(n)]

    def _run(self) -> None:
        if self._thread_init is not None:
            self._thread_init()
        while (batch := self._take()) is not None:
            t0 = time.perf_counter()
            groups: dict[int, list[_Item]] = {}
            for it in batch:  # a reindex may switch the embedder between two queries
                groups.setdefault(id(it.encoder), []).append(it)
            for items in groups.values():
                try:
                    vecs = items[0].encoder.encode([it.text for it in items], is_query=True)
                    results: list[Any] = [np.asarray(v, dtype=np.float32) for v in vecs]
                except BaseException as e:  # noqa: BLE001 - handed to every caller of the batch
                    results = [e] * len(items)
                for it, r in zip(items, results):
                    try:
                        it.deliver(r)
                    except RuntimeError:  # the caller's event loop is gone
                        pass
            s = self.stats
            s.batches += 1
            s.queries += len(batch)
            s.largest = max(s.largest, len(batch))
            s.sizes.append(len(batch))
            s.seconds += time.perf_counter() - t0

    def close(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify_all()
        self._thread.join(timeout=5)


def _settle(fut: asyncio.Future[Any], result: Any) -> None:
    if fut.done():
        return
    if isinstance(result, BaseException):
        fut.set_exception(result)
    else:
        fut.set_result(result)
