"""The label-free gate: probe queries of other kinds than the training pairs, scored per model."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from indexer.types import Chunk
from trainer.embedder.gate import (
    MIN_QUERIES,
    bm25_misses,
    build_probe,
    fuse,
    gate_decision,
    hard_gate,
    keyword_query,
    lexical_scores,
    probe_scores,
    query_ndcg_at_10,
    question_queries,
)


@dataclass(frozen=True)
class C:
    id: int
    doc_id: str
    title: str
    text: str


def test_gate_replaces_only_on_a_gain_beyond_the_probes_noise():
    before = {"title": np.array([0.5, 0.5, 1.0, 1.0] * 10), "keywords": np.array([0.6, 1.0] * 10)}
    clear = {"title": before["title"] + 0.1, "keywords": before["keywords"]}
    replace, gain, se = gate_decision(before, clear)
    assert replace and gain == round(0.1 * 40 / 60, 4) and se > 0
    rng = np.random.default_rng(0)
    noisy = {k: v + rng.normal(0.0, 0.3, len(v)) for k, v in before.items()}
    noisy = {k: v - (np.concatenate(list(noisy.values())) - np.concatenate(list(before.values()))).mean() + 0.005
             for k, v in noisy.items()}  # a mean gain of 0.005 inside noise of 0.3 a query
    assert gate_decision(before, noisy)[0] is False and gate_decision(before, noisy)[1] == 0.005
    assert gate_decision(before, before) == (False, 0.0, 0.0)  # a tie keeps the base
    assert gate_decision(before, {k: v - 0.1 for k, v in before.items()})[0] is False
    assert gate_decision({}, {}) == (False, None, None)  # nothing to judge: keep the base


def test_the_gate_judges_the_queries_bm25_alone_misses():
    n = MIN_QUERIES
    before = {"title": np.full(3 * n, 1.0), "question": np.concatenate([np.full(n, 1.0), np.full(n, 0.5)])}
    after = {"title": np.full(3 * n, 0.9), "question": np.concatenate([np.full(n, 1.0), np.full(n, 0.6)])}
    hard = {"title": np.zeros(3 * n, bool), "question": np.arange(2 * n) >= n}  # BM25 misses the second half
    assert gate_decision(before, after)[1] < 0  # over every query the adapted model loses (the titles)...
    assert hard_gate(before, after, hard) == (True, 0.1, 0.0, n)  # ...where BM25 needs help it gains: replace
    assert hard_gate(after, before, hard)[0] is False
    few = {"title": hard["title"], "question": np.arange(2 * n) >= 2 * n - (n - 1)}
    assert hard_gate(before, after, few) == (False, None, None, n - 1)  # too few to see: keep the base


def test_bm25_misses_marks_queries_whose_document_bm25_does_not_rank_first():
    from trainer.embedder.gate import Probe

    probe = Probe({"c0": "x", "c1": "y", "c2": "z"}, {"c0": "a", "c1": "b", "c2": "c"},
                  {"keywords": [("q1", "a"), ("q2", "b"), ("q3", "c")]})
    lexical = {"keywords": np.array([[3.0, 1.0, 0.0], [3.0, 1.0, 0.0], [0.0, 0.0, 0.0]])}
    assert bm25_misses(probe, lexical)["keywords"].tolist() == [False, True, True]  # no BM25 score: missed too


def test_the_misses_are_counted_with_bm25_alone_before_any_model():
    from trainer.embedder.gate import Probe, count_bm25_misses

    corpus = {"c0": "zebra stripes grazing savanna", "c1": "penguin colony antarctic ice", "c2": "cactus desert rain"}
    probe = Probe(corpus, {"c0": "a", "c1": "b", "c2": "c"},
                  {"keywords": [("zebra savanna", "a"), ("penguin ice", "b"), ("desert zebra stripes", "c"),
                                ("volcano", "a")]})
    assert count_bm25_misses(probe) == 2  # c's query ranks a first; "volcano" matches nothing


def test_question_queries_ask_for_a_phrase_of_each_sentence_near_its_place():
    import random

    text = ("The expedition reached Lake Victoria in the spring of 1858 after a long march. "
            "Its leader wrote about the journey at length. They returned to Zanzibar with many maps.")
    qs = question_queries(C(0, "d", "", text), 4, random.Random(0))
    assert len(qs) == 2  # the middle sentence asks for nothing: no capitalised phrase or number
    assert all(q.endswith("?") and q.split()[0] in {"What", "How"} for q in qs)
    assert all(len(q.split()) <= 1 + 2 + 8 for q in qs)  # "How many" + four words each side


def test_hybrid_probe_fuses_bm25_as_the_index_does():
    from indexer.fusion import rrf_fuse, weighted_fuse

    rng = np.random.default_rng(0)
    dense = rng.normal(size=(5, 40))
    lexical = np.where(rng.random((5, 40)) < 0.3, 0.0, rng.gamma(2.0, 2.0, (5, 40)))  # BM25: many chunks score 0
    for q in range(5):
        top_d = np.argsort(-dense[q], kind="stable")[:10]
        top_b = [i for i in np.argsort(-lexical[q], kind="stable")[:10] if lexical[q, i] > 0]
        per = {"dense": (top_d.tolist(), dense[q, top_d].tolist()), "bm25": (top_b, lexical[q, top_b].tolist())}
        for fusion, index in (("weighted", dict(weighted_fuse(per, {"dense": 0.7, "bm25": 0.3}))),
                              ("rrf", dict(rrf_fuse({k: v[0] for k, v in per.items()}, k=60)))):
            probe = fuse(dense[q:q + 1], lexical[q:q + 1], 0.7, fusion=fusion, rrf_k=60, candidates=10)[0]
            assert np.allclose([probe[i] for i in index], list(index.values()))  # every chunk the index fuses
            assert (np.delete(probe, list(index)) == 0).all()  # and nothing for a chunk neither retriever returned
    assert np.allclose(fuse(np.array([[0.9, 0.1, 0.5]]), np.array([[0.0, 4.0, 2.0]]), 1.0), [[1.0, 0.0, 0.5]])


def test_probe_scores_a_chunk_with_its_neighbours_words_in_bm25():
    text = "alpha beta gamma delta epsilon zeta eta theta"
    spans = [(0, 16), (17, 35), (36, len(text))]
    chunks = [Chunk(i, f"d#{i}", "d", i, a, b, text[a:b], "Doc title") for i, (a, b) in enumerate(spans)]
    probe = build_probe(chunks, {"d"}, [], seed=0, bm25_context=1)
    assert probe.corpus["c0"] == "alpha beta gamma" and probe.lexical["c0"] == "alpha beta gamma delta epsilon zeta"
    assert probe.lexical["c1"] == text and "title" not in " ".join(probe.lexical.values())
    assert build_probe(chunks, {"d"}, [], seed=0).lexical == {}  # no context: BM25 reads the chunk alone


def test_keyword_query_takes_the_rarest_shared_words_in_text_order():
    df = {"alpha": 2, "beta": 9, "gamma": 3, "delta": 2, "epsilon": 5, "zeta": 4, "unique": 1}
    q = keyword_query("alpha beta gamma unique delta epsilon zeta alpha", df, 10, k=4)
    assert q == "alpha gamma delta zeta"  # 'unique' occurs in one chunk only: an identifier, skipped
    assert keyword_query("alpha beta", df, 10, k=4) is None


def test_doc_ndcg_pools_chunks_by_document():
    c = np.eye(3, dtype=np.float32)  # chunks 0, 1 of doc a; chunk 2 of doc b
    q = np.array([[0, 1, 0], [0, 0, 1], [0.1, 0.0, 0.9]], dtype=np.float32)
    assert np.allclose(query_ndcg_at_10(q @ c.T, ["a", "a", "b"], ["a", "b", "a"]), [1, 1, 1 / np.log2(3)])


def test_probe_asks_about_held_out_documents_only_and_scores_a_model():
    words = [f"word{i:03d}" for i in range(400)]
    chunks, held = [], set()
    for d in range(40):
        text = " ".join(words[(d * 7 + j) % 400] for j in range(30))
        chunks.append(C(d, f"d{d}", f"Title of document number {d}", text))
        if d < 30:
            held.add(f"d{d}")
    probe = build_probe(chunks, held, [c for c in chunks if c.doc_id not in held], seed=0)
    assert set(probe.queries) == {"title", "keywords"} and len(probe.queries["title"]) == 30 >= MIN_QUERIES  # no
    # sentence has a phrase to ask for, so there are no questions
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
    assert set(scores) == {"dense"} and scores["dense"]["keywords"].mean() > 0.9  # a bag of words finds its chunk
    hybrid = probe_scores(bag, probe, lexical_scores(probe), dense_weight=0.5)
    assert hybrid["hybrid"]["keywords"].mean() >= 0.9 and len(hybrid["hybrid"]["title"]) == 30
