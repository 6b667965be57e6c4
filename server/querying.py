"""Retrieval as the server runs it: query vectors from the micro-batcher, entity and metadata
filters applied inside the retrievers, hits with entities and facets.

`VectorSearcher` is `Searcher.search` with the query vector given (computed in a batch with other
requests' queries); `ner.filters.search_with_entities` drives it exactly as it drives a Searcher.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from common.errors import InvalidInput
from indexer.search import MODES, Searcher
from indexer.types import Hit
from ner.filters import parse_entity_filters, search_with_entities
from server.schemas import Filters, HitOut, SearchResponse
from server.state import ServerState


class VectorSearcher:
    """A Searcher whose query embedding is already known; also ANDs a metadata filter in."""

    def __init__(self, searcher: Searcher, query_vec: np.ndarray | None, restrict: set[int] | None) -> None:
        self.s, self.vec, self.restrict = searcher, query_vec, restrict

    def search(self, query: str, k: int = 10, mode: str = "hybrid", allowed_ids: set[int] | None = None,
               exclude_doc_ids: set[str] | None = None, with_entities: bool = False) -> list[Hit]:
        if self.restrict is not None:
            allowed_ids = set(self.restrict) if allowed_ids is None else allowed_ids & self.restrict
            if not allowed_ids:
                return []
        return self.s.search(query, k=k, mode=mode, allowed_ids=allowed_ids,  # type: ignore[arg-type]
                             exclude_doc_ids=exclude_doc_ids, query_vec=self.vec)


class MetadataIndex:
    """doc metadata and chunk ids of one index generation, built on first use of a metadata filter."""

    def __init__(self) -> None:
        self._name: str | None = None
        self._meta: dict[str, dict[str, Any]] = {}
        self._chunks: dict[str, list[int]] = {}
        self._lock = threading.Lock()

    def allowed(self, searcher: Searcher, wanted: Mapping[str, Any]) -> set[int]:
        with self._lock:
            if self._name != searcher.name:
                store = searcher.store
                self._meta = {d.doc_id: d.metadata for d in store.iter_documents()}
                chunks: dict[str, list[int]] = {}
                for c in store.iter_chunks():
                    chunks.setdefault(c.doc_id, []).append(c.id)
                self._chunks, self._name = chunks, searcher.name
            meta, by_doc = self._meta, self._chunks
        out: set[int] = set()
        for doc_id, m in meta.items():
            if all(k in m and m[k] == v for k, v in wanted.items()):
                out.update(by_doc.get(doc_id, ()))
        return out


@dataclass(frozen=True)
class Retrieved:
    hits: list[Hit]
    facets: dict[str, Any]
    seconds: float
    index: str
    ended: float  # perf_counter() when retrieval finished (first-token latency is measured from here)
    query_vec: np.ndarray | None = None  # the query's embedding (dense and hybrid modes), reused by the reader
    query_embedder: str | None = None  # id of the embedder that made query_vec


async def retrieve(state: ServerState, metadata_index: MetadataIndex, query: str, k: int, mode: str,
                   filters: Filters | None) -> Retrieved:
    """Hits (with entities) and facets for a query; dense queries are embedded in a shared batch."""
    t0 = time.perf_counter()
    if not query.strip():
        raise InvalidInput("query must not be empty")
    if mode not in MODES:
        raise InvalidInput(f"mode must be one of {', '.join(MODES)}")
    specs = filters.entities if filters else []
    entity_filters = parse_entity_filters(specs)
    for _attempt in range(3):
        searcher = state.searcher()
        vec = await state.batcher.embed(state.query_encoder(searcher), query) if mode in ("dense", "hybrid") else None
        restrict = metadata_index.allowed(searcher, filters.metadata) if filters and filters.metadata else None
        r = search_with_entities(VectorSearcher(searcher, vec, restrict), searcher.store, query, k=k, mode=mode,
                                 filters=entity_filters)
        # A reindex that switched generations meanwhile may have garbage-collected chunks the old
        # index still points at: answer from the new generation instead of returning holes.
        if state.workspace.active_index_name() == searcher.name:
            break
    t1 = time.perf_counter()
    return Retrieved(r["hits"], r["facets"], t1 - t0, searcher.name, t1, vec, str(searcher.embedder.id))


def hit_out(h: Hit) -> HitOut:
    c = h.chunk
    return HitOut(
        chunk_id=c.id, chunk_key=c.key, doc_id=c.doc_id, title=c.title, start=c.start, end=c.end,
        score=round(h.score, 6), ranks=h.ranks, scores={k: round(v, 6) for k, v in h.scores.items()}, text=c.text,
        entities=[{"text": e.text, "label": e.label, "norm": e.norm, "start": e.start, "end": e.end,  # type: ignore[misc]
                   "doc_start": e.doc_start, "doc_end": e.doc_end} for e in h.entities],
        also_in=list(h.also_in),
    )


def search_response(query: str, mode: str, r: Retrieved) -> SearchResponse:
    return SearchResponse(query=query, mode=mode, index=r.index, hits=[hit_out(h) for h in r.hits],  # type: ignore[arg-type]
                          facets=r.facets, took_ms=round(r.seconds * 1000, 3))
