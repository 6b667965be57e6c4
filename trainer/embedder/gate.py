"""A label-free check of an adapted embedder: does it find held-out documents from queries unlike its training?

The trainer's own dev pairs are the same kind of pseudo-query it trained on (a sentence cut from a chunk, a
claim), so they reward learning that kind: on SciFact a run whose dev nDCG@10 rose most (0.644 -> 0.679)
lost most on the real queries (dense 0.662 -> 0.592). The probe asks other questions about documents the
run never trained on (the dev split's documents):

  title     the document's title -> the document's text without it (when titles tell documents apart)
  keywords  the five rarest words of one of its chunks, in their order -> the document
            (one query per sampled chunk, so a corpus of few long documents still gets enough)

The corpus is the held-out documents' chunks (without titles) plus distractor chunks of other documents;
each model ranks documents by their best chunk (cosine), scored with nDCG@10 (one relevant document).
The gate replaces the base when the mean gain over the kinds is at least `margin`.
"""

from __future__ import annotations

import math
import random
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

KINDS = ("title", "keywords")
MIN_QUERIES = 20  # a kind with fewer probe queries is left out
_WORD = re.compile(r"[A-Za-z][A-Za-z0-9\-]{3,}")
_STOP = frozenset("""this that with from have were been which their there these those than then them they what when
where while also into more most other some such only over very your about after again against because before being
below between both during each further here itself just once same should under until upon whom will would could
using used shown show shows within without among however therefore thus""".split())


@dataclass(frozen=True)
class Probe:
    corpus: dict[str, str]  # chunk key -> text
    doc_of: dict[str, str]  # chunk key -> document id
    queries: dict[str, list[tuple[str, str]]]  # kind -> [(query, relevant document id)]


def words(text: str) -> list[str]:
    return [w.lower() for w in _WORD.findall(text) if w.lower() not in _STOP]


def keyword_query(text: str, df: Mapping[str, int], n_docs: int, k: int = 5) -> str | None:
    """The k rarest words of `text` that occur in at least two chunks (a word in one chunk only is an
    identifier, not a query term), in the order they first appear."""
    seen: list[str] = []
    for w in words(text):
        if w not in seen and df.get(w, 0) >= 2:
            seen.append(w)
    if len(seen) < k:
        return None
    rare = set(sorted(seen, key=lambda w: (df[w], w))[:k])
    return " ".join(w for w in seen if w in rare)


def build_probe(chunks: Sequence[Any], held_out: set[str], distractors: Sequence[Any], seed: int,
                max_docs: int = 300) -> Probe:
    """Probe queries about the held-out documents' `chunks`, over those chunks plus `distractors`."""
    rng = random.Random(seed)
    by_doc: dict[str, list[Any]] = {}
    for c in chunks:
        if c.doc_id in held_out:
            by_doc.setdefault(c.doc_id, []).append(c)
    docs = sorted(by_doc)
    rng.shuffle(docs)
    docs = sorted(docs[:max_docs])
    corpus: dict[str, str] = {}
    doc_of: dict[str, str] = {}
    for c in [c for d in docs for c in by_doc[d]] + [c for c in distractors if c.doc_id not in held_out]:
        corpus[f"c{c.id}"], doc_of[f"c{c.id}"] = c.text, c.doc_id
    df: Counter[str] = Counter()
    for text in corpus.values():
        df.update(set(words(text)))
    queries: dict[str, list[tuple[str, str]]] = {k: [] for k in KINDS}
    titles = Counter((by_doc[d][0].title or "").strip().lower() for d in docs)
    for d in docs:
        title = (by_doc[d][0].title or "").strip()
        if len(title.split()) >= 3 and titles[title.lower()] == 1:
            queries["title"].append((title, d))
    # one keyword query per sampled chunk (a corpus of few long documents still gets enough)
    held_chunks = [c for d in docs for c in by_doc[d]]
    for c in sorted(rng.sample(held_chunks, min(max_docs, len(held_chunks))), key=lambda c: c.id):
        kw = keyword_query(c.text, df, len(corpus))
        if kw is not None:
            queries["keywords"].append((kw, c.doc_id))
    return Probe(corpus, doc_of, {k: v for k, v in queries.items() if len(v) >= MIN_QUERIES})


def doc_ndcg_at_10(q_vecs: np.ndarray, c_vecs: np.ndarray, doc_of: Sequence[str], relevant: Sequence[str]) -> float:
    """Mean nDCG@10 with one relevant document per query; documents ranked by their best chunk."""
    docs = sorted(set(doc_of))
    col = {d: i for i, d in enumerate(docs)}
    idx = np.array([col[d] for d in doc_of])
    sims = q_vecs @ c_vecs.T  # [queries, chunks]
    best = np.full((len(q_vecs), len(docs)), -np.inf, dtype=np.float32)
    np.maximum.at(best.T, idx, sims.T)  # best[q, doc] = max over the doc's chunks
    total = 0.0
    for qi, rel in enumerate(relevant):
        target = best[qi, col[rel]]
        rank = int((best[qi] > target).sum())  # 0-based; ties count in the query's favour
        total += 1.0 / math.log2(rank + 2) if rank < 10 else 0.0
    return total / max(1, len(relevant))


def probe_scores(encode, probe: Probe) -> dict[str, float]:  # type: ignore[no-untyped-def]
    """nDCG@10 per query kind for one model; `encode(texts) -> normalised vectors`."""
    keys = list(probe.corpus)
    c_vecs = encode([probe.corpus[k] for k in keys])
    doc_of = [probe.doc_of[k] for k in keys]
    out = {}
    for kind, qs in probe.queries.items():
        out[kind] = round(doc_ndcg_at_10(encode([q for q, _ in qs]), c_vecs, doc_of, [d for _, d in qs]), 4)
    return out


def gate_decision(before: Mapping[str, float], after: Mapping[str, float], margin: float = 0.0
                  ) -> tuple[bool, float | None]:
    """(replace, mean gain over the kinds both scored); no kind scored: (False, None), keep the base."""
    kinds = [k for k in before if k in after]
    if not kinds:
        return False, None
    gain = sum(after[k] - before[k] for k in kinds) / len(kinds)
    return gain >= margin, round(gain, 4)


def st_encoder(model_path: str, batch_size: int = 64):  # type: ignore[no-untyped-def]
    """A sentence-transformers model's normalised encoder (the probe runs outside the index)."""
    from sentence_transformers import SentenceTransformer

    from indexer.embedder import resolve_embedder_path

    model = SentenceTransformer(str(resolve_embedder_path(model_path)), device="cpu", local_files_only=True)
    return lambda texts: np.asarray(model.encode(list(texts), batch_size=batch_size, normalize_embeddings=True,
                                                 show_progress_bar=False), dtype=np.float32)


def run_probe(probe: Probe, before_path: str, after_path: str, margin: float = 0.0) -> dict[str, Any]:
    """The gate's record: per-kind scores of both models, the mean gain and the call."""
    before = probe_scores(st_encoder(before_path), probe)
    after = probe_scores(st_encoder(after_path), probe)
    replace, gain = gate_decision(before, after, margin)
    return {"before": before, "after": after, "gain": gain, "replace": replace, "margin": margin,
            "queries": {k: len(v) for k, v in probe.queries.items()}, "corpus_chunks": len(probe.corpus),
            "documents": len({probe.doc_of[k] for k in probe.corpus})}
