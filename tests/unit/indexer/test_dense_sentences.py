"""Chunk vectors with their sentences' beside them: the served search equals the exhaustive formula."""

from __future__ import annotations

import numpy as np
import pytest

from indexer import dense


def unit(n: int, dim: int, seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def corpus(n_chunks: int = 300, dim: int = 8, seed: int = 0):
    """Chunk ids 10, 13, ...; each chunk 0-4 sentences (0: scored by its own cosine)."""
    rng = np.random.default_rng(seed)
    ids = np.arange(n_chunks, dtype=np.int64) * 3 + 10
    chunk_vecs = unit(n_chunks, dim, seed + 1)
    counts = rng.integers(0, 5, n_chunks)
    owners = np.repeat(ids, counts)
    sent_vecs = unit(len(owners), dim, seed + 2)
    return ids, chunk_vecs, owners, sent_vecs, int(counts.max())


def exhaustive(q, ids, chunk_vecs, owners, sent_vecs, share):
    chunk = dict(zip(ids.tolist(), (chunk_vecs @ q).tolist()))
    best: dict[int, float] = {}
    for o, s in zip(owners.tolist(), (sent_vecs @ q).tolist()):
        best[o] = max(best.get(o, -2.0), s)
    return {i: (1 - share) * c + share * best.get(i, c) for i, c in chunk.items()}


@pytest.mark.parametrize("share", [0.3, 0.5, 1.0])
def test_flat_search_gives_the_exhaustive_scores_and_order_above_the_lists_bound(share: float) -> None:
    """Every score is the formula's, exactly; the order is the exhaustive one down to the threshold no chunk
    missing from both top lists can reach, (1 - share) * the chunk list's last cosine + share * the sentence list's
    last (Fagin's threshold algorithm), or the chunk list's last cosine where that is higher. Below it the union
    is an approximation."""
    ids, cv, owners, sv, most = corpus()
    index = dense.build_index(8, "Flat", ids, cv)
    sentences = dense.build_index(8, "Flat", owners, sv)
    checked = 0
    for qi, q in enumerate(unit(20, 8, 7)):
        want = exhaustive(q, ids, cv, owners, sv, share)
        got, scores, cosines = dense.search_with_sentences(index, sentences, q[None], 30, share, most)
        np.testing.assert_allclose(scores, [want[i] for i in got], atol=1e-5)
        assert scores == sorted(scores, reverse=True)
        assert all(abs(cosines[i] - float(cv[list(ids).index(i)] @ q)) < 1e-5 for i in got)
        last_chunk = np.sort(cv @ q)[-30]  # a chunk of one sentence outside the chunk list scores at most this
        bound = max(last_chunk, (1 - share) * last_chunk + share * np.sort(sv @ q)[-30 * dense.SENTENCE_FANOUT])
        sure = [i for i in sorted(want, key=lambda i: (-want[i], i)) if want[i] > bound + 1e-6][:30]
        assert got[:len(sure)] == sure, qi
        checked += len(sure)
    assert checked >= 100  # the bound is not vacuous


def test_a_chunk_found_only_by_its_sentence_is_ranked_with_its_own_cosine() -> None:
    """Chunk 1's own vector is far from the query, its sentence matches it: the union brings it in, and its
    cosine (searched among the candidates alone) enters its score."""
    q = np.array([[1.0, 0.0, 0.0]], np.float32)
    chunk_vecs = np.array([[0.4, 0.9165, 0.0], [0.0, 0.0, 1.0], [0.0, 1.0, 0.0]], np.float32)
    index = dense.build_index(3, "Flat", np.array([0, 1, 2]), chunk_vecs)
    sentences = dense.build_index(3, "Flat", np.array([0, 1, 1]),
                                  np.array([[0.4, 0.9165, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]], np.float32))
    got, scores, cosines = dense.search_with_sentences(index, sentences, q, 1, 0.5, most=2)
    assert got == [1] and scores == pytest.approx([0.5])  # 0.5 * 0 + 0.5 * 1 beats chunk 0's 0.4
    assert cosines[1] == pytest.approx(0.0) and cosines[0] == pytest.approx(0.4)


def test_allowed_ids_restrict_both_sides() -> None:
    ids, cv, owners, sv, most = corpus(seed=3)
    index = dense.build_index(8, "Flat", ids, cv)
    sentences = dense.build_index(8, "Flat", owners, sv)
    allowed = ids[::7]
    q = unit(1, 8, 9)
    got, _, cosines = dense.search_with_sentences(index, sentences, q, 5, 0.5, most, allowed)
    want = exhaustive(q[0], ids[::7], cv[::7], owners[np.isin(owners, allowed)], sv[np.isin(owners, allowed)], 0.5)
    assert got == sorted(want, key=lambda i: (-want[i], i))[:5]
    assert set(cosines) <= set(allowed.tolist())


def test_removing_a_chunk_removes_its_sentences() -> None:
    ids, cv, owners, sv, most = corpus(seed=5)
    sentences = dense.build_index(8, "Flat", owners, sv)
    gone = owners[:3]
    updated = dense.update_index(sentences, "Flat", np.unique(gone), np.zeros(0, np.int64),
                                 np.zeros((0, 8), np.float32))
    assert updated.ntotal == int((~np.isin(owners, gone)).sum())
    _, found = dense.search(updated, unit(4, 8, 1), updated.ntotal)
    assert not np.isin(found, gone).any()
