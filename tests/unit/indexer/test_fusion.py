import pytest

from indexer.fusion import minmax, rrf_fuse, weighted_fuse


def test_rrf_hand_computed():
    fused = dict(rrf_fuse({"a": [1, 2, 3], "b": [3, 1]}, k=60))
    assert fused[1] == pytest.approx(1 / 61 + 1 / 62)
    assert fused[3] == pytest.approx(1 / 63 + 1 / 61)
    assert fused[2] == pytest.approx(1 / 62)
    order = [d for d, _ in rrf_fuse({"a": [1, 2, 3], "b": [3, 1]}, k=60)]
    assert order == [1, 3, 2]


def test_rrf_ties_are_deterministic():
    assert [d for d, _ in rrf_fuse({"a": [5], "b": [4]}, k=1)] == [4, 5]


def test_weighted_fusion():
    fused = weighted_fuse({"dense": ([1, 2], [0.9, 0.5]), "bm25": ([2, 3], [10.0, 2.0])},
                          {"dense": 0.5, "bm25": 0.5})
    d = dict(fused)
    assert d[1] == pytest.approx(0.5)
    assert d[2] == pytest.approx(0.5)
    assert d[3] == pytest.approx(0.0)
    assert minmax([2.0, 2.0]) == [1.0, 1.0]
