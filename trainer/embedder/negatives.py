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

from indexer.generation import index_text
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
            continue
        out.append(cid)
        seen_docs.add(doc)  # one negative per document: more variety per batch
        if len(out) == n:
            break
    return out


def mine_hard_negatives(pairs: Sequence[Pair], searcher, n: int, depth: int = 30, max_sim: float = 0.95,
                        skip_top: int = 0, mode: str = "hybrid", seed: int = 0, progress: bool = True) -> list[Pair]:
    """Give every pair exactly n negatives: hard ones from the index, topped up with random chunks.

    `searcher` is an indexer Searcher (its embedder encodes queries and positives; its store holds
    the chunks and their cached embeddings). Labelled negatives already on a pair are kept first.
    """
    if n == 0 or not pairs:
        return [with_negatives(p, p.negatives[:n]) for p in pairs]
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
    for i, p in enumerate(tqdm(pairs, desc="mine negatives", disable=not progress, unit="pair")):
        ids, _ = searcher.ranked_ids(p.query, mode, depth, query_vec=qvecs[i])
        ranked_all.append(ids)
    cand = sorted({c for r in ranked_all for c in r})
    chunks = store.get_chunks(cand)
    cvecs = store.get_embeddings(cand, emb.id, emb.dim)
    missing = [c for c in cand if c not in cvecs]
    if missing:
        vecs = emb.encode([index_text(chunks[c].title, chunks[c].text) for c in missing], batch_size=64)
        cvecs.update(zip(missing, vecs))
    doc_of = {c: ch.doc_id for c, ch in chunks.items()}
    out: list[Pair] = []
    n_hard = n_random = 0
    for i, p in enumerate(pairs):
        ranked = ranked_all[i]
        sims = {c: float(cvecs[c] @ pos_vecs[i]) for c in ranked if c in cvecs}
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
