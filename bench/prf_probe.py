"""Pseudo-relevance feedback on the dense query (Rocchio: q + beta * mean of the top-k chunk vectors), fed by the
dense top-k ("dprf") or the fused top-k ("fprf"), re-searched and re-fused the served way. Dev labels only
(fusion_study's cases and workspaces, after its `collect`); an exploration, not adopted.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/prf_probe.py
"""
import json, platform, sys, time
from pathlib import Path
import numpy as np
ROOT = Path(__file__).resolve().parents[1]; sys.path.insert(0, str(ROOT)); sys.path.insert(0, str(ROOT / "bench"))
import fusion_study as fs
from common.settings import load_settings
from indexer import dense
from indexer.metrics import evaluate_run

CASES = {"scifact-base": ("scifact-torch", {"embed_backend": "torch"}, "scifact"),
         "scifact-adapted": ("scifact", {}, "scifact"),
         "squad-adapted": ("squad", {"embed_backend": "torch"}, "squad"),
         "mini-adapted": ("scifact-mini", {"embed_backend": "torch"}, "mini"),
         "demo-base": ("demo", {}, "demo")}
N = 100
fuse = fs.convex(fs._minmax, 0.5)
out = {}
for name, (home, idx, lab) in CASES.items():
    if len(sys.argv) > 1 and name not in sys.argv[1:]: continue
    s = load_settings({"home": fs.WORK / home, "ner": {"enabled": False}, "indexer": idx})
    srch = fs._workspace(s).searcher()
    queries, qrels = fs.labels(lab, "dev", s)
    qids = [q for q in qrels if q in queries]
    t0 = time.time()
    Q = srch.encode_queries([queries[q] for q in qids]).astype(np.float32)
    index = srch.gen.dense
    cache = {}
    def vec(c):
        if c not in cache: cache[c] = index.reconstruct(int(c))
        return cache[c]
    def dsearch(qv):
        sc, ids = dense.search(index, qv.reshape(1, -1).astype(np.float32), N, None)
        return [[int(i), float(x)] for i, x in zip(ids[0], sc[0]) if i >= 0]
    variants = {"base": {}}
    for k in (3, 5, 10):
        for b in (0.3, 0.6, 1.0):
            variants[f"dprf-k{k}-b{b}"] = {}; variants[f"fprf-k{k}-b{b}"] = {}
    lists = {v: {} for v in variants}
    for i, q in enumerate(qids):
        d0 = dsearch(Q[i]); bm = [[int(c), float(x)] for c, x in zip(*srch.gen.bm25.search(queries[q], N, None)[::-1])]
        f0 = fuse(d0, bm)
        lists["base"][q] = {"dense": d0, "bm25": bm}
        for k in (3, 5, 10):
            for src, top in (("dprf", [c for c, _ in d0[:k]]), ("fprf", f0[:k])):
                m = np.mean([vec(c) for c in top], axis=0)
                for b in (0.3, 0.6, 1.0):
                    qv = Q[i] + b * m; qv = qv / np.linalg.norm(qv)
                    lists[f"{src}-k{k}-b{b}"][q] = {"dense": dsearch(qv), "bm25": bm}
    cids = {c for L in lists.values() for per in L.values() for r in per.values() for c, _ in r}
    chunks = srch.store.get_chunks(sorted(cids)); doc_of = {str(c): chunks[c].doc_id for c in cids if c in chunks}
    row = {}
    for v, L in lists.items():
        dn = evaluate_run(fs.doc_run(L, doc_of, lambda d, b: [c for c, _ in d], N), qrels)["ndcg@10"]
        hy = evaluate_run(fs.doc_run(L, doc_of, fuse, N), qrels)["ndcg@10"]
        row[v] = (round(dn, 4), round(hy, 4))
    out[name] = row
    print(name, len(qids), f"{time.time()-t0:.0f}s", json.dumps(row), flush=True)
(ROOT / "bench" / "results" / "prf-probe-dev.json").write_text(json.dumps(
    {"command": "HF_HUB_OFFLINE=1 .venv/bin/python bench/prf_probe.py " + " ".join(sys.argv[1:]),
     "figures": "per case and variant: [dense, hybrid] document nDCG@10 on dev labels",
     "machine": fs.machine(), "cases": out}, indent=1) + "\n")
