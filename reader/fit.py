"""Fitting a `LinearModel` as a conditional logit (McFadden 1974; a softmax ranker): each question
is one group of candidates, some of them right; the loss is minus the log of the probability mass the
softmax puts on the right ones, plus an L2 penalty, minimised with L-BFGS over a sparse design matrix.

`Groups` collects candidate rows as they are made (feature names interned, values in flat arrays, so
a million candidates fit in memory); features seen in fewer than `min_count` candidates are dropped.
"""

from __future__ import annotations

from array import array
from collections.abc import Mapping, Sequence

import numpy as np
from scipy import sparse
from scipy.optimize import minimize

from reader.model import LinearModel


class Groups:
    """Candidate rows grouped by question, with their right/wrong labels."""

    def __init__(self) -> None:
        self.names: dict[str, int] = {}
        self.cols, self.vals, self.indptr = array("i"), array("f"), array("q", [0])
        self.y = array("b")
        self.starts = array("q")
        self.tags: list[object] = []  # one per group, for the caller (e.g. which question, which setting)

    def add(self, rows: Sequence[Mapping[str, float]], right: Sequence[bool], tag: object = None) -> None:
        self.starts.append(len(self.indptr) - 1)
        self.tags.append(tag)
        for row, ok in zip(rows, right):
            for k, v in row.items():
                j = self.names.setdefault(k, len(self.names))
                self.cols.append(j)
                self.vals.append(v)
            self.indptr.append(len(self.cols))
            self.y.append(1 if ok else 0)

    def __len__(self) -> int:
        return len(self.starts)

    def matrix(self) -> sparse.csr_matrix:
        n = len(self.indptr) - 1
        return sparse.csr_matrix((np.frombuffer(self.vals, np.float32).astype(np.float64),
                                  np.frombuffer(self.cols, np.int32), np.frombuffer(self.indptr, np.int64)),
                                 shape=(n, len(self.names)))


def fit_groups(g: Groups, l2: float = 1e-3, min_count: int = 3, max_iter: int = 400,
               keep: Sequence[int] | None = None, row_mask: np.ndarray | None = None) -> LinearModel:
    """Weights maximising the mean log probability of each group's right candidates. `keep` selects
    groups by position (default all), `row_mask` candidates; groups without a right candidate are
    skipped."""
    x_all = g.matrix()
    y_all = np.frombuffer(g.y, np.int8).astype(np.float64)
    bounds = np.append(np.frombuffer(g.starts, np.int64), x_all.shape[0])
    chosen = range(len(g)) if keep is None else keep
    rows = []
    for i in chosen:
        r = np.arange(bounds[i], bounds[i + 1])
        if row_mask is not None:
            r = r[row_mask[r]]
        if y_all[r].any():
            rows.append(r)
    if not rows:
        raise ValueError("no group has a right candidate")
    sizes = np.array([len(r) for r in rows])
    idx = np.concatenate(rows)
    x, y = x_all[idx], y_all[idx]
    counts = np.bincount(x.indices, minlength=x.shape[1])
    cols = np.flatnonzero(counts >= min_count)
    x = x[:, cols].tocsr()
    xt = x.T.tocsr()
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    group_of = np.repeat(np.arange(len(rows)), sizes)
    n_groups = len(rows)

    def loss_grad(w: np.ndarray) -> tuple[float, np.ndarray]:
        s = x @ w
        top = np.maximum.reduceat(s, starts)
        e = np.exp(s - top[group_of])
        z = np.add.reduceat(e, starts)
        zp = np.add.reduceat(e * y, starts)
        loss = float(np.mean(np.log(z) - np.log(zp))) + 0.5 * l2 * float(w @ w)
        p = e / z[group_of]
        q = e * y / zp[group_of]
        grad = (xt @ (p - q)) / n_groups + l2 * w
        return loss, grad

    res = minimize(loss_grad, np.zeros(len(cols)), jac=True, method="L-BFGS-B", options={"maxiter": max_iter})
    names = sorted(g.names, key=g.names.__getitem__)
    return LinearModel({names[c]: float(v) for c, v in zip(cols, res.x) if abs(v) >= 1e-6})


def fit_conditional_logit(groups: Sequence[Sequence[Mapping[str, float]]], targets: Sequence[Sequence[bool]],
                          l2: float = 1e-3, min_count: int = 3, max_iter: int = 400) -> LinearModel:
    """`fit_groups` over lists of rows."""
    g = Groups()
    for rows, right in zip(groups, targets):
        g.add(rows, right)
    return fit_groups(g, l2, min_count, max_iter)
