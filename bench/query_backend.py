"""Does embedding queries with another int8 export of the same model cost retrieval quality, and what does it save?

An index embedded by one export (say OpenVINO static int8, `auto`'s pick by batch throughput on VNNI) is
searched with query vectors from each export of the same base model found in the workspace (and torch fp32):
nDCG@10 dense and hybrid on a BEIR split, and single-query embedding p50/p95, the backends interleaved query by
query. The split must be one the choice may use (SciFact `train`), never `test`.

    HF_HUB_OFFLINE=1 /tmp/ragkiln-cpu timing .venv/bin/python bench/query_backend.py \
        --workspace bench/work/emb28-zen4/scifact --beir ../shared/datasets/scifact --split train \
        --out bench/results/query-backend.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.embed_backends import interleaved_latency  # noqa: E402
from bench.machine import machine  # noqa: E402
from common.settings import load_settings  # noqa: E402
from indexer import backends  # noqa: E402
from indexer.beir_eval import doc_ranking, load_qrels, load_queries  # noqa: E402
from indexer.embedder import load_embedder  # noqa: E402
from indexer.metrics import evaluate_run  # noqa: E402
from indexer.workspace import Workspace  # noqa: E402


def latency(embs: dict, texts: list[str], passes: int) -> dict:
    for emb in embs.values():  # warm-up: the first calls allocate
        for q in texts[:16]:
            emb.encode([q], is_query=True)
    return interleaved_latency(embs, texts, passes)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workspace", type=Path, required=True)
    ap.add_argument("--beir", type=Path, required=True)
    ap.add_argument("--split", default="train")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--latency-queries", type=int, default=200)
    ap.add_argument("--passes", type=int, default=3)
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args()
    if a.split == "test":
        sys.exit("query_backend: choose on a split other than test")
    s = load_settings({"home": a.workspace, "indexer": {"threads": a.threads}})
    ws = Workspace.open(s)
    searcher = ws.searcher()
    index_emb = searcher.embedder
    base = load_embedder(index_emb.base_path, a.threads)
    embs = {"torch": base}
    for b in backends.AUTO_ORDER:
        if b == getattr(index_emb, "backend", "torch"):
            embs[b] = index_emb
        elif backends.available(b) and (emb := backends.cached_export(ws.models, base, b, a.threads)) is not None:
            embs[b] = emb
    queries, qrels = load_queries(a.beir), load_qrels(a.beir, a.split)
    qids = [q for q in qrels if q in queries]
    texts = [queries[q] for q in qids]
    quality = {}
    for b, emb in embs.items():
        vecs = emb.encode(texts, is_query=True)
        quality[b] = {}
        for mode in ("dense", "hybrid"):
            run = {q: doc_ranking(searcher, queries[q], mode, vecs[i:i + 1]) for i, q in enumerate(qids)}
            m = evaluate_run(run, {q: qrels[q] for q in qids})
            quality[b][mode] = round(m["ndcg@10"], 4)
        print(b, quality[b], flush=True)
    lat = latency(embs, list(queries.values())[:a.latency_queries], a.passes)
    print(lat, flush=True)
    out = {"command": " ".join(sys.argv), "machine": machine(), "workspace": str(a.workspace),
           "index_embedder": {"id": index_emb.id, "backend": getattr(index_emb, "backend", "torch")},
           "split": a.split, "queries": len(qids), "query_ids": {b: e.id for b, e in embs.items()},
           "ndcg@10": quality, "single_query_latency": lat, "threads": a.threads}
    a.out.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
