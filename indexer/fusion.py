"""Rank fusion of retriever results, pure functions over ranked id lists."""

from __future__ import annotations

from collections.abc import Mapping, Sequence


def rrf_fuse(rankings: Mapping[str, Sequence[int]], k: int = 60) -> list[tuple[int, float]]:
    """Reciprocal-rank fusion (Cormack et al., 2009): score(d) = sum over lists of 1 / (k + rank(d)).

    Ties are broken by the best single rank, then by id, so the order is deterministic.
    """
    scores: dict[int, float] = {}
    best: dict[int, int] = {}
    for ranked in rankings.values():
        for rank, doc in enumerate(ranked, 1):
            scores[doc] = scores.get(doc, 0.0) + 1.0 / (k + rank)
            best[doc] = min(best.get(doc, rank), rank)
    return sorted(scores.items(), key=lambda kv: (-kv[1], best[kv[0]], kv[0]))


def minmax(scores: Sequence[float]) -> list[float]:
    if not scores:
        return []
    lo, hi = min(scores), max(scores)
    if hi == lo:
        return [1.0 for _ in scores]
    return [(s - lo) / (hi - lo) for s in scores]


def weighted_fuse(results: Mapping[str, tuple[Sequence[int], Sequence[float]]],
                  weights: Mapping[str, float]) -> list[tuple[int, float]]:
    """Convex combination of min-max normalised scores; a document missing from a list scores 0 there."""
    fused: dict[int, float] = {}
    for name, (ids, scores) in results.items():
        w = weights.get(name, 0.0)
        for doc, s in zip(ids, minmax(list(scores))):
            fused[doc] = fused.get(doc, 0.0) + w * s
    return sorted(fused.items(), key=lambda kv: (-kv[1], kv[0]))
