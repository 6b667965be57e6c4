"""FAISS dense index over L2-normalised vectors (inner product = cosine), with int64 chunk ids.

The index type is a FAISS factory string wrapped in IDMap2 so chunks can be removed by id; types whose
removal FAISS does not support (HNSW) are rebuilt from the cached vectors instead. `build_index_paged` and
`update_index_paged` take the vectors a page at a time, so a build holds the index and one page, never a second
copy of every vector.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

import faiss
import numpy as np

from common.errors import InvalidInput

INDEX_FILE = "dense.faiss"


def new_index(dim: int, factory: str) -> faiss.Index:
    try:
        base = faiss.index_factory(dim, factory, faiss.METRIC_INNER_PRODUCT)
    except RuntimeError as e:
        raise InvalidInput(f"invalid FAISS factory string {factory!r}: {str(e).splitlines()[-1]}") from e
    return faiss.IndexIDMap2(base)


Pages = Iterable[tuple[np.ndarray, np.ndarray]]  # (chunk ids, their vectors) a page at a time
MAX_POINTS_PER_CENTROID = 256  # FAISS's k-means subsamples to this many training points per centroid anyway


def _training_need(index: faiss.Index, factory: str, n: int) -> tuple[int, int]:
    """(fewest, most) vectors the untrained `index` trains on: at least one per IVF list (256 for others), and
    no more than FAISS's k-means would keep (256 per centroid)."""
    inner = faiss.downcast_index(index.index)
    need = getattr(inner, "nlist", 0) or 256
    if n < need:
        raise InvalidInput(f"FAISS index {factory!r} needs at least {need} vectors to train, the corpus has {n}; use Flat")
    return need, need * MAX_POINTS_PER_CENTROID


def build_index(dim: int, factory: str, ids: np.ndarray, vecs: np.ndarray) -> faiss.Index:
    index = new_index(dim, factory)
    if len(ids) and not index.is_trained:
        _training_need(index, factory, len(ids))
        index.train(vecs)
    if len(ids):
        index.add_with_ids(np.ascontiguousarray(vecs, dtype=np.float32), ids.astype(np.int64))
    return index


def build_index_paged(dim: int, factory: str, n: int, pages: Callable[[], Pages]) -> faiss.Index:
    """`build_index` over `n` vectors read a page at a time: `pages()` yields (ids, vectors) in order and is
    called once to add them, and once more before that for an index that must be trained. The training set is
    every vector while there are at most 256 per IVF list (then the index equals `build_index`'s), else that
    many spread evenly over the corpus (FAISS would subsample at random)."""
    index = new_index(dim, factory)
    if n and not index.is_trained:
        _, most = _training_need(index, factory, n)
        index.train(_training_sample(pages(), n, min(n, most), dim))
    _reserve(index, n)
    added = 0
    for ids, vecs in pages():
        if len(ids):
            index.add_with_ids(np.ascontiguousarray(vecs, dtype=np.float32), np.asarray(ids, dtype=np.int64))
            added += len(ids)
    if added != n:
        raise ValueError(f"FAISS build: {added} vectors paged in, {n} expected")
    return index


def _reserve(index: faiss.Index, n: int) -> None:
    """Room for `n` vectors in a fresh index's code and id arrays, so page-by-page adds fill them in place: a
    std::vector grown add by add doubles its capacity, holding up to three times the vectors while it copies.
    (A vector resized to n and back to 0 keeps its capacity.) Indexes without flat codes (IVF lists) grow as
    FAISS grows them."""
    inner = faiss.downcast_index(index.index)
    if isinstance(inner, faiss.IndexHNSW):
        inner = faiss.downcast_index(inner.storage)
    index.id_map.resize(n)
    index.id_map.resize(0)
    if isinstance(inner, faiss.IndexFlatCodes) and inner.ntotal == 0 and inner.codes.is_owned:
        inner.codes.resize(n * inner.code_size)
        inner.codes.resize(0)


def _training_sample(pages: Pages, n: int, m: int, dim: int) -> np.ndarray:
    """Rows floor(i * n / m) for i < m (all rows when m == n), gathered from the pages."""
    want = np.unique(np.floor(np.arange(m) * (n / m)).astype(np.int64))
    out = np.empty((len(want), dim), dtype=np.float32)
    seen = got = 0
    for _ids, vecs in pages:
        lo, hi = np.searchsorted(want, [seen, seen + len(vecs)])
        out[got:got + hi - lo] = vecs[want[lo:hi] - seen]
        got += hi - lo
        seen += len(vecs)
    if got != len(want):
        raise ValueError(f"FAISS training sample: {got} of {len(want)} rows paged in")
    return out


def update_index_paged(old: faiss.Index, remove: np.ndarray, pages: Pages) -> faiss.Index:
    """`update_index` with the added vectors given a page at a time."""
    index = faiss.clone_index(old)
    if len(remove):
        index.remove_ids(faiss.IDSelectorBatch(remove.astype(np.int64)))
    for ids, vecs in pages:
        if len(ids):
            index.add_with_ids(np.ascontiguousarray(vecs, dtype=np.float32), np.asarray(ids, dtype=np.int64))
    return index


def supports_removal(factory: str) -> bool:
    return "HNSW" not in factory.upper()


def update_index(old: faiss.Index, factory: str, remove: np.ndarray, add_ids: np.ndarray,
                 add_vecs: np.ndarray) -> faiss.Index:
    """A copy of `old` with `remove` ids dropped and new vectors added (the old object stays usable)."""
    index = faiss.clone_index(old)
    if len(remove):
        index.remove_ids(faiss.IDSelectorBatch(remove.astype(np.int64)))
    if len(add_ids):
        index.add_with_ids(np.ascontiguousarray(add_vecs, dtype=np.float32), add_ids.astype(np.int64))
    return index


def configure(index: faiss.Index, nprobe: int, ef_search: int) -> None:
    inner = faiss.downcast_index(index.index) if isinstance(index, faiss.IndexIDMap2) else index
    if hasattr(inner, "nprobe"):
        inner.nprobe = nprobe
    if hasattr(inner, "hnsw"):
        inner.hnsw.efSearch = ef_search


def search(index: faiss.Index, queries: np.ndarray, k: int, allowed: np.ndarray | None = None, per_id: int = 1
           ) -> tuple[np.ndarray, np.ndarray]:
    """Top-k (scores, ids) per query; `allowed` restricts the search to those ids inside FAISS (`per_id`: the
    most vectors one id has, as a chunk's sentences have)."""
    k = max(1, min(k, index.ntotal))
    if index.ntotal == 0:
        n = len(queries)
        return np.zeros((n, 0), np.float32), np.zeros((n, 0), np.int64)
    params = None
    if allowed is not None:
        if len(allowed) == 0:
            n = len(queries)
            return np.zeros((n, 0), np.float32), np.zeros((n, 0), np.int64)
        params = faiss.SearchParameters(sel=faiss.IDSelectorBatch(allowed.astype(np.int64)))
        k = min(k, len(allowed) * per_id)
    scores, ids = index.search(np.ascontiguousarray(queries, dtype=np.float32), k, params=params)
    return scores, ids


SENTENCE_FANOUT = 3  # sentences fetched per chunk wanted: a chunk's sentences crowd each other in the top list


def search_with_sentences(index: faiss.Index, sentences: faiss.Index, query: np.ndarray, n: int, share: float,
                          most: int, allowed: np.ndarray | None = None
                          ) -> tuple[list[int], list[float], dict[int, float]]:
    """The best `n` chunks for one (1, dim) query by `(1 - share) * cos(query, chunk) + share * max cos(query,
    sentence)` over the chunk's sentences (`sentences` holds them under their chunk's id; a chunk without any is
    scored by its own cosine). Candidates are the union of both indexes' top lists; each side's score a candidate
    lacks is searched among those ids alone (`most`: the most sentences of one chunk, so every one is reached).
    Returns the chunk ids and their combined scores, best first, and every candidate's own cosine."""
    cs, ci = search(index, query, n, allowed)
    chunk = {int(i): float(x) for i, x in zip(ci[0], cs[0]) if i >= 0}
    ss, si = search(sentences, query, n * SENTENCE_FANOUT, allowed)
    best: dict[int, float] = {}
    for i, x in zip(si[0], ss[0]):  # best first: a chunk's first sentence is its best
        if i >= 0:
            best.setdefault(int(i), float(x))
    lack = np.fromiter((i for i in best if i not in chunk), np.int64)
    if len(lack):
        xs, xi = search(index, query, len(lack), lack)
        chunk.update((int(i), float(x)) for i, x in zip(xi[0], xs[0]) if i >= 0)
    lack = np.fromiter((i for i in chunk if i not in best), np.int64)
    if len(lack) and most:
        xs, xi = search(sentences, query, len(lack) * most, lack, per_id=most)
        for i, x in zip(xi[0], xs[0]):
            if i >= 0:
                best.setdefault(int(i), float(x))
    combined = {i: (1 - share) * c + share * best.get(i, c) for i, c in chunk.items()}
    ranked = sorted(combined, key=lambda i: (-combined[i], i))[:n]
    return ranked, [combined[i] for i in ranked], chunk


def save(index: faiss.Index, directory: Path, name: str = INDEX_FILE) -> None:
    faiss.write_index(index, str(directory / name))


def load(directory: Path, name: str = INDEX_FILE) -> faiss.Index:
    return faiss.read_index(str(directory / name))
