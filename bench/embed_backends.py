"""Embed backends compared in one run: ingest throughput of torch fp32 and each int8 backend, their parity, and
SciFact test nDCG@10 (dense and hybrid) with each.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/embed_backends.py [--beir ../shared/datasets/scifact] [--docs 600]
        [--backends torch,onnx,openvino] [--ndcg-backends torch,onnx,openvino] [--threads 2]
        [--workspace bench/work/embed-backends] [--out bench/results/embed-backends.json] [--query-latency 200]

Throughput: for each backend a fresh workspace ingests the first --docs documents of the corpus without NER (the
bench calls the indexer directly, never an enricher). The int8 export is made first and outside the timing (it is a
one-time cost per embedder and workspace, reported as export_seconds; `auto`, the default, makes every export it
tries and records the backend it chose as `used`), so chunks/s is the steady-state ingest
(chunking, embedding, FAISS and BM25) that every later ingest of new documents pays. The backends run one after
another in the same process, torch first.

Quality: one workspace per run (--workspace, reused: vectors are cached per backend) ingests the full corpus with
each backend of --ndcg-backends in turn and scores the test split, queries embedded by the index's backend.

Query latency (--query-latency N): the first N queries of the corpus (their text only), embedded one at a time as
the searcher embeds a query, by torch fp32 and by each int8 export found in --workspace (made by a
quality run; none is made here), the backends interleaved query by query over 3 passes, p50/p95 per backend.

The JSON records the CPU (`lscpu` model name and the int8/bf16 flags), the load average before and after each
measurement, and the command; on a machine shared with other jobs the figures are indicative only.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.machine import lscpu_fields  # noqa: E402
from common.settings import load_settings  # noqa: E402
from indexer import backends, service  # noqa: E402
from indexer.beir_eval import evaluate_searcher, load_qrels, load_queries  # noqa: E402
from indexer.embedder import load_embedder  # noqa: E402
from indexer.generation import load_generation  # noqa: E402
from indexer.workspace import Workspace  # noqa: E402

FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "avx_vnni", "amx_tile", "amx_int8", "amx_bf16")


def cpu_info() -> dict:
    fields = lscpu_fields()
    flags = set(fields.get("Flags", "").split())
    return {"model": fields.get("Model name") or platform.processor(), "cpus": os.cpu_count(),
            "flags": {f: f in flags for f in FLAGS}, "int8_isa": backends.cpu_isa()}


def load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def settings(home: Path, backend: str, threads: int):  # type: ignore[no-untyped-def]
    return load_settings({"home": home, "indexer": {"threads": threads, "embed_backend": backend}})


def throughput(sub: Path, backend: str, threads: int) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix=f"ragkiln-embed-{backend}-"))
    try:
        s = settings(tmp / "ws", backend, threads)
        export = None
        if backend != "torch":  # the one-time export, outside the timing
            base = load_embedder(s.indexer.embedder, threads)
            docs = service.scan([sub], int(s.indexer.max_file_mb * 2**20))[0]
            emb, why = backends.choose_embedder(Workspace.open(s).models, base, s.indexer,
                                                lambda: service.sample_texts(docs, base, s.indexer))
            spec = getattr(emb, "manifest", None)
            export = {"id": emb.id, "chosen": getattr(emb, "backend", "torch"), "reason": why["reason"],
                      **({"export_seconds": spec["export_seconds"], "parity": spec["parity"], "probe": spec["probe"],
                          "scheme": spec["scheme"]} if spec else {})}
        before = load()
        t0 = time.perf_counter()
        rep = service.ingest(s, [sub], progress=False)
        dt = time.perf_counter() - t0
        section = load_generation(Path(rep.index_dir)).manifest["embedder"]
        assert section["backend"] == (export["chosen"] if export else backend), section
        return {"backend": backend, "used": section["backend"], "quantization": section["quantization"],
                "documents": rep.documents_total, "chunks": rep.chunks_total, "seconds": round(dt, 2),
                "chunks_per_s": round(rep.chunks_total / dt, 2),
                "load_before": before, "load_after": load(), "export": export}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def quality(beir: Path, home: Path, backend: str, threads: int, split: str) -> dict:
    s = settings(home, backend, threads)
    t0 = time.perf_counter()
    rep = service.ingest(s, [beir / "corpus.jsonl"], progress=True)
    ingest_s = time.perf_counter() - t0
    searcher = Workspace.open(s).searcher()
    used = searcher.manifest["embedder"]["backend"]
    assert backend in ("auto", used), (backend, used)
    queries, qrels = load_queries(beir), load_qrels(beir, split)
    t0 = time.perf_counter()
    scores = evaluate_searcher(searcher, queries, qrels, ["dense", "hybrid"])
    return {"backend": backend, "used": used, "embedder": searcher.embedder.id, "chunks": rep.chunks_total,
            "chunks_embedded": rep.chunks_embedded, "ingest_s": round(ingest_s, 1),
            "eval_s": round(time.perf_counter() - t0, 1),
            "ndcg@10": {m: scores[m]["ndcg@10"] for m in scores}, "metrics": scores,
            "parity": searcher.manifest["embedder"].get("parity")}


def query_latency(beir: Path, home: Path, threads: int, n: int, passes: int = 3) -> dict:
    s = settings(home, "torch", threads)
    base = load_embedder(s.indexer.embedder, threads)
    models = Workspace.open(s).models
    embs = {"torch": base}
    for b in backends.AUTO_ORDER:
        if backends.available(b) and (emb := backends.cached_export(models, base, b, threads)) is not None:
            embs[b] = emb
    texts = list(load_queries(beir).values())[:n]
    for emb in embs.values():  # warm-up: the first calls allocate
        emb.encode(texts[:8], is_query=True)
    before = load()
    out = {b: {"id": embs[b].id, **ms} for b, ms in interleaved_latency(embs, texts, passes).items()}
    return {"queries": len(texts), "passes": passes, "threads": threads, "per_backend": out, "load_before": before,
            "load_after": load()}


def interleaved_latency(embs: dict, texts: list[str], passes: int) -> dict[str, dict[str, float]]:
    """Single-query embedding p50/p95 (ms) per embedder, the embedders taken in turn query by query so the
    machine's load falls on all alike (the caller warms them up)."""
    times: dict[str, list[float]] = {b: [] for b in embs}
    for _ in range(passes):
        for q in texts:
            for b, emb in embs.items():
                t0 = time.perf_counter()
                emb.encode([q], is_query=True)
                times[b].append((time.perf_counter() - t0) * 1000)
    return {b: {"p50_ms": round(float(np.percentile(t, 50)), 2), "p95_ms": round(float(np.percentile(t, 95)), 2)}
            for b, t in times.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--beir", type=Path, default=ROOT.parent / "shared/datasets/scifact")
    ap.add_argument("--docs", type=int, default=600)
    ap.add_argument("--backends", default="torch,onnx,openvino")
    ap.add_argument("--ndcg-backends", default="torch,onnx,openvino", help="'' skips the full-corpus quality runs")
    ap.add_argument("--split", default="test")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--workspace", type=Path, default=ROOT / "bench/work/embed-backends")
    ap.add_argument("--out", type=Path, default=ROOT / "bench/results/embed-backends.json")
    ap.add_argument("--query-latency", type=int, default=0, help="queries timed one at a time per backend (0: none)")
    ap.add_argument("--note", default="", help="recorded as is, e.g. 'shared machine, indicative'")
    args = ap.parse_args()
    if not (args.beir / "corpus.jsonl").exists():
        sys.exit(f"bench/embed_backends.py: {args.beir} has no corpus.jsonl")
    import torch

    torch.set_num_threads(args.threads)
    wanted = [b for b in args.backends.split(",") if b]
    for b in wanted:
        if b not in ("torch", "auto") and not backends.available(b):
            sys.exit(f"bench/embed_backends.py: the {b} backend is not installed")

    tmp = Path(tempfile.mkdtemp(prefix="ragkiln-embed-sub-"))
    sub = tmp / "corpus.jsonl"
    with open(args.beir / "corpus.jsonl") as f, open(sub, "w") as g:
        for i, line in enumerate(f):
            if i >= args.docs:
                break
            g.write(line)
    speed: list[dict] = []
    quality_runs: list[dict] = []
    result = {
        "note": args.note, "cpu": cpu_info(), "threads": args.threads,
        "dataset": args.beir.name, "throughput_docs": args.docs, "ner": False,
        "throughput": speed, "quality_split": args.split, "quality": quality_runs, "complete": False,
        "command": "HF_HUB_OFFLINE=1 .venv/bin/python " + " ".join(sys.argv),
    }

    def save() -> None:  # after every measurement: a run stopped half-way keeps what it measured
        torch_cps = next((r["chunks_per_s"] for r in speed if r["backend"] == "torch"), None)
        for r in speed:
            r["speedup_vs_torch"] = round(r["chunks_per_s"] / torch_cps, 2) if torch_cps else None
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")

    for b in wanted:
        speed.append(throughput(sub, b, args.threads))
        save()
        print("throughput", json.dumps(speed[-1]), file=sys.stderr, flush=True)
    shutil.rmtree(tmp, ignore_errors=True)
    for b in [b for b in args.ndcg_backends.split(",") if b]:
        quality_runs.append(quality(args.beir, args.workspace, b, args.threads, args.split))
        save()
        print("quality", json.dumps(quality_runs[-1]["ndcg@10"]), b, file=sys.stderr, flush=True)
    if args.query_latency:
        result["query_latency"] = query_latency(args.beir, args.workspace, args.threads, args.query_latency)
        save()
        print("query latency", json.dumps(result["query_latency"]["per_backend"]), file=sys.stderr, flush=True)
    result["complete"] = True
    save()
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
