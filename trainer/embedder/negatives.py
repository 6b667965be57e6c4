"""Hard negatives mined from our own index: BM25 and dense top-k (their fusion), filtered.

A negative is never from a positive document of the same query, and never a near-duplicate of the
positive (cosine above a threshold): both would teach the model that relevant text is irrelevant.
"""

from __future__ import annotations

import logging
import random
from collections import defaultdict
from collections.abc import Mapping, Sequence

import numpy as np
from tqdm import tqdm

from indexer.chunking import index_text
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
    store, emb = searcher.store, searcher.embedder
    all_ids = [int(i) for i in store.active_chunk_ids()]
    rng = random.Random(seed)
    positives_of: dict[str, set[str]] = defaultdict(set)
    for p in pairs:
        positives_of[_norm(p.query)].add(p.doc_id)
    # Query vectors once, in batches (the Searcher would otherwise embed each query on its own).
    qvecs = emb.encode([p.query for p in pairs], is_query=True, batch_size=64, show_progress=False)
    pos_vecs = _positive_vectors(pairs, store, emb)
    ranked_all: list[list[int]] = []
    ranked_dense: list[list[int]] = []
    ranked_bm25: list[list[int]] = []
    for i, p in enumerate(tqdm(pairs, desc="mine negatives", disable=not progress, unit="pair")):
        ids, detail = searcher.ranked_ids(p.query, mode, depth, query_vec=qvecs[i])
        ranked_all.append(ids)
        dense = detail.get("dense", {})
        ranked_dense.append(sorted(dense, key=lambda c: dense[c][0]))
        bm25 = detail.get("bm25", {})
        ranked_bm25.append(sorted(bm25, key=lambda c: bm25[c][0]))
    cand = sorted({c for r in ranked_all + ranked_dense + ranked_bm25 for c in r})
    chunks = store.get_chunks(cand)
    cvecs = store.get_embeddings(cand, emb.id, emb.dim)
    missing = [c for c in cand if c not in cvecs]
    if missing:
        vecs = emb.encode([index_text(chunks[c].title, chunks[c].text) for c in missing], batch_size=64)
        cvecs.update(zip(missing, vecs))
    doc_of = {c: ch.doc_id for c, ch in chunks.items()}
    if max_pairs is not None and len(pairs) > max_pairs:
        d_ranks = [doc_rank(ranked_dense[i], doc_of, p.doc_id) for i, p in enumerate(pairs)]
        b_ranks = [doc_rank(ranked_bm25[i], doc_of, p.doc_id) for i, p in enumerate(pairs)]
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
