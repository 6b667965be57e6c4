"""FAISS dense index over L2-normalised vectors (inner product = cosine), with int64 chunk ids.

The index type is a FAISS factory string wrapped in IDMap2 so chunks can be removed by id; types whose
removal FAISS does not support (HNSW) are rebuilt from the cached vectors instead.
"""

from __future__ import annotations

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


def build_index(dim: int, factory: str, ids: np.ndarray, vecs: np.ndarray) -> faiss.Index:
    index = new_index(dim, factory)
    if len(ids) and not index.is_trained:
        inner = faiss.downcast_index(index.index)
        need = getattr(inner, "nlist", 0) or 256
        if len(ids) < need:
            raise InvalidInput(
                f"FAISS index {factory!r} needs at least {need} vectors to train, the corpus has {len(ids)}; use Flat"
            )
        index.train(vecs)
    if len(ids):
        index.add_with_ids(np.ascontiguousarray(vecs, dtype=np.float32), ids.astype(np.int64))
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


def search(index: faiss.Index, queries: np.ndarray, k: int, allowed: np.ndarray | None = None
           ) -> tuple[np.ndarray, np.ndarray]:
    """Top-k (scores, ids) per query; `allowed` restricts the search to those ids inside FAISS."""
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
        k = min(k, len(allowed))
    scores, ids = index.search(np.ascontiguousarray(queries, dtype=np.float32), k, params=params)
    return scores, ids


def save(index: faiss.Index, directory: Path) -> None:
    faiss.write_index(index, str(directory / INDEX_FILE))


def load(directory: Path) -> faiss.Index:
    return faiss.read_index(str(directory / INDEX_FILE))
