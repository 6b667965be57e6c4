"""Contextual dense chunk vectors, on dev labels: does a chunk's vector mixed with its document's neighbours'
(the dense counterpart of BM25 reading two neighbours each side) or with its document's mean vector rank
better? An exploration over doc_fusion_study's dev lists (its `collect` first); not adopted.

Each candidate re-ranks every chunk by exact inner product with its re-normalised mixed vector
(v + lam * sum of the neighbours within `reach` chunks of the same document; or v/|v| + mix * document mean),
then fuses with the collected BM25 list as served (min-max, dense 0.5, 100 chunks each) and ranks documents by
their first chunk. Rule, the project's usual one: a candidate would be adopted only if its mean hybrid
nDCG@10 over the four dev cases beats the served vectors' by >= 0.003 with no case losing more than 0.01. (It was
written here after a first pass of the same candidates in a scratch script had shown each of them below the
served vectors, so it decided nothing.)

    HF_HUB_OFFLINE=1 .venv/bin/python bench/ctx_dense_probe.py   # -> bench/results/ctx-dense-probe-dev.json
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import faiss
import numpy as np

import chunk_study as cs  # sets HF_HUB_OFFLINE and the import path
import fusion_study as fs

from common.settings import load_settings
from indexer.fusion import minmax
from indexer.metrics import evaluate_run
from machine import machine  # bench/machine.py

ROOT = fs.ROOT
LISTS = ROOT / "bench" / "work" / "doc-fusion"
OUT = ROOT / "bench" / "results" / "ctx-dense-probe-dev.json"
FUSE = fs.convex(minmax, 0.5)
CANDIDATES: dict[str, dict[str, float]] = {
    "served": {}, "neighbours-1x0.25": {"lam": 0.25, "reach": 1}, "neighbours-1x0.5": {"lam": 0.5, "reach": 1},
    "neighbours-2x0.25": {"lam": 0.25, "reach": 2}, "neighbours-2x0.5": {"lam": 0.5, "reach": 2},
    "doc-mean-0.3": {"mix": 0.3}, "doc-mean-0.6": {"mix": 0.6}}


def neighbours(doc: np.ndarray, ord_: np.ndarray, k: int) -> np.ndarray:
    """Row index of each chunk's k-th neighbour in its document (k may be negative), -1 where there is none."""
    order = np.lexsort((ord_, doc))
    j = np.arange(len(doc)) + k
    jj = np.clip(j, 0, len(doc) - 1)
    same = (j >= 0) & (j < len(doc)) & (doc[order][jj] == doc[order])
    out = np.full(len(doc), -1)
    out[order[same]] = order[jj[same]]
    return out


def mixed(vecs: np.ndarray, doc: np.ndarray, ord_: np.ndarray, lam: float = 0.0, reach: int = 0,
          mix: float = 0.0) -> np.ndarray:
    """The candidate's unit vectors (pure)."""
    out = vecs.copy()
    for k in [k for r in range(1, int(reach) + 1) for k in (-r, r)]:
        nb = neighbours(doc, ord_, k)
        out[nb >= 0] += lam * vecs[nb[nb >= 0]]
    if mix:
        _, inv = np.unique(doc, return_inverse=True)
        mean = np.zeros((inv.max() + 1, vecs.shape[1]), np.float32)
        np.add.at(mean, inv, vecs)
        out = out / np.linalg.norm(out, axis=1, keepdims=True) + mix * mean[inv] / np.linalg.norm(mean, axis=1,
                                                                                                  keepdims=True)[inv]
    return out / np.linalg.norm(out, axis=1, keepdims=True)


@dataclass(frozen=True)
class Case:
    """One collected case (doc_fusion_study's lists) as the served searcher sees it."""

    lists: dict[str, Any]  # the lists file: case, home, qrels, embedder, lists (BM25's among them)
    searcher: Any
    qids: list[str]
    qv: np.ndarray  # (queries, dim) query vectors
    ids: np.ndarray  # (chunks,) chunk ids in the dense index's order
    vecs: np.ndarray  # (chunks, dim) their vectors
    chunks: dict[int, Any]  # chunk id -> Chunk


def load_case(path: Path, split: str = "dev") -> Case:
    d = json.loads(path.read_text())
    s = load_settings({"home": ROOT / d["home"], "ner": {"enabled": False}})
    searcher = fs._workspace(s).searcher()
    queries, _ = cs.corpora(split)[d["case"]][1](s)
    qids = list(d["lists"])
    qv = searcher.encode_queries([queries[q] for q in qids]).astype(np.float32)
    index = searcher.gen.dense
    ids = faiss.vector_to_array(index.id_map).astype(np.int64)
    vecs = index.index.reconstruct_n(0, index.ntotal).astype(np.float32)
    return Case(d, searcher, qids, qv, ids, vecs, searcher.store.get_chunks(ids.tolist()))


def score(case: Case, scores: np.ndarray, doc_of: dict[str, str]) -> dict[str, float]:
    """Dense and hybrid nDCG@10 when `scores` (queries, chunks) ranks the dense side: its best chunks fused with
    the collected BM25 list as served, documents ranked by their first chunk."""
    top = np.argsort(-scores, axis=1)[:, :fs.SERVED]
    lists = {q: {"dense": [[int(case.ids[j]), float(scores[i, j])] for j in top[i]],
                 "bm25": case.lists["lists"][q]["bm25"]} for i, q in enumerate(case.qids)}
    dense_run = fs.doc_run(lists, doc_of, lambda dn, bm: [c for c, _ in dn], fs.SERVED)
    qrels = case.lists["qrels"]
    return {"dense": round(evaluate_run(dense_run, qrels)["ndcg@10"], 4),
            "hybrid": round(evaluate_run(fs.doc_run(lists, doc_of, FUSE, fs.SERVED), qrels)["ndcg@10"], 4)}


def main() -> None:
    rows: dict[str, dict[str, Any]] = {}
    for f in sorted(LISTS.glob("lists-*-dev.json")):
        t0 = time.perf_counter()
        case = load_case(f)
        d, ids, chunks = case.lists, case.ids, case.chunks
        doc = np.array([chunks[int(c)].doc_id for c in ids])
        ord_ = np.array([chunks[int(c)].ord for c in ids])
        doc_of = {str(int(c)): doc[i] for i, c in enumerate(ids)}
        row: dict[str, Any] = {"queries": len(case.qids), "embedder": d["embedder"]}
        for label, opts in CANDIDATES.items():
            row[label] = score(case, case.qv @ mixed(case.vecs, doc, ord_, **opts).T, doc_of)
        rows[d["case"]] = row
        print(d["case"], {k: row[k] for k in CANDIDATES}, f"{time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
    mean = {k: {m: round(sum(r[k][m] for r in rows.values()) / len(rows), 4) for m in ("dense", "hybrid")}
            for k in CANDIDATES}
    ok = [k for k in CANDIDATES if k != "served" and mean[k]["hybrid"] - mean["served"]["hybrid"] >= 0.003
          and all(r[k]["hybrid"] - r["served"]["hybrid"] >= -0.01 for r in rows.values())]
    result = {"command": "HF_HUB_OFFLINE=1 .venv/bin/python bench/ctx_dense_probe.py", "rule": __doc__.split("Rule, ")[1]
              .split("\n\n")[0], "machine": machine(), "cases": rows, "mean": mean,
              "winner": max(ok, key=lambda k: mean[k]["hybrid"]) if ok else "served"}
    OUT.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps({"mean": mean, "winner": result["winner"]}, indent=1))


if __name__ == "__main__":
    main()
