"""Query-time retrieval over one loaded generation: dense, BM25 and their fusion."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import replace
from typing import Literal

import faiss
import numpy as np

from common.errors import InvalidInput, ManifestMismatch
from common.settings import IndexerConfig
from common.threads import scoped_threads
from indexer import dense
from indexer.docstore import DocStore
from indexer.embedder import Embedder, resolve_precision
from indexer.fusion import rrf_fuse, weighted_fuse
from indexer.generation import Generation
from indexer.near_dup import duplicate_of, trigrams
from indexer.types import Hit

Mode = Literal["dense", "bm25", "hybrid"]
MODES = ("dense", "bm25", "hybrid")
FUSED = "hybrid"  # key of the ranking's (rank, score) in `ranked_ids`'s detail when it is not one retriever's


def omp_threads(n: int) -> AbstractContextManager[None]:
    """FAISS's OpenMP thread count for one call, then the calling thread's own count back.

    One query at a time needs no FAISS parallelism, and idle FAISS workers spinning next to torch's
    slowed query embedding (server hybrid p50 21.7 -> 11.3 ms on 2 cores; the server also pins torch's
    own threads, `server.torch_threads`). But FAISS and torch share one OpenMP runtime, whose count
    belongs to the calling thread: set for good when the searcher was built, it left every later torch
    op of that thread on one core (`train lm` after fetching neighbours: 96 s instead of 140 s).
    """
    return scoped_threads(faiss.omp_get_max_threads, faiss.omp_set_num_threads, n)


class Searcher:
    """Answers queries from one immutable generation; safe to share between threads."""

    def __init__(self, gen: Generation, embedder: Embedder, store: DocStore, cfg: IndexerConfig) -> None:
        # Queries are embedded the way the documents were: same model, same backend (an int8 export's vectors
        # differ from torch fp32 ones). Indexes from before embed backends record no backend: torch.
        built_with = gen.embedder.get("backend", "torch")
        backend = getattr(embedder, "backend", "torch")
        if backend != built_with or embedder.id != gen.embedder["id"]:
            raise ManifestMismatch(
                f"index {gen.path.name} was embedded with {gen.embedder['id']} ({built_with}); refusing to embed its "
                f"queries with {embedder.id} ({backend})"
            )
        self.gen = gen
        self.embedder = embedder
        self.store = store
        self.cfg = cfg
        self.name = gen.path.name
        self.manifest = gen.manifest
        self._faiss_lock = threading.Lock()
        # bf16 query weights are a torch path; an int8 export embeds queries with its own arithmetic.
        self.query_precision = resolve_precision(cfg.query_precision) if backend == "torch" else embedder.quantization
        dense.configure(gen.dense, cfg.faiss_nprobe, cfg.hnsw_ef_search)
        self._most_sentences = int(gen.manifest["counts"].get("max_sentences", 0))  # a restricted search's reach

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        """(n, dim) query vectors exactly as `search` computes them (evaluation must measure what is served)."""
        return self.embedder.encode(list(texts), is_query=True, precision=self.query_precision)

    @property
    def size(self) -> int:
        return int(self.gen.dense.ntotal)

    def ranked_ids(self, query: str, mode: Mode, n: int, allowed: np.ndarray | None = None,
                   query_vec: np.ndarray | None = None) -> tuple[list[int], dict[str, dict[int, tuple[int, float]]]]:
        """Fused chunk ids (best first) and each retriever's (rank, score) per id (plus the fusion's, in hybrid)."""
        if mode not in MODES:
            raise InvalidInput(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
        per: dict[str, tuple[list[int], list[float]]] = {}
        cosines: dict[int, float] | None = None
        if mode in ("dense", "hybrid"):
            qv = query_vec if query_vec is not None else self.encode_queries([query])
            with self._faiss_lock, omp_threads(self.cfg.faiss_query_threads):
                if self.gen.sentences is not None and self.cfg.sentence_share > 0:
                    ranked, combined, cosines = dense.search_with_sentences(
                        self.gen.dense, self.gen.sentences, qv.reshape(1, -1), n, self.cfg.sentence_share,
                        self._most_sentences, allowed)
                    per["dense"] = (ranked, combined)
                else:
                    scores, ids = dense.search(self.gen.dense, qv.reshape(1, -1), n, allowed)
                    keep = ids[0] >= 0
                    per["dense"] = (ids[0][keep].tolist(), scores[0][keep].tolist())
        if mode in ("bm25", "hybrid"):
            scores_b, ids_b = self.gen.bm25.search(query, n, allowed)
            per["bm25"] = (ids_b.tolist(), scores_b.tolist())
        detail = {name: {cid: (r + 1, s) for r, (cid, s) in enumerate(zip(*v))} for name, v in per.items()}
        if cosines is not None:  # dense ranks by the chunk-and-sentence score; its score shown is the chunk's cosine
            if mode == "dense":
                detail[FUSED] = detail["dense"]  # the ranking's own scores, as the hits carry them
            detail["dense"] = {cid: (r, cosines[cid]) for cid, (r, _) in detail["dense"].items()}
        if mode != "hybrid":
            return per[mode][0], detail
        if self.cfg.fusion == "rrf":
            fused = rrf_fuse({k: v[0] for k, v in per.items()}, k=self.cfg.rrf_k)
        else:
            fused = weighted_fuse(per, {"dense": self.cfg.dense_weight, "bm25": 1 - self.cfg.dense_weight})
        detail[FUSED] = {cid: (r + 1, s) for r, (cid, s) in enumerate(fused)}
        return [cid for cid, _ in fused], detail

    def search(self, query: str, k: int = 10, mode: Mode = "hybrid", allowed_ids: set[int] | None = None,
               exclude_doc_ids: set[str] | None = None, with_entities: bool = False,
               query_vec: np.ndarray | None = None) -> list[Hit]:
        """`query_vec`, when given, is the query's embedding computed by the caller (e.g. a micro-batcher)."""
        if not query or not query.strip():
            raise InvalidInput("query must not be empty")
        if k < 1:
            raise InvalidInput("k must be at least 1")
        allowed = np.fromiter(allowed_ids, dtype=np.int64) if allowed_ids is not None else None
        n = max(k, self.cfg.candidates)
        hits: list[Hit] = []
        while True:
            ranked, detail = self.ranked_ids(query, mode, n, allowed, query_vec=query_vec)
            hits = self._hits(ranked, detail, k, exclude_doc_ids or set(), mode)
            skipping = bool(exclude_doc_ids) or self.cfg.collapse_overlap > 0
            if len(hits) >= k or n >= self.size or len(ranked) < n or not skipping:
                break  # enough hits, or the retrievers ran out (a wider search finds no more), or none was skipped
            n *= 4  # excluded documents or folded duplicates ate the candidates: widen and retry
        if with_entities and hits:
            ents = self.store.entities_for([h.chunk.id for h in hits])
            hits = [replace(h, entities=tuple(ents.get(h.chunk.id, ()))) for h in hits]
        return hits

    def _hits(self, ranked: Sequence[int], detail: dict[str, dict[int, tuple[int, float]]], k: int,
              exclude: set[str], mode: Mode) -> list[Hit]:
        """The first k ranked chunks not in an excluded document, each near-duplicate of a better hit folded into
        it (`indexer.near_dup`)."""
        threshold = self.cfg.collapse_overlap
        batch = max(1, len(ranked) if exclude else k)  # chunks read per docstore query: all when some are skipped
        groups: list[list[Hit]] = []  # one per slot: the best-ranked hit, then the copies folded into it
        grams: list[frozenset[int]] = []
        for first in range(0, len(ranked), batch):
            want = list(ranked[first:first + batch])
            chunks = self.store.get_chunks(want)
            for cid in want:
                c = chunks.get(cid)
                if c is None or c.doc_id in exclude:
                    continue
                ranks = {name: d[cid][0] for name, d in detail.items() if cid in d and name != FUSED}
                scores = {name: float(d[cid][1]) for name, d in detail.items() if cid in d and name != FUSED}
                score = detail[FUSED][cid][1] if FUSED in detail else scores.get(mode, 0.0)
                hit = Hit(c, float(score), ranks, scores)
                if threshold > 0:
                    g = trigrams(c.text)
                    if (dup := duplicate_of(g, grams, threshold)) is not None:
                        groups[dup].append(hit)
                        continue
                    grams.append(g)
                groups.append([hit])
                if len(groups) >= k:
                    return self._represent(groups)
        return self._represent(groups)

    def _represent(self, groups: list[list[Hit]]) -> list[Hit]:
        """One hit per slot. Copies of one passage are equally relevant, so the slot shows the one from the
        shortest document (a chapter rather than the book's one-page print view), ranked and scored as the
        group's best; the other documents go in its `also_in`."""
        folded = [h.chunk.id for g in groups if len(g) > 1 for h in g]
        sizes = self.store.document_lengths(folded) if folded else {}
        out = []
        for g in groups:
            if len(g) == 1:
                out.append(g[0])
                continue
            rep = min(g, key=lambda h: sizes.get(h.chunk.id, 0))  # ties: the best ranked
            others = tuple(dict.fromkeys(h.chunk.doc_id for h in g if h.chunk.doc_id != rep.chunk.doc_id))
            out.append(replace(rep, score=g[0].score, also_in=others))
        return out
