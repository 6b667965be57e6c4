"""Ingest time and peak memory against corpus size, on synthetic corpora cut from the sample texts, and the
dense query latency over each size's index with Flat, HNSW and IVF.

    HF_HUB_OFFLINE=1 /tmp/ragkiln-cpu timing .venv/bin/python bench/scale.py [--sizes 1000,10000] [--ner]
        [--code DIR] [--label streamed] [--work bench/work/scale] [--out bench/results/scale.json]
        [--ingest-from FILE] [--queries 200] [--plot docs/img/scale.svg] [--trace SECONDS] [--backend auto]

Each size is a folder of N .txt files (1,000 per subfolder) made from the paragraphs of samples/python-docs: document
i joins 3-8 paragraphs drawn with seed i and a sentence naming i, so every text is distinct (the vector cache dedups
identical texts). Each ingest is a fresh `python -m cli ingest DIR --json` (no NER unless --ner) under
`/usr/bin/time -v`: wall time and the peak resident set of the ingest process (spaCy's worker processes, with --ner,
are separate processes and not counted). --code runs another checkout of ragkiln (e.g. the commit before the
streamed ingest, unpacked with `git archive`) on the same corpora; results are merged into --out under --label.

After each ingest, `query_latency` reads the built index's vectors back (the Flat index holds them exactly),
builds HNSW32 and IVF (nlist a power of two near 4 sqrt(n), `indexer.dense.build_index`, the ingest's own
builder) from the same vectors and times single-query dense searches (FAISS on one OpenMP thread, as the
searcher runs them; the index types interleaved query by query), --queries queries x 3 passes, embedded once
with the index's embedder: p50/p95 per type, recall@10 of HNSW and IVF against Flat, nprobe and efSearch the
settings' defaults. --ingest-from takes this label's ingest records from another result file (a run whose
latency step did not run) and measures only the latency over their workspaces. Every run records lscpu's model
and flags; `extrapolate` fits time and peak RSS linearly in documents over the two largest measured sizes
(labelled as an extrapolation, never a measurement) and --plot draws time, peak RSS and latency against size.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from embed_backends import cpu_info, load  # noqa: E402

from bench.machine import machine  # noqa: E402

K = 10


def paragraphs() -> list[str]:
    out: list[str] = []
    for p in sorted((ROOT / "samples" / "python-docs").rglob("*")):
        if p.is_file() and p.suffix in (".txt", ".md", ".rst"):
            for para in re.split(r"\n\s*\n", p.read_text(encoding="utf-8", errors="replace")):
                para = " ".join(para.split())
                if len(para) >= 80 and not para.startswith(("..", "#", "=", "-", "*")):
                    out.append(para)
    return out


def make_corpus(root: Path, n: int, paras: list[str]) -> Path:
    done = root / ".complete"
    if done.exists() and done.read_text() == str(n):
        return root
    root.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        rng = random.Random(i)
        body = "\n\n".join(rng.sample(paras, rng.randint(3, 8)))
        d = root / f"part{i // 1000:03d}"
        d.mkdir(exist_ok=True)
        (d / f"doc{i:06d}.txt").write_text(f"Synthetic document {i} collects notes on Python, reference {i}.\n\n{body}\n",
                                           encoding="utf-8")
    done.write_text(str(n))
    return root


def run_ingest(code: Path, home: Path, corpus: Path, ner: bool, trace_every: float = 0.0, backend: str = "") -> dict:
    """One ingest under `/usr/bin/time -v`; with `trace_every`, the ingest process's resident set (VmRSS) is
    also sampled every that many seconds, to see in which phase (streamed stages or the index build at the end)
    the peak falls. `backend` sets `indexer.embed_backend` for the ingest (empty: the default)."""
    cmd = ["/usr/bin/time", "-v", sys.executable, "-m", "cli", "--workspace", str(home), "--log-level", "WARNING",
           "ingest", str(corpus), "--json"] + ([] if ner else ["--no-ner"])
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(code)}
    if backend:
        env["RAGKILN_INDEXER__EMBED_BACKEND"] = backend
    trace: list[list[float]] = []
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        t = time.perf_counter()
        p = subprocess.Popen(cmd, stdout=out, stderr=err, text=True, cwd=code, env=env)
        while p.poll() is None:
            time.sleep(trace_every or 1.0)
            if trace_every and (mb := _child_rss_mb(p.pid)) is not None:
                trace.append([round(time.perf_counter() - t, 1), mb])
        wall = time.perf_counter() - t
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    if p.returncode != 0:
        raise SystemExit(f"ingest failed ({p.returncode}): {stderr[-2000:]}")
    rss_kb = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", stderr).group(1))  # type: ignore[union-attr]
    report = json.loads(stdout)
    r = {"seconds": round(wall, 1), "peak_rss_mb": round(rss_kb / 1024, 1), "chunks": report["chunks_total"],
         "documents": report["documents_total"], "chunks_per_s": round(report["chunks_total"] / wall, 1)}
    manifest = json.loads((active_generation(home) / "manifest.json").read_text())
    r["embedder"] = {k: manifest["embedder"].get(k) for k in ("id", "backend", "quantization", "parity")}
    if trace:
        r["rss_trace"] = window_max(trace, trace_every)
    return r


def window_max(trace: list[list[float]], every: float, window: float = 20.0) -> dict:
    """The RSS samples reduced to the highest of each `window` seconds (a short record that keeps the peaks)."""
    out: dict[int, list[float]] = {}
    for t, mb in trace:
        w = int(t // window)
        if w not in out or mb > out[w][1]:
            out[w] = [t, mb]
    return {"every_s": every, "window_s": window, "max_per_window_s_mb": list(out.values())}


def _child_rss_mb(pid: int) -> float | None:
    """VmRSS (MB) of the first child of `pid` (the ingest under /usr/bin/time), None while there is none."""
    try:
        child = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()[0]
        for line in Path(f"/proc/{child}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
    except (OSError, IndexError):
        return None
    return None


def query_texts(paras: list[str], n: int) -> list[str]:
    """Queries in the corpus's language: the opening words (6-14) of paragraphs drawn with a fixed seed."""
    rng = random.Random(12345)
    return [" ".join(p.split()[:rng.randint(6, 14)]) for p in rng.sample(paras, n)]


def ivf_nlist(n: int) -> int:
    """The power of two nearest 4 sqrt(n) (FAISS's guidance: 4-16 sqrt(n) lists), halved while n < 39 per list."""
    nlist = 2 ** round(np.log2(max(4 * n ** 0.5, 1)))
    while nlist > 1 and nlist * 39 > n:
        nlist //= 2
    return nlist


def active_generation(home: Path) -> Path:
    from common.settings import load_settings
    from indexer.workspace import Workspace

    path = Workspace.open(load_settings({"home": home})).active_index_path()
    if path is None:
        raise SystemExit(f"{home}: no active index")
    return path


def query_latency(home: Path, queries: list[str], k: int = K) -> dict:
    """p50/p95 milliseconds of one dense query over Flat, HNSW32 and IVF built from the index's own vectors,
    and recall@k of HNSW and IVF against Flat (the exact top-k)."""
    from indexer import dense
    from indexer.embedder import load_embedder

    gen = active_generation(home)
    manifest = json.loads((gen / "manifest.json").read_text())
    if manifest["config"]["faiss_factory"] != "Flat":
        raise SystemExit(f"{gen}: the latency step reads the vectors from a Flat index")
    flat = dense.load(gen)
    emb = load_embedder((manifest["embedder"].get("base") or manifest["embedder"])["path"], 0)  # int8: its fp32 base
    return latency_over(flat, emb.encode(queries, is_query=True), k)


def latency_over(flat, q: np.ndarray, k: int = K) -> dict:  # type: ignore[no-untyped-def]
    """`query_latency` over a Flat IDMap2 index and embedded queries."""
    import faiss

    from common.settings import IndexerConfig
    from indexer import dense
    from indexer.search import omp_threads

    n, dim = flat.ntotal, flat.d
    ids = faiss.vector_to_array(flat.id_map).astype(np.int64)
    vecs = faiss.downcast_index(flat.index).reconstruct_n(0, n)
    cfg = IndexerConfig()
    nlist = ivf_nlist(n)
    indexes = {"flat": (flat, "Flat", 0.0)}
    for name, factory in (("hnsw", "HNSW32"), ("ivf", f"IVF{nlist},Flat")):
        t = time.perf_counter()
        idx = dense.build_index(dim, factory, ids, vecs)
        indexes[name] = (idx, factory, time.perf_counter() - t)
    for idx, _, _ in indexes.values():
        dense.configure(idx, cfg.faiss_nprobe, cfg.hnsw_ef_search)
    lat: dict[str, list[float]] = {name: [] for name in indexes}
    top: dict[str, list[np.ndarray]] = {name: [] for name in indexes}
    with omp_threads(1):
        for name, (idx, _, _) in indexes.items():  # warm-up
            for i in range(min(10, len(q))):
                dense.search(idx, q[i:i + 1], k)
        for rep in range(3):
            for i in range(len(q)):
                for name, (idx, _, _) in indexes.items():
                    t = time.perf_counter_ns()
                    _, got = dense.search(idx, q[i:i + 1], k)
                    lat[name].append((time.perf_counter_ns() - t) / 1e6)
                    if rep == 0:
                        top[name].append(got[0])
    out: dict = {"vectors": int(n), "queries": len(q), "passes": 3, "k": k, "faiss_threads": 1,
                 "nprobe": cfg.faiss_nprobe, "ef_search": cfg.hnsw_ef_search}
    for name, (idx, factory, build_s) in indexes.items():
        r = {"factory": factory, "p50_ms": round(float(np.percentile(lat[name], 50)), 3),
             "p95_ms": round(float(np.percentile(lat[name], 95)), 3)}
        if name != "flat":
            r["build_s"] = round(build_s, 2)
            r[f"recall@{k}"] = round(float(np.mean([len(set(a.tolist()) & set(b.tolist())) / len(b)
                                                    for a, b in zip(top[name], top["flat"])])), 4)
        out[name] = r
    return out


def extrapolate(runs: dict, to: int = 100_000) -> dict | None:
    """Time and peak RSS at `to` documents from a straight line through the two largest measured sizes."""
    sizes = sorted(int(n) for n, r in runs.items() if "peak_rss_mb" in r)
    if len(sizes) < 2:
        return None
    a, b = sizes[-2], sizes[-1]
    out: dict = {"documents": to, "from_sizes": [a, b], "kind": "extrapolation (linear in documents), not a measurement"}
    for key in ("peak_rss_mb", "seconds", "chunks"):
        ya, yb = runs[str(a)][key], runs[str(b)][key]
        slope = (yb - ya) / (b - a)
        out[f"{key}_per_1k_docs"] = round(slope * 1000, 2)
        out[key] = round(yb + slope * (to - b), 1)
    return out


def plot(result: dict, path: Path) -> None:
    """Ingest time, peak RSS and dense query p50 against documents, one line per label, the 100k extrapolation
    dashed; and, where bench/scale_build.py ran, the index build's own peak over its baseline."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    builds = result.get("index_build") or {}
    fig, axes = plt.subplots(1, 4 if builds else 3, figsize=(17 if builds else 13, 4))
    for label, runs in result["runs"].items():
        sizes = sorted(int(n) for n in runs)
        if not sizes:
            continue
        for ax, key in zip(axes[:2], ("seconds", "peak_rss_mb")):
            line, = ax.plot(sizes, [runs[str(n)][key] for n in sizes], "o-", label=label)
            ex = (result.get("extrapolation") or {}).get(label)
            if ex:
                ax.plot([sizes[-1], ex["documents"]], [runs[str(sizes[-1])][key], ex[key]], "--", color=line.get_color())
                ax.annotate(f"{ex[key]:,.0f} (extrapolated)", (ex["documents"], ex[key]), fontsize=7, ha="right",
                            va="bottom", color=line.get_color())
        lat = [n for n in sizes if "latency" in runs[str(n)]]
        for name in ("flat", "hnsw", "ivf") if lat else ():
            last = runs[str(lat[-1])]["latency"][name]
            rec = f", recall@10 {last['recall@10']:.2f} at {lat[-1]:,}" if "recall@10" in last else ""
            axes[2].plot(lat, [runs[str(n)]["latency"][name]["p50_ms"] for n in lat], "o-",
                         label=f"{label}: {name}{rec}")
    axes[1].axhline(6144, color="grey", lw=0.8, ls=":")
    axes[1].annotate("6 GB target", (1000, 6144), fontsize=7, va="bottom")
    axes[1].set_ylim(0, 7000)
    for ax, title, logy in zip(axes, ("ingest wall time (s)", "ingest peak RSS (MB)",
                                      "dense query p50 (ms, k=10, 1 FAISS thread)"), (True, False, True)):
        ax.set_xscale("log")
        if logy:
            ax.set_yscale("log")
        ax.set_xlabel("documents")
        ax.set_title(title, fontsize=9)
        ax.grid(True, which="both", lw=0.3)
        ax.legend(fontsize=6)
    if builds:
        ax = axes[3]
        rec = next(iter(builds.values()))
        sizes = sorted(int(n) for n in rec if n.isdigit())
        for part, variant, style in (("bm25", "list", "s--"), ("bm25", "streamed", "s-"), ("faiss", "array", "^--"),
                                     ("faiss", "paged", "^-")):
            ax.plot([n / 2.149 for n in sizes], [rec[str(n)][part][variant]["over_baseline_mb"] for n in sizes], style,
                    label=f"{part} {variant}")
        ax.set_xscale("log")
        ax.set_xlabel("documents (chunks / 2.149)")
        ax.set_title("index build alone: peak over baseline (MB)", fontsize=9)
        ax.grid(True, which="both", lw=0.3)
        ax.legend(fontsize=6)
    fig.suptitle(f"ragkiln ingest at scale, --no-ner ({result['cpu']['model']}, {result['cpu']['cpus']} CPUs, "
                 "shared machine: see bench/results/scale.json for load averages)", fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format=path.suffix.lstrip(".") or "svg", metadata={"Date": None} if path.suffix == ".svg" else None)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="1000,10000")
    ap.add_argument("--ner", action="store_true")
    ap.add_argument("--code", type=Path, default=ROOT)
    ap.add_argument("--label", default="streamed")
    ap.add_argument("--work", type=Path, default=ROOT / "bench" / "work" / "scale")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "scale.json")
    ap.add_argument("--ingest-from", type=Path, help="take this label's ingest records from FILE; measure latency only")
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--plot", default=str(ROOT / "docs" / "img" / "scale.svg"), help="'' draws nothing")
    ap.add_argument("--trace", type=float, default=0.0, help="sample the ingest's RSS every SECONDS (0: off)")
    ap.add_argument("--backend", default="", help="indexer.embed_backend for the ingests (default: the settings')")
    args = ap.parse_args()
    paras = paragraphs()
    queries = query_texts(paras, args.queries)
    result = json.loads(args.out.read_text()) if args.out.exists() else {}
    result.update({"cpu": cpu_info(), "paragraphs": len(paras), "ner": args.ner})
    result.setdefault("lscpu", {})[args.label] = machine()
    runs = result.setdefault("runs", {}).setdefault(args.label, {})
    imported = json.loads(args.ingest_from.read_text())["runs"][args.label] if args.ingest_from else None
    for n in (int(x) for x in args.sizes.split(",")):
        home = args.work / f"ws-{args.label}-{n}"
        if imported is not None:
            r = imported[str(n)]
        else:
            corpus = make_corpus(args.work / f"corpus-{n}", n, paras)
            subprocess.run(["rm", "-rf", str(home)], check=True)
            before = load()
            r = run_ingest(args.code.resolve(), home, corpus, args.ner, args.trace, args.backend)
            r.update(load_before=before, load_after=load(),
                     command=f"{' '.join(sys.argv)} (this size: cli ingest {corpus} --json{'' if args.ner else ' --no-ner'})")
        before = load()
        r["latency"] = query_latency(home, queries)
        r["latency"].update(load_before=before, load_after=load(), command=" ".join(sys.argv))
        runs[str(n)] = r
        print(args.label, n, r, flush=True)
        result.setdefault("extrapolation", {})[args.label] = extrapolate(runs)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    if args.plot:
        plot(result, Path(args.plot))


if __name__ == "__main__":
    main()
