import math

import pytest

from indexer.metrics import evaluate_run, mrr_at_k, ndcg_at_k, recall_at_k


def test_ndcg_hand_computed():
    qrels = {"d1": 1, "d3": 1}
    # relevant at ranks 2 and 3: DCG = 1/log2(3) + 1/log2(4); IDCG = 1 + 1/log2(3)
    expected = (1 / math.log2(3) + 1 / 2) / (1 + 1 / math.log2(3))
    assert ndcg_at_k(["d0", "d1", "d3"], qrels, 10) == pytest.approx(expected)
    assert ndcg_at_k(["d1", "d3"], qrels, 10) == pytest.approx(1.0)
    assert ndcg_at_k(["x"], qrels, 10) == 0.0


def test_graded_ndcg():
    qrels = {"a": 2, "b": 1}
    expected = (1 + 2 / math.log2(3)) / (2 + 1 / math.log2(3))
    assert ndcg_at_k(["b", "a"], qrels, 10) == pytest.approx(expected)


def test_recall_and_mrr():
    qrels = {"a": 1, "b": 1, "c": 1, "d": 0}
    assert recall_at_k(["a", "x", "c"], qrels, 100) == pytest.approx(2 / 3)
    assert recall_at_k(["a", "x", "c"], qrels, 1) == pytest.approx(1 / 3)
    assert mrr_at_k(["x", "d", "b"], qrels, 10) == pytest.approx(1 / 3)
    assert mrr_at_k(["x"], qrels, 10) == 0.0


def test_evaluate_run_averages_judged_queries():
    out = evaluate_run({"q1": ["a"], "q2": ["z"]}, {"q1": {"a": 1}, "q2": {"b": 1}, "q3": {"c": 0}})
    assert out["queries"] == 2
    assert out["ndcg@10"] == pytest.approx(0.5)
    assert out["mrr@10"] == pytest.approx(0.5)
