"""Prometheus metrics of one app (own registry, so several apps in one process never collide)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

if TYPE_CHECKING:
    from server.state import ServerState

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

    def bind(self, state: ServerState) -> None:
        """Gauges read live from the state when scraped."""
        self.queue_depth.labels("embedding").set_function(lambda: state.batcher.depth)
        self.queue_depth.labels("generation").set_function(lambda: _generation_depth(state))
        self.queue_depth.labels("jobs").set_function(lambda: state.jobs.running())
        self._state = state

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
        stats = self._state.batcher.stats if hasattr(self, "_state") else None
        if stats is not None:  # batch sizes recorded since the last scrape
            sizes = list(stats.sizes)
            new = min(len(sizes), stats.batches - self._seen_batches)
            for s in sizes[len(sizes) - new:] if new > 0 else ():
                self.batch_size.observe(s)
            self._seen_batches = stats.batches
        return generate_latest(self.registry)


def _generation_depth(state: ServerState) -> float:
    if state.generator is None:
        return 0.0
    h = state.generator.runtime.health()
    slots = getattr(state.generator.runtime, "_slots", None)  # admitted = running + waiting (runtime internals)
    free = getattr(slots, "_value", None)
    if free is None:
        return float(h["busy"])
    return float(max(h["contexts"] + h["queue_size"] - free, h["busy"]))
