"""Retrieval benchmark on BEIR SciFact: quality per mode, indexing throughput, query latency, memory, size.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/retrieval.py [--beir ../shared/datasets/scifact]
        [--workspace bench/work/scifact] [--throughput-docs 1000] [--out bench/results/retrieval.json]

The quality figures come from the same code path as `ragkiln eval retrieval`; the index over the full
corpus is built (or reused from the embedding cache) in --workspace. Throughput is measured on a fresh
workspace over the first --throughput-docs documents, so nothing is cached.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from common.settings import load_settings  # noqa: E402
from indexer import service  # noqa: E402
from indexer.beir_eval import evaluate_searcher, load_qrels, load_queries  # noqa: E402
from indexer.workspace import Workspace  # noqa: E402


def dir_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--beir", type=Path, default=ROOT.parent / "shared/datasets/scifact")
    ap.add_argument("--workspace", type=Path, default=ROOT / "bench/work/scifact")
    ap.add_argument("--split", default="test")
    ap.add_argument("--throughput-docs", type=int, default=1000)
    ap.add_argument("--latency-queries", type=int, default=300)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=ROOT / "bench/results/retrieval.json")
    args = ap.parse_args()
    if not (args.beir / "corpus.jsonl").exists():
        sys.exit(f"bench/retrieval.py: {args.beir} has no corpus.jsonl")
    import torch

    torch.set_num_threads(args.threads)
    settings = load_settings({"home": args.workspace, "indexer": {"threads": args.threads}})

    # 1. Indexing throughput on a fresh workspace (nothing cached).
    tmp = Path(tempfile.mkdtemp(prefix="ragkiln-bench-"))
    sub = tmp / "corpus.jsonl"
    with open(args.beir / "corpus.jsonl") as f, open(sub, "w") as g:
        for i, line in enumerate(f):
            if i >= args.throughput_docs:
                break
            g.write(line)
    t0 = time.perf_counter()
    rep = service.ingest(load_settings({"home": tmp / "ws", "indexer": {"threads": args.threads}}), [sub],
                         progress=False)
    dt = time.perf_counter() - t0
    throughput = {"documents": rep.documents_total, "chunks": rep.chunks_total, "seconds": round(dt, 2),
                  "chunks_per_s": round(rep.chunks_total / dt, 2), "docs_per_s": round(rep.documents_total / dt, 2)}
    shutil.rmtree(tmp, ignore_errors=True)
    print("throughput", throughput, file=sys.stderr)

    # 2. Full index (reused when unchanged) and quality per mode.
    t0 = time.perf_counter()
    full = service.ingest(settings, [args.beir / "corpus.jsonl"], progress=True)
    ingest_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    again = service.ingest(settings, [args.beir / "corpus.jsonl"], progress=False)
    reingest_s = time.perf_counter() - t0
    ws = Workspace.open(settings)
    searcher = ws.searcher()
    queries, qrels = load_queries(args.beir), load_qrels(args.beir, args.split)
    quality = evaluate_searcher(searcher, queries, qrels, ["bm25", "dense", "hybrid"])
    print("quality", quality, file=sys.stderr)

    # 3. Latency per mode: one query at a time, query embedding, retrieval, fusion and chunk texts included.
    qtexts = [queries[q] for q in list(qrels)[: args.latency_queries]]
    def timed(mode: str) -> dict[str, float]:
        for q in qtexts[:20]:
            searcher.search(q, k=10, mode=mode)  # warm-up
        times = []
        for q in qtexts:
            t = time.perf_counter()
            hits = searcher.search(q, k=10, mode=mode)
            _ = [h.chunk.text for h in hits]
            times.append((time.perf_counter() - t) * 1000)
        a = np.array(times)
        return {"p50_ms": round(float(np.percentile(a, 50)), 2), "p99_ms": round(float(np.percentile(a, 99)), 2),
                "mean_ms": round(float(a.mean()), 2), "queries": len(a)}

    latency = {mode: timed(mode) for mode in ("bm25", "dense", "hybrid")}
    print("latency", latency, file=sys.stderr)
    # The same path with fp32 query vectors, as the baseline for the query precision in use.
    served_precision = searcher.query_precision
    fp32 = None
    if served_precision != "fp32":
        searcher.query_precision = "fp32"
        fp32 = {"latency_hybrid": timed("hybrid"),
                "quality": evaluate_searcher(searcher, queries, qrels, ["dense", "hybrid"])}
        searcher.query_precision = served_precision
        print("fp32 queries", fp32, file=sys.stderr)

    result = {
        "dataset": str(args.beir.name), "split": args.split,
        "hardware": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch threads {args.threads}",
        "embedder": searcher.embedder.id, "faiss_factory": settings.indexer.faiss_factory,
        "chunk_tokens": settings.indexer.chunk_tokens, "chunk_overlap": settings.indexer.chunk_overlap,
        "quality": quality, "indexing": throughput,
        "full_ingest_s": round(ingest_s, 2), "full_ingest_chunks_embedded": full.chunks_embedded,
        "reingest_unchanged_s": round(reingest_s, 2), "reingest_chunks_embedded": again.chunks_embedded,
        "query_precision": served_precision, "latency": latency, "fp32_queries": fp32,
        "index": {"documents": full.documents_total, "chunks": full.chunks_total,
                  "index_dir_bytes": dir_size(Path(searcher.gen.path)),
                  "docstore_bytes": (ws.home / "docstore.sqlite").stat().st_size},
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "command": "HF_HUB_OFFLINE=1 .venv/bin/python " + " ".join(sys.argv),
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
