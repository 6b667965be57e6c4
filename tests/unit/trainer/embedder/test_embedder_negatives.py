"""Hard-negative selection: never the positive's documents, never near-duplicates; hardest-pair choice."""

from __future__ import annotations

import random

import pytest

from trainer.embedder.negatives import doc_rank, select_hardest, select_negatives, spread_candidates, teacher_scores
from trainer.embedder.pairs import Pair


def test_select_skips_positive_docs_near_duplicates_and_repeats():
    ranked = [1, 2, 3, 4, 5, 6, 7]
    doc_of = {1: "pos", 2: "other-pos", 3: "dup", 4: "a", 5: "a", 6: "b", 7: "c"}
    sims = {3: 0.99, 4: 0.5, 5: 0.4, 6: 0.3, 7: 0.2}
    got = select_negatives(ranked, {"pos", "other-pos"}, doc_of, sims, n=3, max_sim=0.95)
    assert got == [4, 6, 7]  # 1, 2: positive documents; 3: near-duplicate; 5: same document as 4
    assert select_negatives(ranked, {"pos", "other-pos"}, doc_of, sims, n=1, max_sim=0.95, skip_top=1) == [6]
    assert select_negatives(ranked, {"pos", "other-pos"}, doc_of, sims, n=5, max_sim=0.95) == [4, 6, 7]
    # unknown chunk ids (not in the store) are never returned
    assert select_negatives([99, 6], set(), doc_of, {}, n=2, max_sim=0.9) == [6]


def test_doc_rank_counts_documents_not_chunks():
    doc_of = {1: "a", 2: "a", 3: "b", 4: "c"}
    assert doc_rank([1, 2, 3, 4], doc_of, "c") == 3
    assert doc_rank([1, 2], doc_of, "c") is None


def test_select_hardest_prefers_bm25_found_dense_missed():
    pairs = [Pair(f"q{i}", "p", f"d{i}", "ict") for i in range(6)]
    dense = [1, 50, None, 2, 30, 1]
    bm25 = [1, 1, 2, 1, 40, None]  # q4 and q5: the teacher does not find them -> treated as noise
    got = select_hardest(pairs, dense, bm25, max_pairs=2, hard_share=1.0, rng=random.Random(0))
    assert {p.query for p in got} == {"q2", "q1"}
    mixed = select_hardest(pairs, dense, bm25, max_pairs=4, hard_share=0.5, rng=random.Random(0))
    assert len(mixed) == 4 and {"q1", "q2"} <= {p.query for p in mixed}
    assert select_hardest(pairs, dense, bm25, max_pairs=10, hard_share=0.5, rng=random.Random(0)) == pairs


def test_teacher_scores_fuse_min_max_scores_and_miss_counts_zero():
    detail = {"dense": {1: (1, 0.9), 2: (2, 0.5), 3: (3, 0.1)}, "bm25": {2: (1, 30.0), 4: (2, 10.0)}}
    t = teacher_scores(detail, dense_weight=0.5)
    assert t == {1: 0.5, 2: 0.75, 3: 0.0, 4: 0.0}  # 2 is found by both; 4 is BM25's bottom, 3 dense's bottom
    assert teacher_scores(detail, dense_weight=1.0)[1] == 1.0 and teacher_scores(detail, 1.0)[4] == 0.0
    assert teacher_scores({"dense": {}, "bm25": {7: (1, 3.0)}}, 0.5) == {7: 0.5}


def test_spread_candidates_keep_the_top_half_and_sample_deeper_in_rank_order():
    filtered = list(range(100, 130))
    got = spread_candidates(filtered, 7, random.Random(0))
    assert len(got) == 7 and got[:4] == [100, 101, 102, 103] and len(set(got)) == 7
    assert got == sorted(got) and set(got) <= set(filtered)
    assert spread_candidates([1, 2], 7, random.Random(0)) == [1, 2]


def test_bm25_offsets_put_bm25_in_cosine_units_without_the_own_document():
    from trainer.embedder.negatives import bm25_offsets

    doc_of = {1: "own", 2: "a", 3: "b", 4: "c"}
    detail = {"dense": {1: (1, 0.9), 2: (2, 0.6), 3: (3, 0.5), 4: (4, 0.4)},
              "bm25": {1: (1, 50.0), 2: (2, 12.0), 3: (3, 2.0)}}
    # cos range without "own": 0.2; BM25 range without it: 10; w = 0.5 -> 0.02 cosine per BM25 point
    out = bm25_offsets(detail, doc_of, "own", [2, 3, 4], positive_score=7.0, dense_weight=0.5)
    assert out == pytest.approx((0.1, 0.2, 0.0, 0.0))
    assert bm25_offsets(detail, doc_of, "own", [2], positive_score=99.0, dense_weight=0.5)[0] == pytest.approx(0.2)
    assert bm25_offsets(detail, doc_of, "own", [2, 3], 7.0, dense_weight=0.75) == pytest.approx((1 / 30, 1 / 15, 0.0), abs=1e-5)
    assert bm25_offsets({"dense": detail["dense"], "bm25": {}}, doc_of, "own", [2], 7.0, 0.5) == (0.0, 0.0)
