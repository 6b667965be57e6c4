"""Static word vectors built from the training text itself (no download): PPMI + truncated SVD.

A from-scratch tagger sees each word form only as often as the training file holds it; vectors
from co-occurrence counts give rare names the company of the words they appear with. PPMI-SVD is
the count-based equivalent of word2vec's SGNS (Levy & Goldberg, 2014, "Neural word embedding as
implicit matrix factorization"), seconds on a CoNLL-sized corpus with numpy/scipy alone.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from common.errors import InvalidInput


def ppmi_svd_vectors(
    sentences: Iterable[Sequence[str]], dim: int = 100, window: int = 2, min_count: int = 2,
    lowercase: bool = True, cds: float = 0.75,
) -> tuple[list[str], np.ndarray]:
    """(words, matrix [n_words, dim]) from symmetric-window co-occurrence counts; `dim` is capped
    at the vocabulary size minus one for tiny corpora.

    Shifted-free PPMI with context-distribution smoothing `cds` (Levy et al., 2015), then
    U * sqrt(S) of a rank-`dim` SVD; rows are L2-normalised. Words seen fewer than `min_count`
    times get no vector (spaCy then uses zeros, as for any unknown word).
    """
    from scipy import sparse
    from scipy.sparse.linalg import svds

    sents = [[w.lower() if lowercase else w for w in s] for s in sentences]
    counts = Counter(w for s in sents for w in s)
    words = sorted((w for w, c in counts.items() if c >= min_count), key=lambda w: (-counts[w], w))
    if len(words) < 3:
        raise InvalidInput(f"only {len(words)} words occur {min_count}+ times; too few for word vectors")
    dim = min(dim, len(words) - 1)  # a small corpus gets as many dimensions as it can support
    index = {w: i for i, w in enumerate(words)}
    rows: list[int] = []
    cols: list[int] = []
    for s in sents:
        ids = [index.get(w, -1) for w in s]
        for i, a in enumerate(ids):
            if a < 0:
                continue
            for j in range(max(0, i - window), min(len(ids), i + window + 1)):
                if j != i and ids[j] >= 0:
                    rows.append(a)
                    cols.append(ids[j])
    n = len(words)
    co = sparse.coo_matrix((np.ones(len(rows), dtype=np.float64), (rows, cols)), shape=(n, n)).tocsr()
    co.sum_duplicates()
    total = co.sum()
    row_sum = np.asarray(co.sum(axis=1)).ravel()
    ctx = np.asarray(co.sum(axis=0)).ravel() ** cds
    ctx /= ctx.sum()
    co = co.tocoo()
    pmi = np.log(co.data / total) - np.log(row_sum[co.row] / total) - np.log(ctx[co.col])
    keep = pmi > 0
    ppmi = sparse.csr_matrix((pmi[keep], (co.row[keep], co.col[keep])), shape=(n, n))
    u, s, _vt = svds(ppmi, k=dim, random_state=0)
    vecs = (u * np.sqrt(s)).astype(np.float32)
    norms = np.linalg.norm(vecs, axis=1, keepdims=True)
    vecs /= np.maximum(norms, 1e-8)
    return words, vecs


def set_vectors(nlp: Any, words: Sequence[str], matrix: np.ndarray) -> None:
    """Install lowercase-keyed vectors in the pipeline's vocab (saved with the model by `to_disk`).

    The table is keyed on the LOWER attribute, so "Paris", "PARIS" and "paris" share one row.
    """
    from spacy.vectors import Vectors

    keys = [nlp.vocab.strings.add(w) for w in words]
    nlp.vocab.vectors = Vectors(strings=nlp.vocab.strings, data=matrix, keys=keys, name="ragkiln_corpus_ppmi",
                                attr="LOWER")
