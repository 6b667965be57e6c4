"""Hard negatives mined from our own index: BM25 and dense top-k (their fusion), filtered.

A negative is never from a positive document of the same query, and never a near-duplicate of the
positive (cosine above a threshold): both would teach the model that relevant text is irrelevant.
"""

from __future__ import annotations

import logging
import random
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from tqdm import tqdm

from common.console import bar_interval
from indexer.chunking import index_text
from indexer.fusion import weighted_fuse
from trainer.embedder.pairs import Pair, _norm, with_negatives

log = logging.getLogger(__name__)


def select_negatives(ranked: Sequence[int], positive_docs: set[str], doc_of: Mapping[int, str],
                     sim_to_positive: Mapping[int, float], n: int, max_sim: float, skip_top: int = 0) -> list[int]:
    """The first n ranked chunk ids that are not from a positive document and not near-duplicates.

    `skip_top` leaves out the very top candidates that survive the filters (the likeliest unlabelled
    positives); candidates without a known similarity are kept.
    """
    out: list[int] = []
    skipped = 0
    seen_docs: set[str] = set()
    for cid in ranked:
        doc = doc_of.get(cid)
        if doc is None or doc in positive_docs or doc in seen_docs:
            continue
        if sim_to_positive.get(cid, -1.0) > max_sim:
            continue
        if skipped < skip_top:
            skipped += 1
            seen_docs.add(doc)  # a likely unlabelled positive: none of its chunks either
            continue
        out.append(cid)
        seen_docs.add(doc)  # one negative per document: more variety per batch
        if len(out) == n:
            break
    return out


def doc_rank(ranked: Sequence[int], doc_of: Mapping[int, str], doc_id: str) -> int | None:
    """1-based rank of a document's first chunk in a chunk ranking (None when absent)."""
    seen: list[str] = []
    for cid in ranked:
        d = doc_of.get(cid)
        if d is not None and d not in seen:
            seen.append(d)
            if d == doc_id:
                return len(seen)
    return None


def select_hardest(pairs: Sequence[Pair], dense_ranks: Sequence[int | None], bm25_ranks: Sequence[int | None],
                   max_pairs: int, hard_share: float, rng: random.Random, teacher_k: int = 10) -> list[Pair]:
    """Keep max_pairs: the share `hard_share` where the dense retriever ranks the positive worst, the rest at random.

    BM25 is the teacher (it beats the base embedder on technical corpora): a pair counts as hard when
    BM25 ranks its positive within `teacher_k` but the dense model ranks it low. A pair the dense model
    already solves carries little gradient; one neither retriever finds is likely noise.
    """
    if len(pairs) <= max_pairs:
        return list(pairs)

    def hardness(i: int) -> int:
        if bm25_ranks[i] is None or bm25_ranks[i] > teacher_k:  # type: ignore[operator]
            return -1
        return dense_ranks[i] or 10**6

    order = sorted(range(len(pairs)), key=lambda i: (-hardness(i), rng.random()))
    n_hard = int(max_pairs * hard_share)
    chosen = order[:n_hard]
    rest = order[n_hard:]
    chosen += rng.sample(rest, max_pairs - n_hard)
    rng.shuffle(chosen)
    return [pairs[i] for i in chosen]


def mine_hard_negatives(pairs: Sequence[Pair], searcher, n: int, depth: int = 30, max_sim: float = 0.95,
                        skip_top: int = 0, mode: str = "hybrid", seed: int = 0, progress: bool = True,
                        max_pairs: int | None = None, hard_share: float = 0.0) -> list[Pair]:
    """Give every pair exactly n negatives: hard ones from the index, topped up with random chunks.

    `searcher` is an indexer Searcher (its embedder encodes queries and positives; its store holds
    the chunks and their cached embeddings). Labelled negatives already on a pair are kept first.
    With max_pairs, the pairs kept favour those the dense retriever gets wrong (`select_hardest`).
    """
    if not pairs:
        return []
    store = searcher.store
    all_ids = [int(i) for i in store.active_chunk_ids()]
    rng = random.Random(seed)
    positives_of = _positives_of(pairs)
    r = _rank_pairs(pairs, searcher, mode, depth, progress)
    ranked_all, chunks, cvecs, doc_of, pos_vecs = r.fused, r.chunks, r.cvecs, r.doc_of, r.pos_vecs
    if max_pairs is not None and len(pairs) > max_pairs:
        d_ranks = [doc_rank(by_rank(r.detail[i], "dense"), doc_of, p.doc_id) for i, p in enumerate(pairs)]
        b_ranks = [doc_rank(by_rank(r.detail[i], "bm25"), doc_of, p.doc_id) for i, p in enumerate(pairs)]
        keep = {id(p) for p in select_hardest(pairs, d_ranks, b_ranks, max_pairs, hard_share, rng)}
        idx = [i for i, p in enumerate(pairs) if id(p) in keep]
        pairs, ranked_all, pos_vecs = [pairs[i] for i in idx], [ranked_all[i] for i in idx], pos_vecs[idx]
    out: list[Pair] = []
    n_hard = n_random = 0
    for i, p in enumerate(pairs):
        ranked = ranked_all[i]
        sims = {c: float(cvecs[c] @ pos_vecs[i]) for c in ranked if c in cvecs}
        if n == 0:
            break
        chosen = select_negatives(ranked, positives_of[_norm(p.query)], doc_of, sims, n - len(p.negatives[:n]),
                                  max_sim, skip_top)
        negs = list(p.negatives[:n]) + [index_text(chunks[c].title, chunks[c].text) for c in chosen]
        n_hard += len(chosen)
        tries = 0
        while len(negs) < n and all_ids and tries < 50:  # top up with random chunks of other documents
            tries += 1
            c = rng.choice(all_ids)
            ch = store.get_chunks([c]).get(c)
            if ch is None or ch.doc_id in positives_of[_norm(p.query)]:
                continue
            text = index_text(ch.title, ch.text)
            if _norm(text) != _norm(p.positive) and text not in negs:
                negs.append(text)
                n_random += 1
        if len(negs) == n:
            out.append(with_negatives(p, negs))
    if n == 0:
        out = [with_negatives(p, ()) for p in pairs]
    log.info("hard negatives: %d from the index, %d random, %d pairs dropped", n_hard, n_random, len(pairs) - len(out))
    return out


@dataclass
class _Ranked:
    """Each pair's fused ranking and per-retriever (rank, score), and what the filters need about the candidates."""

    fused: list[list[int]]
    detail: list[dict[str, dict[int, tuple[int, float]]]]
    chunks: dict[int, Any]
    cvecs: dict[int, np.ndarray]
    doc_of: dict[int, str]
    pos_vecs: np.ndarray


def _positives_of(pairs: Sequence[Pair]) -> dict[str, set[str]]:
    out: dict[str, set[str]] = defaultdict(set)
    for p in pairs:
        out[_norm(p.query)].add(p.doc_id)
    return out


def _rank_pairs(pairs: Sequence[Pair], searcher, mode: str, depth: int, progress: bool) -> _Ranked:
    """Search every pair's query once (vectors in batches) and load the candidates' chunks and vectors."""
    store, emb = searcher.store, searcher.embedder
    qvecs = emb.encode([p.query for p in pairs], is_query=True, batch_size=64, show_progress=False)
    fused, details = [], []
    for i, p in enumerate(tqdm(pairs, desc="mine negatives", disable=not progress, unit="pair", mininterval=bar_interval())):
        ids, detail = searcher.ranked_ids(p.query, mode, depth, query_vec=qvecs[i])
        fused.append(ids)
        details.append(detail)
    cand = sorted({c for ids in fused for c in ids} | {c for d in details for per in d.values() for c in per})
    chunks = store.get_chunks(cand)
    cvecs = store.get_embeddings(cand, emb.id, emb.dim)
    missing = [c for c in cand if c not in cvecs]
    if missing:
        vecs = emb.encode([index_text(chunks[c].title, chunks[c].text) for c in missing], batch_size=64)
        cvecs.update(zip(missing, vecs))
    return _Ranked(fused, details, chunks, cvecs, {c: ch.doc_id for c, ch in chunks.items()},
                   _positive_vectors(pairs, store, emb))


def by_rank(detail: Mapping[str, Mapping[int, tuple[int, float]]], name: str) -> list[int]:
    """One retriever's chunk ids, best first, from `Searcher.ranked_ids`'s detail."""
    per = detail.get(name, {})
    return sorted(per, key=lambda c: per[c][0])


def teacher_scores(detail: Mapping[str, Mapping[int, tuple[int, float]]], dense_weight: float) -> dict[int, float]:
    """The hybrid teacher: a convex combination of each retriever's min-max normalised scores, in [0, 1].

    Scores, not reciprocal ranks: distillation needs graded targets, and RRF flattens them.
    """
    per = {name: (list(d), [s for _, s in d.values()]) for name, d in detail.items() if d and name in ("dense", "bm25")}
    return dict(weighted_fuse(per, {"dense": dense_weight, "bm25": 1.0 - dense_weight}))


def bm25_offsets(detail: Mapping[str, Mapping[int, tuple[int, float]]], doc_of: Mapping[int, str], own_doc: str,
                 candidates: Sequence[int], positive_score: float, dense_weight: float) -> tuple[float, ...]:
    """What BM25 adds to the positive and to each candidate in the served fusion, in cosine units.

    The served score is w * minmax(cos) + (1 - w) * minmax(bm25): in cosine units BM25 adds
    (1 - w) / w * cos_range * minmax(bm25). A student scored with this offset only gets gradient where the
    fusion still needs the dense side (CLEAR's residual training), instead of relearning what BM25 gives.
    The ranges leave out the pair's own document: its chunk holds the pseudo-query verbatim."""
    if dense_weight <= 0:
        return (0.0,) * (1 + len(candidates))
    bm25 = {c: s for c, (_, s) in detail.get("bm25", {}).items() if doc_of.get(c) != own_doc}
    cos = [s for c, (_, s) in detail.get("dense", {}).items() if doc_of.get(c) != own_doc]
    if len(bm25) < 2 or len(cos) < 2:
        return (0.0,) * (1 + len(candidates))
    lo, hi = min(bm25.values()), max(bm25.values())
    if hi <= lo:
        return (0.0,) * (1 + len(candidates))
    scale = (1 - dense_weight) / dense_weight * (max(cos) - min(cos)) / (hi - lo)

    def offset(s: float) -> float:
        return round(scale * min(max(s - lo, 0.0), hi - lo), 5)

    return (offset(positive_score), *(offset(bm25.get(c, lo)) for c in candidates))


def spread_candidates(filtered: Sequence[int], n: int, rng: random.Random) -> list[int]:
    """n candidates: the top half of the filtered ranking, the rest sampled from deeper down.

    The teacher's distribution only teaches an order if it covers both close calls and clear losers.
    """
    if len(filtered) <= n:
        return list(filtered)
    top = (n + 1) // 2
    return list(filtered[:top]) + [filtered[i] for i in sorted(rng.sample(range(top, len(filtered)), n - top))]


def mine_teacher_candidates(pairs: Sequence[Pair], searcher, n: int, depth: int = 30, max_sim: float = 0.95,
                            dense_weight: float = 0.5, seed: int = 0, progress: bool = True,
                            max_pairs: int | None = None, residual_weight: float | None = None) -> list[Pair]:
    """Give every pair n index candidates with the hybrid teacher's scores (pairs with fewer are dropped).

    Candidates pass the same filters as hard negatives (no positive document, no near-duplicate of the
    positive, one chunk per document) but none is skipped: the teacher's graded scores, not a hard
    label, say how relevant each is. With `residual_weight` (the served fusion's dense weight) each pair
    also carries BM25's offsets of its positive and candidates (`bm25_offsets`).
    """
    if not pairs:
        return []
    rng = random.Random(seed)
    positives_of = _positives_of(pairs)  # over all pairs: a query's other positives are never candidates
    if max_pairs is not None and len(pairs) > max_pairs:
        pairs = rng.sample(list(pairs), max_pairs)
    r = _rank_pairs(pairs, searcher, "hybrid", depth, progress)
    out: list[Pair] = []
    for i, p in enumerate(pairs):
        teacher = teacher_scores(r.detail[i], dense_weight)
        ranked = sorted(teacher, key=lambda c: (-teacher[c], c))
        sims = {c: float(r.cvecs[c] @ r.pos_vecs[i]) for c in ranked if c in r.cvecs}
        filtered = select_negatives(ranked, positives_of[_norm(p.query)], r.doc_of, sims, len(ranked), max_sim)
        chosen = spread_candidates(filtered, n, rng)
        if len(chosen) == n:
            offsets: tuple[float, ...] = ()
            if residual_weight is not None:
                own = searcher.gen.bm25.score_text(p.query, p.positive)
                offsets = bm25_offsets(r.detail[i], r.doc_of, p.doc_id, chosen, own, residual_weight)
            out.append(with_negatives(p, [index_text(r.chunks[c].title, r.chunks[c].text) for c in chosen],
                                      [round(teacher[c], 5) for c in chosen], offsets))
    log.info("teacher candidates: %d pairs kept of %d (%d candidates each)", len(out), len(pairs), n)
    return out


def _positive_vectors(pairs: Sequence[Pair], store, emb) -> np.ndarray:
    """The positive's vector: its cached chunk embedding when it comes from the index, else encoded."""
    ids = [p.chunk_id for p in pairs if p.chunk_id is not None]
    cached = store.get_embeddings(ids, emb.id, emb.dim) if ids else {}
    vecs = np.zeros((len(pairs), emb.dim), dtype=np.float32)
    todo = [i for i, p in enumerate(pairs) if p.chunk_id is None or p.chunk_id not in cached]
    for i, p in enumerate(pairs):
        if p.chunk_id is not None and p.chunk_id in cached:
            vecs[i] = cached[p.chunk_id]
    if todo:
        vecs[todo] = emb.encode([pairs[i].positive for i in todo], batch_size=64)
    return vecs
