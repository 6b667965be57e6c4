"""Prometheus metrics of one app (own registry, so several apps in one process never collide).

Metrics knows the parts it reads (the query batcher, the job registry, a generation-depth callable),
not the `ServerState` that holds them: `server.state.load_state` wires them in with `bind`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from server.batcher import QueryBatcher
from server.jobs import JobRegistry

LATENCY_BUCKETS = (0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class Metrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.requests = Counter("ragkiln_http_requests", "HTTP requests by route, method and status.",
                                ["route", "method", "status"], registry=r)
        self.latency = Histogram("ragkiln_http_request_seconds", "Time to the end of the response, by route.",
                                 ["route"], buckets=LATENCY_BUCKETS, registry=r)
        self.index_chunks = Gauge("ragkiln_index_chunks", "Chunks in the active index.", registry=r)
        self.index_documents = Gauge("ragkiln_index_documents", "Documents in the active index.", registry=r)
        self.gen_tokens = Counter("ragkiln_generation_tokens", "Tokens generated.", registry=r)
        self.gen_tok_s = Gauge("ragkiln_generation_tokens_per_second", "Decode speed of the last generation.",
                               registry=r)
        self.first_token = Histogram("ragkiln_generation_first_token_seconds",
                                     "From the end of retrieval to the first generated token.",
                                     buckets=LATENCY_BUCKETS, registry=r)
        self.queue_depth = Gauge("ragkiln_queue_depth", "Work waiting: queries for an embedding batch, "
                                 "generations running or waiting, background jobs.", ["queue"], registry=r)
        self.batch_size = Histogram("ragkiln_embedding_batch_size", "Queries per embedding micro-batch.",
                                    buckets=(1, 2, 4, 8, 16, 32, 64, 128), registry=r)
        self._seen_batches = 0
        self._batcher: QueryBatcher | None = None

    def bind(self, batcher: QueryBatcher, jobs: JobRegistry, generation: Callable[[], float]) -> None:
        """Gauges read live when scraped: the batcher's queue and batch sizes, the running jobs, and
        `generation()`, the generations running or waiting (see `generation_depth`)."""
        self.queue_depth.labels("embedding").set_function(lambda: batcher.depth)
        self.queue_depth.labels("generation").set_function(generation)
        self.queue_depth.labels("jobs").set_function(lambda: jobs.running())
        self._batcher = batcher

    def observe_index(self, searcher: Any) -> None:
        self.index_chunks.set(searcher.size)
        counts = (searcher.manifest or {}).get("counts") or {}
        self.index_documents.set(counts.get("documents", 0))

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        self.requests.labels(route, method, str(status)).inc()
        self.latency.labels(route).observe(seconds)

    def observe_generation(self, tokens: int, tok_s: float, first_token_s: float | None) -> None:
        self.gen_tokens.inc(tokens)
        if tok_s > 0:
            self.gen_tok_s.set(tok_s)
        if first_token_s is not None:
            self.first_token.observe(first_token_s)

    def render(self) -> bytes:
        stats = self._batcher.stats if self._batcher is not None else None
        if stats is not None:  # batch sizes recorded since the last scrape
            sizes = list(stats.sizes)
            new = min(len(sizes), stats.batches - self._seen_batches)
            for s in sizes[len(sizes) - new:] if new > 0 else ():
                self.batch_size.observe(s)
            self._seen_batches = stats.batches
        return generate_latest(self.registry)


def generation_depth(runtime: Any | None) -> float:
    """Generations running or waiting in a GGUF runtime (`quantize.runtime.LlamaCppGenerator`); 0 without one."""
    if runtime is None:
        return 0.0
    h = runtime.health()
    slots = getattr(runtime, "_slots", None)  # admitted = running + waiting (runtime internals)
    free = getattr(slots, "_value", None)
    if free is None:
        return float(h["busy"])
    return float(max(h["contexts"] + h["queue_size"] - free, h["busy"]))
