"""A label-free check of an adapted embedder: does it find held-out documents from queries unlike its training?

The trainer's own dev pairs are the same kind of pseudo-query it trained on (a sentence cut from a chunk, a
claim), so they reward learning that kind: on SciFact a run whose dev nDCG@10 rose most (0.644 -> 0.679)
lost most on the real queries (dense 0.662 -> 0.592). The probe asks other questions about documents the
run never trained on (the dev split's documents):

  title     the document's title -> the document's text without it (when titles tell documents apart)
  keywords  the five rarest words of one of its chunks, in their order -> the document
            (one query per sampled chunk, so a corpus of few long documents still gets enough)
  question  a wh-question about one of its sentences, four words each side of the answer asked for

The corpus is the held-out documents' chunks (without titles) plus distractor chunks of other documents;
each model ranks documents by their best chunk, scored with nDCG@10 (one relevant document), in the mode
search serves: hybrid (the model's cosines fused with BM25 as indexer.fusion does) by default. Judged
dense-only, every such probe rewards an adaptation, the deliberately over-adapted model included
(bench/results/gate-study.json): what distillation from a BM25-and-dense teacher teaches is lexical
matching, which hybrid search already has. Judged hybrid over all its queries, the probe is saturated:
BM25 alone answers most of them at rank 1. So the call is made on the queries BM25 misses (`hard_gate`):
the adapted model replaces the base when it gains there on average.
"""

from __future__ import annotations

import math
import random
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

KINDS = ("title", "keywords", "question")
# wh-questions: words kept each side of the answer (0: all); the gate asks "question", the others are
# bench/gate_probe_study.py's candidates (worse on half A)
QUESTION_KINDS = {"question": 4, "question2": 2, "question0": 0}
Z = 1.645  # one-sided 95%: the gain the probe must show beyond its noise to replace the base
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
    lexical: dict[str, str] = field(default_factory=dict)  # chunk key -> BM25's text where it differs (neighbours)


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


def question_queries(chunk: Any, window: int, rng: random.Random, every_span: bool = False) -> list[str]:
    """Wh-questions about the chunk's sentences (a capitalised phrase or number asked for, the rest fronted,
    trainer/lm/qa_synthetic.py): one per sentence that has such a span, or one per span (`every_span`: a small
    held-out set still gives enough questions). Users ask questions; the trainer never makes any."""
    from trainer.lm.qa_synthetic import cloze_question, question_sentences, regex_spans

    spans = regex_spans(chunk)
    out = []
    for s, e in question_sentences(chunk.text):
        inside = [(a - s, b - s, label) for a, b, label in spans if s <= a and b <= e]
        for a, b, label in (inside if every_span else [rng.choice(inside)] if inside else []):
            out.append(cloze_question(chunk.text[s:e], a, b, label, fronted=True, window=window))
    return out


def build_probe(chunks: Sequence[Any], held_out: set[str], distractors: Sequence[Any], seed: int,
                max_docs: int = 300, kinds: Sequence[str] = KINDS, bm25_context: int = 0, max_queries: int | None = None,
                every_span: bool = False) -> Probe:
    """Probe queries about the held-out documents' `chunks` (at most `max_docs` documents, `max_queries` queries of
    a kind, `max_docs` when None), over those chunks plus `distractors`; BM25 scores a chunk with `bm25_context`
    neighbours each side as the index does (indexer.bm25_context_chunks), titles left out as from the text."""
    max_queries = max_docs if max_queries is None else max_queries
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
    members = [c for d in docs for c in by_doc[d]] + [c for c in distractors if c.doc_id not in held_out]
    for c in members:
        corpus[f"c{c.id}"], doc_of[f"c{c.id}"] = c.text, c.doc_id
    lexical: dict[str, str] = {}
    if bm25_context:
        from indexer.chunking import bm25_texts

        texts = bm25_texts([replace(c, title="") for c in members], bm25_context)
        lexical = {f"c{c.id}": texts[c.id] for c in members if texts[c.id] != c.text}
    df: Counter[str] = Counter()
    for text in corpus.values():
        df.update(set(words(text)))
    queries: dict[str, list[tuple[str, str]]] = {k: [] for k in (*KINDS, *kinds)}
    titles = Counter((by_doc[d][0].title or "").strip().lower() for d in docs)
    for d in docs:
        title = (by_doc[d][0].title or "").strip()
        if len(title.split()) >= 3 and titles[title.lower()] == 1:
            queries["title"].append((title, d))
    # one keyword query per sampled chunk (a corpus of few long documents still gets enough)
    held_chunks = [c for d in docs for c in by_doc[d]]
    for c in sorted(rng.sample(held_chunks, min(max_queries, len(held_chunks))), key=lambda c: c.id):
        kw = keyword_query(c.text, df, len(corpus))
        if kw is not None:
            queries["keywords"].append((kw, c.doc_id))
    for kind in set(kinds) & set(QUESTION_KINDS):
        qrng = random.Random(seed + 1)
        asked = [(q, c.doc_id) for c in held_chunks for q in question_queries(c, QUESTION_KINDS[kind], qrng, every_span)]
        queries[kind] = sorted(qrng.sample(asked, min(max_queries, len(asked))), key=lambda x: (x[1], x[0]))
    return Probe(corpus, doc_of, {k: v for k, v in queries.items() if k in kinds and len(v) >= MIN_QUERIES}, lexical)


def query_ndcg_at_10(scores: np.ndarray, doc_of: Sequence[str], relevant: Sequence[str]) -> np.ndarray:
    """nDCG@10 of each query (one relevant document); documents ranked by their best chunk's score."""
    docs = sorted(set(doc_of))
    col = {d: i for i, d in enumerate(docs)}
    idx = np.array([col[d] for d in doc_of])
    best = np.full((len(scores), len(docs)), -np.inf, dtype=np.float32)
    np.maximum.at(best.T, idx, scores.T)  # best[q, doc] = max over the doc's chunks
    out = np.zeros(len(relevant))
    for qi, rel in enumerate(relevant):
        rank = int((best[qi] > best[qi, col[rel]]).sum())  # 0-based; ties count in the query's favour
        out[qi] = 1.0 / math.log2(rank + 2) if rank < 10 else 0.0
    return out


def fuse(dense: np.ndarray, lexical: np.ndarray, dense_weight: float, fusion: str = "weighted", rrf_k: int = 60,
         candidates: int | None = None) -> np.ndarray:
    """Hybrid scores [queries, chunks] as indexer.search fuses them: each retriever's top `candidates` hits (all
    when None; BM25's only where it scores above 0), combined by min-max normalised scores within those hits
    (`weighted`, indexer.fusion.weighted_fuse) or by reciprocal rank (`rrf`); a chunk a retriever did not return
    gets nothing from it."""
    out = np.zeros(dense.shape, dtype=np.float64)
    for x, weight, positive_only in ((dense, dense_weight, False), (lexical, 1.0 - dense_weight, True)):
        rank = np.argsort(np.argsort(-x, axis=1, kind="stable"), axis=1)  # 0-based, per query
        hit = rank < (x.shape[1] if candidates is None else candidates)
        if positive_only:
            hit &= x > 0
        if fusion == "rrf":
            out += np.where(hit, 1.0 / (rrf_k + rank + 1), 0.0)
            continue
        lo = np.where(hit, x, np.inf).min(axis=1, keepdims=True)
        span = np.where(hit, x, -np.inf).max(axis=1, keepdims=True) - lo
        norm = np.where(span > 0, (x - lo) / np.where(span > 0, span, 1.0), 1.0)  # one score: 1.0, as minmax
        out += weight * np.where(hit, norm, 0.0)
    return out


def lexical_scores(probe: Probe, k1: float = 1.5, b: float = 0.75, language: str = "english") -> dict[str, np.ndarray]:
    """BM25 scores [queries, chunks] of each kind over the probe's corpus (the same for every model)."""
    from indexer.bm25 import BM25Index

    keys = list(probe.corpus)
    bm = BM25Index.build((probe.lexical.get(k, probe.corpus[k]) for k in keys), np.arange(len(keys)), k1, b, language)
    return {kind: np.stack([bm.scores(q) for q, _ in qs]) for kind, qs in probe.queries.items()}


def probe_scores(encode, probe: Probe, lexical: Mapping[str, np.ndarray] | None = None,  # type: ignore[no-untyped-def]
                 dense_weight: float = 0.5, **fusion: Any) -> dict[str, dict[str, np.ndarray]]:
    """Per-query nDCG@10, {mode: {kind: [queries]}}, for one model (`encode(texts) -> normalised vectors`):
    dense, and hybrid (fused by `fuse(..., **fusion)`) when BM25 scores of the probe are given."""
    keys = list(probe.corpus)
    c_vecs = encode([probe.corpus[k] for k in keys])
    doc_of = [probe.doc_of[k] for k in keys]
    out: dict[str, dict[str, np.ndarray]] = {"dense": {}, **({"hybrid": {}} if lexical is not None else {})}
    for kind, qs in probe.queries.items():
        sims = encode([q for q, _ in qs]) @ c_vecs.T  # [queries, chunks]
        relevant = [d for _, d in qs]
        out["dense"][kind] = query_ndcg_at_10(sims, doc_of, relevant)
        if lexical is not None:
            out["hybrid"][kind] = query_ndcg_at_10(fuse(sims, lexical[kind], dense_weight, **fusion), doc_of, relevant)
    return out


def gate_decision(before: Mapping[str, np.ndarray], after: Mapping[str, np.ndarray], z: float = Z
                  ) -> tuple[bool, float | None, float | None]:
    """(replace, mean gain, its standard error) over every probe query of the kinds both scored.

    The adapted model replaces the base only when its gain is beyond the probe's noise (one-sided, `z`
    standard errors): a tie costs nothing to keep, while a swap costs a reindex and risks a model the probe
    cannot see is worse. No query: (False, None, None), keep the base."""
    diffs = _paired_diffs(before, after)
    if len(diffs) < 2:
        return False, None, None
    gain, se = _mean_se(diffs)
    return beyond(gain, se, z), round(gain, 4), round(se, 4)


def beyond(gain: float | None, se: float | None, margin: float = 0.0) -> bool:
    """The replace call on a mean gain: positive and at least `margin` standard errors (0: its sign alone)."""
    return gain is not None and gain > 0 and gain >= margin * (se or 0.0)


def _paired_diffs(before: Mapping[str, np.ndarray], after: Mapping[str, np.ndarray],
                  keep: Mapping[str, np.ndarray] | None = None) -> np.ndarray:
    """Per-query after - before over the kinds both scored (and `keep` marks, when given), kinds concatenated."""
    kinds = [k for k in before if k in after and (keep is None or k in keep)]
    pick = (lambda k, x: np.asarray(x)) if keep is None else (lambda k, x: np.asarray(x)[keep[k]])
    return np.concatenate([pick(k, after[k]) - pick(k, before[k]) for k in kinds]) if kinds else np.zeros(0)


def _mean_se(diffs: np.ndarray) -> tuple[float, float]:
    return float(diffs.mean()), float(diffs.std(ddof=1) / math.sqrt(len(diffs)))


def bm25_misses(probe: Probe, lexical: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Per kind, which probe queries BM25 alone does not answer at rank 1: the only ones where an embedder can
    still change a hybrid ranking (BM25 answers 91-94% of the probe's queries outright on the benched corpora, so
    over all of them every model scores 0.93-1.00 and the gains drown; bench/results/gate-study.json)."""
    doc_of = [probe.doc_of[k] for k in probe.corpus]
    out = {}
    for kind, qs in probe.queries.items():
        if kind not in lexical:
            continue
        relevant = [d for _, d in qs]
        own = np.array(doc_of)[None, :] == np.array(relevant)[:, None]  # [queries, chunks]: the query's document
        scored = (np.where(own, lexical[kind], 0.0) > 0).any(axis=1)  # BM25 returns no chunk of it: a miss
        out[kind] = (query_ndcg_at_10(lexical[kind], doc_of, relevant) < 1.0) | ~scored
    return out


def count_bm25_misses(probe: Probe, bm25: Mapping[str, Any] | None = None) -> int:
    """How many probe queries BM25 alone misses: known before any training, and below MIN_QUERIES `hard_gate`
    keeps the base whatever the adapted model does."""
    return int(sum(m.sum() for m in bm25_misses(probe, lexical_scores(probe, **(bm25 or {}))).values()))


def hard_gate(before: Mapping[str, np.ndarray], after: Mapping[str, np.ndarray], hard: Mapping[str, np.ndarray]
              ) -> tuple[bool, float | None, float | None, int]:
    """(replace, mean gain, standard error, queries) over the probe queries BM25 alone misses.

    Replace on a positive mean gain there; fewer than MIN_QUERIES such queries and the probe cannot see a
    difference: keep the base (gain None). Chosen on half A of the labelled cases among this rule, the same
    with a 1 or 1.645 standard-error margin, and the all-query rules (bench/gate_study.py)."""
    diffs = _paired_diffs(before, after, hard)
    if len(diffs) < MIN_QUERIES:
        return False, None, None, len(diffs)
    gain, se = _mean_se(diffs)
    return beyond(gain, se), round(gain, 4), round(se, 4), len(diffs)


def st_encoder(model_path: str, batch_size: int = 64):  # type: ignore[no-untyped-def]
    """A sentence-transformers model's normalised encoder (the probe runs outside the index)."""
    from sentence_transformers import SentenceTransformer

    from indexer.embedder import resolve_embedder_path

    model = SentenceTransformer(str(resolve_embedder_path(model_path)), device="cpu", local_files_only=True)
    return lambda texts: np.asarray(model.encode(list(texts), batch_size=batch_size, normalize_embeddings=True,
                                                 show_progress_bar=False), dtype=np.float32)


def served_mode(indexer: Any) -> dict[str, Any]:
    """`run_probe`'s keywords for search as `indexer` (an IndexerConfig) serves it: hybrid, fused and BM25-scored
    as the index does (recorded in the run, so the gate judges the mode the build will serve)."""
    return {"mode": "hybrid", "dense_weight": indexer.dense_weight,
            "fusion": {"fusion": indexer.fusion, "rrf_k": indexer.rrf_k, "candidates": indexer.candidates},
            "bm25": {"k1": indexer.bm25_k1, "b": indexer.bm25_b, "language": indexer.stemmer_language}}


def run_probe(probe: Probe, before_path: str, after_path: str, mode: str = "hybrid", dense_weight: float = 0.5,
              bm25: Mapping[str, Any] | None = None, z: float = Z, fusion: Mapping[str, Any] | None = None,
              encoder=st_encoder) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    """The gate's record: both models' nDCG@10 per mode and kind, and the call in the served `mode`
    (`fusion`: `fuse`'s fusion, rrf_k and candidates, as the index has them; a run from before it: all chunks;
    `encoder`: model path -> encode function, a bench's caching one)."""
    lexical = lexical_scores(probe, **(bm25 or {})) if mode == "hybrid" else None
    before = probe_scores(encoder(before_path), probe, lexical, dense_weight, **(fusion or {}))
    after = probe_scores(encoder(after_path), probe, lexical, dense_weight, **(fusion or {}))
    overall = dict(zip(("replace", "gain", "se"), gate_decision(before[mode], after[mode], z)))
    if lexical is not None:  # hybrid: judged where the embedder can still move the ranking
        replace, gain, se, n_hard = hard_gate(before[mode], after[mode], bm25_misses(probe, lexical))
        rule = {"rule": "bm25-misses", "bm25_misses": n_hard}
    else:
        replace, gain, se = overall["replace"], overall["gain"], overall["se"]
        rule = {"rule": "all-queries", "z": z}

    def means(scores: dict[str, dict[str, np.ndarray]]) -> dict[str, dict[str, float]]:
        return {m: {k: round(float(v.mean()), 4) for k, v in per.items()} for m, per in scores.items()}

    return {"mode": mode, "fusion": {"dense_weight": dense_weight, **(fusion or {})},
            "bm25_context_texts": len(probe.lexical), "before": means(before), "after": means(after),
            "gain": gain, "se": se, **rule, "all_queries": overall,
            "replace": replace, "queries": {k: len(v) for k, v in probe.queries.items()},
            "corpus_chunks": len(probe.corpus), "documents": len({probe.doc_of[k] for k in probe.corpus})}
