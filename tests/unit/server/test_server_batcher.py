"""The query micro-batcher with a fake encoder."""

from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
import pytest

from server.batcher import QueryBatcher


class SlowEncoder:
    """Records batch sizes; each call takes `delay` seconds so queries pile up meanwhile."""

    def __init__(self, name: str = "fake", delay: float = 0.02) -> None:
        self.id, self.delay, self.calls = name, delay, []
        self._lock = threading.Lock()

    def encode(self, texts, is_query=False):
        assert is_query
        with self._lock:
            self.calls.append(list(texts))
        time.sleep(self.delay)
        return np.array([[len(t), hash(self.id) % 7] for t in texts], dtype=np.float32)


def test_concurrent_queries_share_batches_and_get_their_own_vectors():
    enc = SlowEncoder()
    b = QueryBatcher(max_batch=64)

    async def run():
        return await asyncio.gather(*(b.embed(enc, "q" * (i + 1)) for i in range(20)))

    try:
        vecs = asyncio.run(run())
    finally:
        b.close()
    assert [int(v[0]) for v in vecs] == list(range(1, 21))
    assert len(enc.calls) < 20 and max(len(c) for c in enc.calls) > 1
    assert b.stats.queries == 20 and b.stats.batches == len(enc.calls)


def test_batches_never_exceed_max_batch():
    enc = SlowEncoder()
    b = QueryBatcher(max_batch=4)

    async def run():
        return await asyncio.gather(*(b.embed(enc, f"q{i}") for i in range(17)))

    try:
        asyncio.run(run())
    finally:
        b.close()
    assert max(len(c) for c in enc.calls) <= 4 and sum(len(c) for c in enc.calls) == 17


def test_queries_for_different_encoders_are_not_mixed():
    a, c = SlowEncoder("a"), SlowEncoder("c")
    b = QueryBatcher()

    async def run():
        return await asyncio.gather(*(b.embed(a if i % 2 else c, f"q{i}") for i in range(10)))

    try:
        asyncio.run(run())
    finally:
        b.close()
    assert sum(len(x) for x in a.calls) == 5 and sum(len(x) for x in c.calls) == 5


def test_encoder_errors_reach_every_caller_and_the_worker_survives():
    class Broken:
        id = "broken"

        def encode(self, texts, is_query=False):
            raise RuntimeError("boom")

    b = QueryBatcher()
    try:
        with pytest.raises(RuntimeError, match="boom"):
            b.embed_sync(Broken(), "x", timeout=5)
        assert b.embed_sync(SlowEncoder(delay=0), "abc", timeout=5)[0] == 3
    finally:
        b.close()
