"""Sentence vectors as served: the index built by `ragkiln reindex` with `indexer.sentence_share` 0.5, searched by
the served `Searcher` (top lists of chunks and sentences, their union scored exactly), against the same index
searched with sentence_share 0 (chunk vectors only, as before). It checks that the served search keeps what
bench/sentence_dense_probe.py measured by scoring every chunk, and what the sentence vectors cost.

Each case's workspace is a copy of the chunk study's 128-token one (bench/chunk_study.py; base MiniLM, the embed
backend `auto` picked), reindexed: chunk vectors are cached, so the reindex time is the sentences' embedding and
the two indexes' build. Documents are ranked as `indexer.beir_eval` ranks them (nDCG@10 over documents).

    HF_HUB_OFFLINE=1 /tmp/ragkiln-cpu heavy .venv/bin/python bench/sentence_vectors.py
    # -> bench/results/sentence-vectors-served-dev.json: the four dev cases (SciFact qrels/train.tsv, SQuAD-300
    #    half A, the small SciFact's dev part, the demo questions)
    HF_HUB_OFFLINE=1 /tmp/ragkiln-cpu heavy .venv/bin/python bench/sentence_vectors.py --split test
    # -> sentence-vectors-served-test.json: SciFact qrels/test.tsv and SQuAD-300 half B, the record of what is
    #    served (the share was chosen on dev by the probe; nothing is chosen here)
    HF_HUB_OFFLINE=1 /tmp/ragkiln-cpu heavy .venv/bin/python bench/sentence_vectors.py --weights
    # -> sentence-vectors-weights-dev.json: the fusion's dense weight again, now that the dense side is stronger.
    #    Rule, written before any weight was scored with sentence vectors: dense_weight 0.4, 0.6 or 0.7 replaces
    #    0.5 only if its mean hybrid nDCG@10 over the four dev cases (served search, sentence_share 0.5) beats
    #    0.5's by >= 0.003 with no case losing more than 0.01; the best such weight wins.
    HF_HUB_OFFLINE=1 /tmp/ragkiln-cpu timing .venv/bin/python bench/sentence_vectors.py --cost
    # -> sentence-vectors-cost.json: fresh ingests (torch fp32, so no export is timed) of the demo corpus and of
    #    600 SciFact abstracts at sentence_share 0 and 0.5, one after the other; their index sizes; hybrid search
    #    p50/p95 over 200 queries on the 0.5 index searched at 0.5 and at 0
    HF_HUB_OFFLINE=1 /tmp/ragkiln-cpu timing .venv/bin/python bench/sentence_vectors.py --dense-latency
    # -> sentence-vectors-dense-latency.json: the dense search alone (FAISS, one thread, query vectors computed
    #    first) on the full SciFact index built by the dev run: chunk vectors only, the sentence index's own top
    #    300, and the served combination
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import chunk_study as cs  # sets HF_HUB_OFFLINE and the import path

from common.settings import load_settings
from indexer import service
from indexer.beir_eval import evaluate_searcher
from indexer.generation import load_generation
from indexer.workspace import Workspace
from machine import machine  # bench/machine.py

ROOT = cs.ROOT
WORK = ROOT / "bench" / "work" / "sentence-served"


def settings(home, share: float, **indexer: Any):  # type: ignore[no-untyped-def]
    """A bench workspace's settings: NER off, this sentence share, other indexer settings as given."""
    return load_settings({"home": home, "ner": {"enabled": False}, "indexer": {"sentence_share": share, **indexer}})


def cost() -> None:
    """Ingest time, index size and search latency with and without sentence vectors."""
    import statistics

    from indexer.beir_eval import load_queries

    sci = ROOT.parent / "shared" / "datasets" / "scifact"
    corpora = {"demo": ROOT / "samples" / "python-docs", "scifact-600": WORK / "cost" / "scifact-600"}
    if not corpora["scifact-600"].exists():
        corpora["scifact-600"].mkdir(parents=True)
        lines = (sci / "corpus.jsonl").read_text().splitlines()[:600]
        (corpora["scifact-600"] / "corpus.jsonl").write_text("\n".join(lines) + "\n")
    demo_qs = [json.loads(line)["question"] for f in sorted((ROOT / "bench" / "data").glob("python_docs_questions*"))
               for line in f.read_text().splitlines() if line.strip()]
    queries = {"demo": demo_qs, "scifact-600": list(load_queries(sci).values())}
    rows: dict[str, Any] = {}
    for name, path in corpora.items():
        row: dict[str, Any] = {}
        for share in (0.0, 0.5):
            home = WORK / "cost" / f"{name}-{share:g}"
            shutil.rmtree(home, ignore_errors=True)
            s = settings(home, share, embed_backend="torch")
            t0 = time.perf_counter()
            r = service.ingest(s, [path], progress=False)
            gen = Path(r.index_dir)
            row[f"share={share:g}"] = {
                "ingest_seconds": round(time.perf_counter() - t0, 1), "counts": load_generation(gen).manifest["counts"],
                "index_mb": round(sum(f.stat().st_size for f in gen.iterdir()) / 2**20, 1),
                "docstore_mb": round((home / "docstore.sqlite").stat().st_size / 2**20, 1)}
        home = WORK / "cost" / f"{name}-0.5"
        qs = queries[name][:200]
        for share in (0.0, 0.5):
            searcher = Workspace.open(settings(home, share, embed_backend="torch")).searcher()
            vecs = searcher.encode_queries(qs)
            for q, v in zip(qs[:10], vecs):  # warm-up
                searcher.search(q, k=10, query_vec=v[None])
            times = []
            for q, v in zip(qs, vecs):
                t0 = time.perf_counter()
                searcher.search(q, k=10, query_vec=v[None])
                times.append((time.perf_counter() - t0) * 1000)
            times.sort()
            row[f"search@{share:g}"] = {"p50_ms": round(statistics.median(times), 2),
                                        "p95_ms": round(times[int(0.95 * len(times)) - 1], 2), "queries": len(qs)}
        row["ingest_ratio"] = round(row["share=0.5"]["ingest_seconds"] / row["share=0"]["ingest_seconds"], 2)
        rows[name] = row
        print(name, row, file=sys.stderr, flush=True)
    out = ROOT / "bench" / "results" / "sentence-vectors-cost.json"
    out.write_text(json.dumps({"command": "HF_HUB_OFFLINE=1 /tmp/ragkiln-cpu timing .venv/bin/python "
                                          "bench/sentence_vectors.py --cost",
                               "note": "search times exclude query embedding (vectors computed first)",
                               "machine": machine(), "cases": rows}, indent=1) + "\n")
    print(out.read_text())


def dense_latency() -> None:
    """Milliseconds per query of the dense search's parts on the full SciFact index (the dev run's workspace)."""
    from indexer import dense
    from indexer.beir_eval import load_queries
    from indexer.search import omp_threads

    searcher = Workspace.open(settings(WORK / "scifact", 0.5)).searcher()
    gen, most = searcher.gen, int(searcher.manifest["counts"]["max_sentences"])
    qs = list(load_queries(ROOT.parent / "shared" / "datasets" / "scifact").values())[:200]
    qv = searcher.encode_queries(qs)
    parts = {"chunks top 100": lambda q: dense.search(gen.dense, q, 100),
             "sentences top 300": lambda q: dense.search(gen.sentences, q, 300),
             "served (chunks and sentences)": lambda q: dense.search_with_sentences(gen.dense, gen.sentences, q, 100,
                                                                                      0.5, most)}
    rows: dict[str, float] = {}
    with omp_threads(1):
        for name, fn in parts.items():
            for i in range(10):  # warm-up
                fn(qv[i:i + 1])
            t0 = time.perf_counter()
            for i in range(len(qs)):
                fn(qv[i:i + 1])
            rows[name] = round((time.perf_counter() - t0) / len(qs) * 1000, 2)
    out = ROOT / "bench" / "results" / "sentence-vectors-dense-latency.json"
    out.write_text(json.dumps({"command": "HF_HUB_OFFLINE=1 /tmp/ragkiln-cpu timing .venv/bin/python "
                                          "bench/sentence_vectors.py --dense-latency",
                               "index": gen.manifest["counts"], "queries": len(qs), "mean_ms_per_query": rows,
                               "machine": machine()}, indent=1) + "\n")
    print(out.read_text())


WEIGHTS = (0.4, 0.5, 0.6, 0.7)


def weights() -> None:
    """The dense weight of the fusion re-checked on the dev cases' sentence-vector indexes (`main` builds them)."""
    rows: dict[str, dict[str, float]] = {}
    for name, (_path, labels) in cs.corpora("dev").items():
        home = WORK / name
        row: dict[str, float] = {}
        for w in WEIGHTS:
            s = settings(home, 0.5, dense_weight=w)
            queries, qrels = labels(s)
            row[f"w={w:g}"] = evaluate_searcher(Workspace.open(s).searcher(), queries, qrels, ["hybrid"])["hybrid"][
                "ndcg@10"]
        rows[name] = row
        print(name, row, file=sys.stderr, flush=True)
    labels_ = [f"w={w:g}" for w in WEIGHTS]
    mean = {k: round(sum(r[k] for r in rows.values()) / len(rows), 4) for k in labels_}
    ok = [k for k in labels_ if k != "w=0.5" and mean[k] >= mean["w=0.5"] + 0.003
          and all(r[k] >= r["w=0.5"] - 0.01 for r in rows.values())]
    out = ROOT / "bench" / "results" / "sentence-vectors-weights-dev.json"
    out.write_text(json.dumps({
        "command": "HF_HUB_OFFLINE=1 /tmp/ragkiln-cpu heavy .venv/bin/python bench/sentence_vectors.py --weights",
        "split": "dev", "rule": __doc__.split("Rule, ")[1].split("\n    HF_HUB")[0].replace("\n    #   ", ""),
        "machine": machine(), "cases": rows, "mean_hybrid": mean,
        "winner": max(ok, key=lambda k: mean[k]) if ok else "w=0.5"}, indent=1) + "\n")
    print(out.read_text())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--split", choices=["dev", "test"], default="dev")
    ap.add_argument("--only", default="", help="comma-separated cases (default: all of the split's)")
    ap.add_argument("--cost", action="store_true", help="ingest time, index size and latency instead")
    ap.add_argument("--weights", action="store_true", help="the fusion's dense weight on the dev cases instead")
    ap.add_argument("--dense-latency", action="store_true", help="the dense search's parts on full SciFact instead")
    a = ap.parse_args()
    if a.dense_latency:
        return dense_latency()
    if a.weights:
        return weights()
    if a.cost:
        return cost()
    only = {c for c in a.only.split(",") if c}
    out = ROOT / "bench" / "results" / f"sentence-vectors-served-{a.split}.json"
    rows: dict[str, Any] = json.loads(out.read_text())["cases"] if out.exists() else {}
    WORK.mkdir(parents=True, exist_ok=True)
    for name, (_path, labels) in cs.corpora(a.split).items():
        if only and name not in only:
            continue
        home = WORK / name
        row: dict[str, Any] = {}
        if not home.exists():
            shutil.copytree(cs.WORK / f"{name}-128-c2", home)
            t0 = time.perf_counter()
            service.reindex(settings(home, 0.5), progress=False)
            row["reindex_seconds"] = round(time.perf_counter() - t0, 1)
        elif name in rows:
            row["reindex_seconds"] = rows[name].get("reindex_seconds")
        gen = load_generation(Workspace.open(settings(home, 0.5)).active_index_path())
        row.update(counts=gen.manifest["counts"], embedder=gen.embedder["id"])
        for share in (0.0, 0.5):
            s = settings(home, share)
            queries, qrels = labels(s)
            t0 = time.perf_counter()
            got = evaluate_searcher(Workspace.open(s).searcher(), queries, qrels, ["dense", "hybrid"])
            row[f"share={share:g}"] = {m: got[m]["ndcg@10"] for m in ("dense", "hybrid")}
            row[f"share={share:g}"]["seconds"] = round(time.perf_counter() - t0, 1)
            row["queries"] = got["dense"]["queries"]
        rows[name] = row
        print(name, row, file=sys.stderr, flush=True)
        mean = {k: {m: round(sum(r[k][m] for r in rows.values()) / len(rows), 4) for m in ("dense", "hybrid")}
                for k in ("share=0", "share=0.5")}
        out.write_text(json.dumps({"command": " ".join(["HF_HUB_OFFLINE=1 /tmp/ragkiln-cpu heavy .venv/bin/python",
                                                        *sys.argv]),
                                   "split": a.split, "machine": machine(), "cases": rows, "mean": mean},
                                  indent=1) + "\n")
    print(out.read_text())


if __name__ == "__main__":
    main()
