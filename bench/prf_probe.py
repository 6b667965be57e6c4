"""Pseudo-relevance feedback on the dense query (Rocchio: q + beta * mean of the top-k chunk vectors), fed by the
dense top-k ("dprf") or the fused top-k ("fprf"), re-searched and re-fused the served way. Dev labels only
(fusion_study's cases and workspaces, after its `collect`); an exploration, not adopted.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/prf_probe.py [case ...]
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

import fusion_study as fs  # sets HF_HUB_OFFLINE and the import path

from common.settings import load_settings
from indexer import dense
from indexer.fusion import minmax
from indexer.metrics import evaluate_run

ROOT = fs.ROOT
CASES = {"scifact-base": ("scifact-torch", {"embed_backend": "torch"}, "scifact"),
         "scifact-adapted": ("scifact", {}, "scifact"),
         "squad-adapted": ("squad", {"embed_backend": "torch"}, "squad"),
         "mini-adapted": ("scifact-mini", {"embed_backend": "torch"}, "mini"),
         "demo-base": ("demo", {}, "demo")}
TOP_K = (3, 5, 10)
BETAS = (0.3, 0.6, 1.0)
N = fs.SERVED
FUSE = fs.convex(minmax, 0.5)


def probe_case(home: str, indexer: dict[str, Any], labels: str) -> tuple[dict[str, tuple[float, float]], int]:
    """Per variant, (dense, hybrid) document nDCG@10 on the case's dev labels; and the number of queries."""
    s = load_settings({"home": fs.WORK / home, "ner": {"enabled": False}, "indexer": indexer})
    srch = fs._workspace(s).searcher()
    queries, qrels = fs.labels(labels, "dev", s)
    qids = [q for q in qrels if q in queries]
    qvecs = srch.encode_queries([queries[q] for q in qids]).astype(np.float32)  # (queries, dim)
    index = srch.gen.dense
    vectors: dict[int, np.ndarray] = {}

    def vec(c: int) -> np.ndarray:
        if c not in vectors:
            vectors[c] = index.reconstruct(int(c))
        return vectors[c]

    def dense_list(qv: np.ndarray) -> list[list[float]]:
        sc, ids = dense.search(index, qv.reshape(1, -1).astype(np.float32), N, None)
        return [[int(i), float(x)] for i, x in zip(ids[0], sc[0]) if i >= 0]

    lists: dict[str, dict[str, Any]] = {}
    for i, q in enumerate(qids):
        d0 = dense_list(qvecs[i])
        sc_b, ids_b = srch.gen.bm25.search(queries[q], N)
        bm = [[int(c), float(x)] for c, x in zip(ids_b, sc_b)]
        lists.setdefault("base", {})[q] = {"dense": d0, "bm25": bm}
        fused = FUSE(d0, bm)
        for k in TOP_K:
            for src, top in (("dprf", [int(c) for c, _ in d0[:k]]), ("fprf", fused[:k])):
                m = np.mean([vec(c) for c in top], axis=0)
                for b in BETAS:
                    qv = qvecs[i] + b * m
                    lists.setdefault(f"{src}-k{k}-b{b}", {})[q] = {"dense": dense_list(qv / np.linalg.norm(qv)),
                                                                   "bm25": bm}
    cids = {c for per_q in lists.values() for per in per_q.values() for r in per.values() for c, _ in r}
    chunks = srch.store.get_chunks(sorted(cids))
    doc_of = {str(c): chunks[c].doc_id for c in cids if c in chunks}
    row = {}
    for v, per_q in lists.items():
        dn = evaluate_run(fs.doc_run(per_q, doc_of, lambda d, b: [c for c, _ in d], N), qrels)["ndcg@10"]
        hy = evaluate_run(fs.doc_run(per_q, doc_of, FUSE, N), qrels)["ndcg@10"]
        row[v] = (round(dn, 4), round(hy, 4))
    return row, len(qids)


def main() -> None:
    only = sys.argv[1:]
    out = {}
    for name, (home, indexer, labels) in CASES.items():
        if only and name not in only:
            continue
        t0 = time.time()
        out[name], n = probe_case(home, indexer, labels)
        print(name, n, f"{time.time() - t0:.0f}s", json.dumps(out[name]), flush=True)
    (ROOT / "bench" / "results" / "prf-probe-dev.json").write_text(json.dumps(
        {"command": "HF_HUB_OFFLINE=1 .venv/bin/python bench/prf_probe.py " + " ".join(only),
         "figures": "per case and variant: [dense, hybrid] document nDCG@10 on dev labels",
         "machine": fs.machine(), "cases": out}, indent=1) + "\n")


if __name__ == "__main__":
    main()
