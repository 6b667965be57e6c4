"""Peak memory of the index build alone at ingest scale: BM25 and FAISS, the old way against the bounded one.

    HF_HUB_OFFLINE=1 /tmp/ragkiln-cpu heavy .venv/bin/python bench/scale_build.py [--chunks 21490,214900]
        [--ws bench/work/scale/ws-bounded-bm25-1000] [--label bounded-build] [--out bench/results/scale.json]

A whole ingest of 100k documents is hours of embedding on this machine; the build step that follows it is not,
and it is where memory grew with the corpus. Each measurement is a fresh process under `/usr/bin/time -v`
(peak RSS) that builds one index over N chunks and exits:

- bm25 `list`: what `BM25Index.build` did before, bm25s's `index` over every chunk's token list;
  bm25 `streamed`: today's `BM25Index.build`, one text in memory at a time. The texts are the real BM25 texts
  (`stream.iter_bm25_texts`, title plus neighbouring chunks) of a built workspace (--ws, 2,149 chunks of 1k
  synthetic documents), cycled to N with a line naming the synthetic document (1 per 2.149 chunks), as the
  corpus generator does, so the vocabulary grows with N as it does there.
- faiss `array`: every vector in one (N, 384) float32 array, then `dense.build_index` (today's ingest path,
  `stream.load_vectors`); faiss `paged`: `dense.build_index_paged` over pages of 2,048. Random unit vectors.
- `baseline`: the same imports and nothing built, to subtract.

The results go into --out under "index_build" / --label, with lscpu's model and flags.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.machine import machine  # noqa: E402

DIM = 384
PAGE = 2048
CHUNKS_PER_DOC = 2.149  # 2,149 chunks of 1,000 synthetic documents


def base_texts(ws: Path) -> list[str]:
    from indexer.docstore import DocStore
    from indexer.stream import corpus_chunk_ids, iter_bm25_texts

    store = DocStore(ws / "docstore.sqlite")
    corpus = store.active_documents()
    return list(iter_bm25_texts(store, corpus_chunk_ids(store, corpus), corpus, 1))


def texts(base: list[str], n: int):  # type: ignore[no-untyped-def]
    for i in range(n):
        doc = int(i / CHUNKS_PER_DOC)
        yield f"Synthetic document {doc} collects notes on Python, reference {doc}.\n{base[i % len(base)]}"


def vector_pages(n: int):  # type: ignore[no-untyped-def]
    def pages():  # type: ignore[no-untyped-def]
        for s in range(0, n, PAGE):
            v = np.random.default_rng(s).standard_normal((min(PAGE, n - s), DIM)).astype(np.float32)
            v /= np.linalg.norm(v, axis=1, keepdims=True)
            yield np.arange(s, s + len(v), dtype=np.int64), v
    return pages


def child(part: str, variant: str, n: int, ws: Path) -> None:
    """One build in this process; prints what it built."""
    import bm25s

    from indexer import dense
    from indexer.bm25 import BM25Index, tokenize

    base = base_texts(ws)
    t = time.perf_counter()
    if part == "bm25" and variant == "list":
        r = bm25s.BM25(k1=1.5, b=0.75)
        r.index([tokenize(x) or ["\u2205"] for x in texts(base, n)], show_progress=False)
        pairs = len(r.scores["data"])
    elif part == "bm25" and variant == "streamed":
        idx = BM25Index.build(texts(base, n), np.arange(n, dtype=np.int64), 1.5, 0.75, "english")
        pairs = len(idx.retriever.scores["data"])
    elif part == "faiss" and variant == "array":
        vecs = np.empty((n, DIM), dtype=np.float32)
        for ids, v in vector_pages(n)():
            vecs[ids[0]:ids[0] + len(ids)] = v
        index = dense.build_index(DIM, "Flat", np.arange(n, dtype=np.int64), vecs)
        del vecs
        pairs = index.ntotal
    elif part == "faiss" and variant == "paged":
        pairs = dense.build_index_paged(DIM, "Flat", n, vector_pages(n)).ntotal
    else:  # baseline
        pairs = len(base)
    print(json.dumps({"built": pairs, "seconds": round(time.perf_counter() - t, 1)}))


def measure(part: str, variant: str, n: int, ws: Path) -> dict:
    cmd = ["/usr/bin/time", "-v", sys.executable, __file__, "--child", part, variant, str(n), "--ws", str(ws)]
    p = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    if p.returncode != 0:
        raise SystemExit(f"{part}/{variant}/{n} failed ({p.returncode}): {p.stderr[-2000:]}")
    rss_kb = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", p.stderr).group(1))  # type: ignore[union-attr]
    return {**json.loads(p.stdout.strip().splitlines()[-1]), "peak_rss_mb": round(rss_kb / 1024, 1),
            "load_after": [round(x, 2) for x in os.getloadavg()]}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--child", nargs=3)
    ap.add_argument("--chunks", default="21490,214900")
    ap.add_argument("--ws", type=Path, default=ROOT / "bench" / "work" / "scale" / "ws-bounded-bm25-1000")
    ap.add_argument("--label", default="bounded-build")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "scale.json")
    args = ap.parse_args()
    if args.child:
        part, variant, n = args.child
        child(part, variant, int(n), args.ws)
        return
    result = json.loads(args.out.read_text()) if args.out.exists() else {}
    rec: dict = {"command": " ".join(sys.argv), "lscpu": machine(),
                 "load_before": [round(x, 2) for x in os.getloadavg()], "baseline": measure("baseline", "-", 0, args.ws)}
    result.setdefault("index_build", {})[args.label] = rec
    for n in (int(x) for x in args.chunks.split(",")):
        for part, variants in (("faiss", ("array", "paged")), ("bm25", ("list", "streamed"))):
            for variant in variants:
                r = measure(part, variant, n, args.ws)
                r["over_baseline_mb"] = round(r["peak_rss_mb"] - rec["baseline"]["peak_rss_mb"], 1)
                rec.setdefault(str(n), {}).setdefault(part, {})[variant] = r
                print(n, part, variant, r, flush=True)
                args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
