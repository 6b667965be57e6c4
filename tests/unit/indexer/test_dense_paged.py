"""FAISS built from pages of vectors: the same index as from one array, holding one page at a time."""

from __future__ import annotations

import numpy as np
import pytest

from common.errors import InvalidInput
from indexer import dense


def vectors(n: int, dim: int = 16, seed: int = 0) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def paged(ids: np.ndarray, vecs: np.ndarray, size: int, calls: list[int] | None = None):
    def pages():
        if calls is not None:
            calls.append(1)
        for s in range(0, len(ids), size):
            yield ids[s:s + size], vecs[s:s + size]
    return pages


@pytest.mark.parametrize("factory", ["Flat", "IVF8,Flat"])
def test_paged_build_equals_array_build(factory: str) -> None:
    vecs = vectors(1000)
    ids = np.arange(1000, dtype=np.int64) * 3 + 5
    calls: list[int] = []
    got = dense.build_index_paged(16, factory, len(ids), paged(ids, vecs, 128, calls))
    ref = dense.build_index(16, factory, ids, vecs)
    assert len(calls) == (1 if factory == "Flat" else 2)  # a trained index reads the pages twice
    dense.configure(got, nprobe=8, ef_search=64)
    dense.configure(ref, nprobe=8, ef_search=64)
    q = vectors(20, seed=1)
    s1, i1 = dense.search(got, q, 10)
    s2, i2 = dense.search(ref, q, 10)
    np.testing.assert_array_equal(i1, i2)
    np.testing.assert_array_equal(s1, s2)


def test_training_sample_is_bounded_and_spread() -> None:
    vecs = vectors(1000)
    ids = np.arange(1000, dtype=np.int64)
    sample = dense._training_sample(paged(ids, vecs, 64)(), 1000, 100, 16)
    np.testing.assert_array_equal(sample, vecs[::10])
    assert dense._training_sample(paged(ids, vecs, 64)(), 1000, 1000, 16).shape == (1000, 16)


def test_paged_build_checks_counts() -> None:
    vecs = vectors(100)
    ids = np.arange(100, dtype=np.int64)
    with pytest.raises(ValueError, match="99 vectors paged in, 100 expected"):
        dense.build_index_paged(16, "Flat", 100, paged(ids[:99], vecs[:99], 10))
    with pytest.raises(InvalidInput, match="needs at least 8 vectors"):
        dense.build_index_paged(16, "IVF8,Flat", 5, paged(ids[:5], vecs[:5], 10))
    assert dense.build_index_paged(16, "Flat", 0, paged(ids[:0], vecs[:0], 10)).ntotal == 0


def test_update_index_paged_equals_update_index() -> None:
    vecs = vectors(300)
    ids = np.arange(300, dtype=np.int64)
    old = dense.build_index(16, "Flat", ids[:200], vecs[:200])
    remove = np.array([3, 50, 199], dtype=np.int64)
    got = dense.update_index_paged(old, remove, paged(ids[200:], vecs[200:], 32)())
    ref = dense.update_index(old, "Flat", remove, ids[200:], vecs[200:])
    assert got.ntotal == ref.ntotal == 297 and old.ntotal == 200
    q = vectors(5, seed=2)
    np.testing.assert_array_equal(dense.search(got, q, 10)[1], dense.search(ref, q, 10)[1])
