"""The label-free gate: probe queries of other kinds than the training pairs, scored per model."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from trainer.embedder.gate import MIN_QUERIES, build_probe, doc_ndcg_at_10, gate_decision, keyword_query, probe_scores


@dataclass(frozen=True)
class C:
    id: int
    doc_id: str
    title: str
    text: str


def test_gate_decision_replaces_only_on_a_mean_gain_at_least_the_margin():
    before = {"title": 0.60, "keywords": 0.40}
    assert gate_decision(before, {"title": 0.64, "keywords": 0.38}) == (True, 0.01)
    assert gate_decision(before, {"title": 0.58, "keywords": 0.41}) == (False, -0.005)
    assert gate_decision(before, {"title": 0.62, "keywords": 0.40}, margin=0.02)[0] is False
    assert gate_decision({}, {}) == (False, None)  # nothing to judge: keep the base


def test_keyword_query_takes_the_rarest_shared_words_in_text_order():
    df = {"alpha": 2, "beta": 9, "gamma": 3, "delta": 2, "epsilon": 5, "zeta": 4, "unique": 1}
    q = keyword_query("alpha beta gamma unique delta epsilon zeta alpha", df, 10, k=4)
    assert q == "alpha gamma delta zeta"  # 'unique' occurs in one chunk only: an identifier, skipped
    assert keyword_query("alpha beta", df, 10, k=4) is None


def test_doc_ndcg_pools_chunks_by_document():
    c = np.eye(3, dtype=np.float32)  # chunks 0, 1 of doc a; chunk 2 of doc b
    q = np.array([[0, 1, 0], [0, 0, 1], [0.1, 0.0, 0.9]], dtype=np.float32)
    assert doc_ndcg_at_10(q, c, ["a", "a", "b"], ["a", "b", "a"]) == (1 + 1 + 1 / np.log2(3)) / 3


def test_probe_asks_about_held_out_documents_only_and_scores_a_model():
    words = [f"word{i:03d}" for i in range(400)]
    chunks, held = [], set()
    for d in range(40):
        text = " ".join(words[(d * 7 + j) % 400] for j in range(30))
        chunks.append(C(d, f"d{d}", f"Title of document number {d}", text))
        if d < 30:
            held.add(f"d{d}")
    probe = build_probe(chunks, held, [c for c in chunks if c.doc_id not in held], seed=0)
    assert set(probe.queries) == {"title", "keywords"} and len(probe.queries["title"]) == 30 >= MIN_QUERIES
    assert {d for _, d in probe.queries["keywords"]} <= held
    assert len(probe.corpus) == 40  # held-out chunks plus distractors, titles left out of the text
    vocab = {w: i for i, w in enumerate(sorted({w for t in list(probe.corpus.values()) for w in t.split()} |
                                               {w.lower() for q, _ in probe.queries["title"] for w in q.split()}))}

    def bag(texts):
        v = np.zeros((len(texts), len(vocab)), dtype=np.float32)
        for i, t in enumerate(texts):
            for w in t.lower().split():
                v[i, vocab[w]] += 1
        return v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-9)

    scores = probe_scores(bag, probe)
    assert scores["keywords"] > 0.9  # a bag of words finds a chunk from its own words
