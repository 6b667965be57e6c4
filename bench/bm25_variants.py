"""How BM25 should see a chunk: alone, with its neighbours, or by its whole document (SciFact).

    HF_HUB_OFFLINE=1 .venv/bin/python bench/bm25_variants.py [--workspace bench/work/scifact]

Reads the chunks of an ingested SciFact workspace, builds one BM25 index per variant and scores
documents by their best chunk, on the train split (where `indexer.bm25_context_chunks` was chosen)
and the test split. Writes bench/results/bm25-variants.json.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from indexer.beir_eval import load_qrels, load_queries  # noqa: E402
from indexer.bm25 import BM25Index  # noqa: E402
from indexer.chunking import bm25_texts, index_text  # noqa: E402
from indexer.docstore import DocStore  # noqa: E402
from indexer.metrics import evaluate_run  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--workspace", type=Path, default=ROOT / "bench/work/scifact")
    ap.add_argument("--beir", type=Path, default=ROOT.parent / "shared/datasets/scifact")
    ap.add_argument("--out", type=Path, default=ROOT / "bench/results/bm25-variants.json")
    a = ap.parse_args()
    store = DocStore(a.workspace / "docstore.sqlite")
    chunks = list(store.iter_chunks())
    docs = {d.doc_id: d for d in store.iter_documents()}
    dids = sorted(docs)
    dpos = {d: i for i, d in enumerate(dids)}
    c2d = np.array([dpos[c.doc_id] for c in chunks])
    cids = np.array([c.id for c in chunks])
    build = lambda texts, ids: BM25Index.build(texts, ids, 1.5, 0.75, "english")  # noqa: E731
    chunk_idx = build([index_text(c.title, c.text) for c in chunks], cids)
    win = bm25_texts(chunks, 1)
    win_idx = build([win[c.id] for c in chunks], cids)
    doc_idx = build([index_text(docs[d].title, docs[d].text) for d in dids], np.arange(len(dids)))
    queries = load_queries(a.beir)
    result: dict[str, dict[str, dict[str, float]]] = {}
    for split in ("train", "test"):
        qrels = load_qrels(a.beir, split)
        qids = [q for q in qrels if q in queries]
        runs: dict[str, dict[str, list[str]]] = {k: {} for k in
                                                  ("chunk", "chunk+neighbours", "document", "chunk+0.5doc", "chunk+1doc")}
        for q in qids:
            best = {}
            for name, idx in (("chunk", chunk_idx), ("chunk+neighbours", win_idx)):
                m = np.zeros(len(dids))
                np.maximum.at(m, c2d, idx.scores(queries[q]))
                best[name] = m
            sd = doc_idx.scores(queries[q])

            def rank(v: np.ndarray) -> list[str]:
                return [dids[i] for i in np.argsort(-v, kind="stable")[:100] if v[i] > 0]

            runs["chunk"][q], runs["chunk+neighbours"][q] = rank(best["chunk"]), rank(best["chunk+neighbours"])
            runs["document"][q] = rank(sd)
            runs["chunk+0.5doc"][q], runs["chunk+1doc"][q] = rank(best["chunk"] + 0.5 * sd), rank(best["chunk"] + sd)
        result[split] = {k: {m: round(v, 4) for m, v in evaluate_run(r, {q: qrels[q] for q in qids}).items()
                             if m in ("ndcg@10", "recall@100")} for k, r in runs.items()}
        print(split, {k: v["ndcg@10"] for k, v in result[split].items()}, file=sys.stderr)
    a.out.write_text(json.dumps({"command": "HF_HUB_OFFLINE=1 .venv/bin/python bench/bm25_variants.py",
                                 "chunks": len(chunks), "documents": len(dids), **result}, indent=2) + "\n")


if __name__ == "__main__":
    main()
