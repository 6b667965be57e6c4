"""Plain streamed ingest against `--ray local` on the first --docs SciFact documents: the same index (top-5 of every
SciFact test query, chunks, vectors, entities) and the time of each.

    HF_HUB_OFFLINE=1 /tmp/ragkiln-cpu timing .venv/bin/python bench/ray_ingest.py [--beir ../shared/datasets/scifact]
        [--docs 300] [--no-ner] [--num-cpus 2] [--window-docs N] [--work bench/work/ray-ingest]
        [--out bench/results/ray-ingest.json]

Each run ingests into a fresh workspace. The Ray run joins a local cluster started before its clock starts (started
and stopped by this script; the start is timed on its own as `ray_cluster_start_s`), so `ray_s` is the ingest on a
running cluster: the actors' model loads, the object-store hand-over, and the driver's writes. With NER the plain
run uses the configured enricher (spaCy, `ner.n_process` worker processes); the Ray actors build one pipeline each,
one process per actor. The top-5 check is an equality check (the queries are only probes), not a quality score.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import shutil
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from common.settings import load_settings  # noqa: E402
from embed_backends import cpu_info, load  # noqa: E402
from indexer import service  # noqa: E402
from indexer.beir_eval import load_qrels, load_queries  # noqa: E402
from indexer.ray_ingest import RayOptions  # noqa: E402
from indexer.workspace import Workspace  # noqa: E402
from ner.enrich import make_enricher, open_enricher  # noqa: E402


def snapshot(home: Path, queries: dict[str, str]) -> dict:
    ws = Workspace.open(load_settings({"home": home}))
    chunks = sorted((c.key, c.text, c.id) for c in ws.store.iter_chunks())
    ids = [c[2] for c in chunks]
    searcher = ws.searcher()
    emb = searcher.gen.embedder
    vecs = ws.store.get_embeddings(ids, emb["id"], emb["dim"])
    ents = ws.store.entities_for(ids)
    top = {qid: [h.chunk.key for h in searcher.search(q, k=5)] for qid, q in queries.items()}
    return {"chunks": [c[:2] for c in chunks], "ids": ids, "vecs": np.stack([vecs[i] for i in ids]),
            "ents": [sorted((e.label, e.norm, e.doc_start, e.doc_end) for e in ents.get(i, [])) for i in ids],
            "top": top}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--beir", type=Path, default=ROOT.parent / "shared" / "datasets" / "scifact")
    ap.add_argument("--docs", type=int, default=300)
    ap.add_argument("--no-ner", action="store_true")
    ap.add_argument("--num-cpus", type=int, default=2)
    ap.add_argument("--window-docs", type=int, default=RayOptions.window_docs,
                    help="documents handed to Ray Data at a time at most (RayOptions.window_docs; windows also close "
                    "at RayOptions.window_mb of text)")
    ap.add_argument("--work", type=Path, default=ROOT / "bench" / "work" / "ray-ingest")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "ray-ingest.json")
    args = ap.parse_args()

    shutil.rmtree(args.work, ignore_errors=True)
    corpus = args.work / "corpus"
    corpus.mkdir(parents=True)
    with open(args.beir / "corpus.jsonl", encoding="utf-8") as f:
        lines = [next(f) for _ in range(args.docs)]
    (corpus / "corpus.jsonl").write_text("".join(lines), encoding="utf-8")
    qrels = load_qrels(args.beir, "test")
    queries = {k: v for k, v in load_queries(args.beir).items() if k in qrels}

    result: dict = {"command": " ".join([sys.executable, *sys.argv]), "cpu": cpu_info(), "docs": args.docs,
                    "ner": not args.no_ner, "queries": len(queries), "runs": {}}
    snaps = {}
    import ray

    for kind in ("plain", "ray"):
        home = args.work / kind
        settings = load_settings({"home": home, "ner": {"enabled": not args.no_ner}})
        options = None
        if kind == "ray":
            t = time.perf_counter()
            ray.init(num_cpus=args.num_cpus, include_dashboard=False, log_to_driver=False, configure_logging=False,
                     runtime_env={"env_vars": {"PYTHONPATH": str(ROOT)}})
            result["ray_cluster_start_s"] = round(time.perf_counter() - t, 2)
            ner = settings.ner.model_copy(update={"n_process": 1})
            options = RayOptions("local", enricher_factory=functools.partial(make_enricher, ner) if ner.enabled
                                 else None, window_docs=args.window_docs)
        load_before = load()
        with open_enricher(settings.ner) as enricher:
            t = time.perf_counter()
            report = service.ingest(settings, [corpus], enricher=enricher, progress=False, ray=options)
            seconds = time.perf_counter() - t
        if kind == "ray":
            ray.shutdown()
        result["runs"][kind] = {"seconds": round(seconds, 2), "chunks": report.chunks_total,
                                "chunks_embedded": report.chunks_embedded, "documents": report.documents_total,
                                "chunks_per_s": round(report.chunks_total / seconds, 1),
                                "load_before": load_before, "load_after": load()}
        snaps[kind] = snapshot(home, queries)
        print(kind, result["runs"][kind], flush=True)

    a, b = snaps["plain"], snaps["ray"]
    same_top = sum(a["top"][q] == b["top"][q] for q in queries)
    result["equal"] = {
        "top5_same_queries": same_top, "top5_all_same": same_top == len(queries),
        "chunks_same": a["chunks"] == b["chunks"], "chunk_ids_same": a["ids"] == b["ids"],
        "entities_same": a["ents"] == b["ents"],
        "vectors_max_abs_diff": float(np.abs(a["vecs"] - b["vecs"]).max()) if a["chunks"] == b["chunks"] else None,
    }
    result["ray_over_plain"] = round(result["runs"]["ray"]["seconds"] / result["runs"]["plain"]["seconds"], 2)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result["equal"]), "ray/plain time", result["ray_over_plain"])
    if not result["equal"]["top5_all_same"]:
        sys.exit(1)


if __name__ == "__main__":
    main()
