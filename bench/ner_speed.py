"""NER enrichment speed before/after issue 30, measured the way bench/ner.py measured 17,213 words/s.

Same method as bench/ner.py's `enrich` part: the first 1500 SciFact abstracts, words counted as
whitespace-separated words of the texts, fed 256 texts per `enrich` call (as ingest does), after a
warm-up on 600 texts that also starts the worker pools; variants take turns, a full pass each, for 3
rounds, so load from other processes hits them alike.

  before                2 worker processes, batch 64, thinc's BLIS gemm (the gemm before issue 30)
  after                 the defaults: 2 workers, NerConfig's batch (16), numpy/OpenBLAS gemm, 1 BLAS thread per worker
  after_batch64         `after` with batches of 64 (the default before: 16 won every one of 8 alternating passes
                        on SciFact, +3.6%, and tied on the demo corpus, `--corpus sample`)
  after_chunks          `after` on the abstracts cut into overlapping chunks, each chunk enriched (ingest today)
  after_documents       the same chunks through `enrich_documents` (NER once per document region)

For the two chunked variants words/s counts the corpus words (each abstract's words once), so the
saving from not re-reading the overlaps shows; the chunk words are recorded too. Chunks: sentences
packed to 190 words with 24 shared (about the indexer's 256/32 embedder tokens at ~1.35 tokens a word).

`--parts ceiling` measures what the cores give spaCy's NER with no hand-over at all: 1, then 2 fully
independent processes (each loads the pipeline, warms up, waits at a barrier, then runs `nlp.pipe` over
all the texts on one BLAS thread), with the same run of a single-threaded float32 GEMM loop as a control
for how the cores scale on plain arithmetic. The aggregate words/s of 2 processes is the most any worker
pool could reach on this machine.

It also checks that the outputs are unchanged: entity F1 on CoNLL-2003 valid.txt for BLIS and numpy
gemm (and identical predicted spans), and identical entities on the SciFact texts.

    /tmp/ragkiln-cpu timing env HF_HUB_OFFLINE=1 .venv/bin/python bench/ner_speed.py
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.machine import machine  # noqa: E402
from bench.ner import load_scifact  # noqa: E402  (the corpus sample 17,213 words/s was measured on)

DATA = Path(os.environ.get("RAGKILN_DATASETS", ROOT.parent / "shared" / "datasets"))
RESULTS = ROOT / "bench" / "results" / "ner-speed.json"
CALL = 256  # texts per enrich call, as ingest hands them over
BEFORE_WPS_RECORDED = 17212.9  # bench/results/ner.json enrich.ragkiln_enricher_ner_only_2proc (2026-11-22)


def chunk(text: str, words: int, overlap: int) -> list[tuple[int, int]]:
    """Chunk spans as the indexer cuts them (its pure packer), with words standing in for tokens."""
    from indexer.chunking import chunk_spans, sentence_spans

    toks = [(m.start(), m.end()) for m in re.finditer(r"\S+", text)]
    spans = chunk_spans(sentence_spans(text), [s for s, _ in toks], [e for _, e in toks], words, overlap)
    return [(c.start, c.end) for c in spans]


def sample_texts(n: int) -> list[str]:
    """The demo corpus (samples/python-docs) cut into pieces of 1,200 characters: prose with code and markup."""
    out: list[str] = []
    for p in sorted((ROOT / "samples" / "python-docs").rglob("*.txt")):
        t = p.read_text(encoding="utf-8")
        out += [t[i:i + 1200] for i in range(0, len(t), 1200)]
    return out[:n]


def speed(args: argparse.Namespace) -> dict[str, Any]:
    from common.settings import NerConfig
    from ner.enrich import PipelineSpec, SpacyEnricher
    from ner.pipeline import resolve_model_name

    texts = load_scifact(args.docs) if args.corpus == "scifact" else sample_texts(args.docs)
    n_words = sum(len(t.split()) for t in texts)
    docs = [(t, chunk(t, args.chunk_words, args.overlap_words)) for t in texts]
    chunk_texts = [t[s:e] for t, spans in docs for s, e in spans]
    chunk_words = sum(len(c.split()) for c in chunk_texts)
    name = resolve_model_name("auto")
    enrichers = {
        "before": SpacyEnricher(spec=PipelineSpec("auto", gemm="blis"), n_process=2, batch_size=64),
        "after": SpacyEnricher(spec=PipelineSpec("auto", gemm="numpy"), n_process=2, batch_size=NerConfig().batch_size),
        "after_batch64": SpacyEnricher(spec=PipelineSpec("auto", gemm="numpy"), n_process=2, batch_size=64),
    }
    if args.diagnose:  # one process each, and smaller hand-over parts
        enrichers["before_1proc"] = SpacyEnricher(spec=PipelineSpec("auto", gemm="blis"), n_process=1)
        enrichers["after_1proc"] = SpacyEnricher(spec=PipelineSpec("auto", gemm="numpy"), n_process=1)
        enrichers["after_parts16"] = SpacyEnricher(spec=PipelineSpec("auto", gemm="numpy"), n_process=2,
                                                   batch_size=64, parts_per_process=8)

    def by_calls(enricher: SpacyEnricher, items: list[str]) -> list[Any]:
        return [es for i in range(0, len(items), CALL) for es in enricher(items[i:i + CALL])]

    def by_doc_calls(enricher: SpacyEnricher, items: list[Any]) -> list[Any]:  # ~256 chunks a call
        per = max(1, CALL * len(docs) // max(1, len(chunk_texts)))
        return [es for i in range(0, len(items), per) for es in enricher.enrich_documents(items[i:i + per])]

    # Each round runs every variant over all the texts, one variant after another: a pool keeps its models in
    # cache through a pass, as in an ingest (variants alternating call by call cost each other ~20%).
    variants = {
        "before": lambda: by_calls(enrichers["before"], texts),
        "after": lambda: by_calls(enrichers["after"], texts),
        "after_batch64": lambda: by_calls(enrichers["after_batch64"], texts),
        "after_chunks": lambda: by_calls(enrichers["after"], chunk_texts),
        "after_documents": lambda: by_doc_calls(enrichers["after"], docs),
    }
    for extra in ("before_1proc", "after_1proc", "after_parts16"):
        if extra in enrichers:
            variants[extra] = (lambda e: lambda: by_calls(e, texts))(enrichers[extra])
    for e in enrichers.values():
        by_calls(e, texts[:600])  # warm-up: starts the pools, loads the models
    secs = dict.fromkeys(variants, 0.0)
    outs: dict[str, list[Any]] = {}
    load_before = os.getloadavg()
    rounds = args.rounds
    for _ in range(rounds):
        for v, run in variants.items():
            t = time.perf_counter()
            outs[v] = run()
            secs[v] += time.perf_counter() - t
    for e in enrichers.values():
        e.close()
    res: dict[str, Any] = {
        "docs": len(texts), "words": n_words, "chunks": len(chunk_texts), "chunk_words": chunk_words,
        "chunking": f"sentences packed to {args.chunk_words} words, {args.overlap_words} shared",
        "model": name, "rounds": rounds, "texts_per_call": CALL, "load_average_before": load_before,
    }
    for v in variants:
        wps = rounds * n_words / secs[v]
        n_ents = sum(len(x) for x in outs[v]) if v != "after_documents" else sum(len(c) for d in outs[v] for c in d)
        res[v] = {"seconds_per_pass": round(secs[v] / rounds, 2), "words_per_s": round(wps, 1), "entities": n_ents}
        print(f"  {v}: {wps:.0f} words/s", file=sys.stderr)
    res["speedup_after_vs_before"] = round(secs["before"] / secs["after"], 3)
    res["speedup_documents_vs_chunks"] = round(secs["after_chunks"] / secs["after_documents"], 3)
    res["same_entities_before_after"] = outs["before"] == outs["after"]
    doc_sets = [{(e.doc_start, e.doc_end, e.label) for c in d for e in c} for d in outs["after_documents"]]
    per = iter(outs["after_chunks"])
    chunk_sets = []
    for (_t, spans) in docs:
        found: set[tuple[int, int, str]] = set()
        for (s, _e) in spans:
            found |= {(s + e.start, s + e.end, e.label) for e in next(per)}
        chunk_sets.append(found)
    same = sum(len(a & b) for a, b in zip(doc_sets, chunk_sets))
    res["documents_vs_chunks_entities"] = {
        "documents": sum(map(len, doc_sets)), "chunks": sum(map(len, chunk_sets)), "in_both": same,
        "note": "distinct (doc offset, label) entities; differences come from context across chunk edges"}
    res["load_average_at_end"] = os.getloadavg()
    res["target_words_per_s"] = 25000
    res["before_recorded_words_per_s"] = BEFORE_WPS_RECORDED
    return res


def _ceiling_worker(kind: str, docs: int, barrier: Any, out: Any) -> None:
    import numpy as np

    from ner.enrich import one_blas_thread

    limits = one_blas_thread()  # noqa: F841 - after numpy has loaded OpenBLAS, or it limits nothing
    if kind == "gemm":
        a = np.random.default_rng(0).random((256, 256), dtype=np.float32)
        barrier.wait()
        t, n = time.perf_counter(), 0
        while time.perf_counter() - t < 8:
            a @ a
            n += 1
        out.put(n * 2 * 256**3 / (time.perf_counter() - t) / 1e9)
        return
    from ner.pipeline import load_pipeline

    texts = load_scifact(docs)
    nlp = load_pipeline("auto", gemm="numpy")
    list(nlp.pipe(texts[:200], batch_size=64))
    barrier.wait()
    t = time.perf_counter()
    list(nlp.pipe(texts, batch_size=64))
    out.put(sum(len(x.split()) for x in texts) / (time.perf_counter() - t))


def ceiling(args: argparse.Namespace) -> dict[str, Any]:
    """Per-process and aggregate rates of 1 and 2 independent processes (spaCy NER, and a GEMM control)."""
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    res: dict[str, Any] = {"docs": args.docs, "load_average_before": os.getloadavg(),
                           "units": {"ner": "words/s", "gemm": "GFLOP/s (256x256 float32, 8 s)"}}
    for kind in ("ner", "gemm"):
        row: dict[str, Any] = {}
        for n in (1, 2):
            barrier, out = ctx.Barrier(n), ctx.Queue()
            procs = [ctx.Process(target=_ceiling_worker, args=(kind, args.docs, barrier, out)) for _ in range(n)]
            for p in procs:
                p.start()
            rates = sorted(out.get() for _ in procs)
            for p in procs:
                p.join()
            row[f"{n}_process"] = {"each": [round(r, 1) for r in rates], "total": round(sum(rates), 1)}
        row["scaling_2_vs_1"] = round(row["2_process"]["total"] / row["1_process"]["total"], 3)
        res[kind] = row
        print(f"  {kind}: {row}", file=sys.stderr)
    res["load_average_at_end"] = os.getloadavg()
    return res


def quality(args: argparse.Namespace) -> dict[str, Any]:
    """CoNLL valid F1 with each gemm backend; the predicted spans must be identical."""
    from ner.evaluate import evaluate_examples, predict_spans
    from ner.pipeline import load_pipeline
    from ner.readers import read_examples

    examples = read_examples(DATA / "conll2003" / "valid.txt")
    out: dict[str, Any] = {"data": "conll2003/valid.txt"}
    for model in ["auto", *args.also_model]:
        row: dict[str, Any] = {}
        preds = {}
        for gemm in ("blis", "numpy"):
            nlp = load_pipeline(model, gemm=gemm)  # type: ignore[arg-type]
            r = evaluate_examples(nlp, examples)
            row[gemm] = {k: round(v, 4) if isinstance(v, float) else v for k, v in r["overall"].items()}
            preds[gemm] = predict_spans(nlp, examples)
        row["identical_predictions"] = preds["blis"] == preds["numpy"]
        row["label_map"] = "OntoNotes->CoNLL default" if model == "auto" else None
        out[model] = row
        print(f"  {model}: F1 blis {row['blis']['f1']} numpy {row['numpy']['f1']} "
              f"identical {row['identical_predictions']}", file=sys.stderr)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--docs", type=int, default=1500)
    ap.add_argument("--corpus", choices=["scifact", "sample"], default="scifact",
                    help="speed part: SciFact abstracts, or the demo corpus in 1,200-character pieces")
    ap.add_argument("--rounds", type=int, default=3, help="passes over all texts per variant")
    ap.add_argument("--chunk-words", type=int, default=190)
    ap.add_argument("--overlap-words", type=int, default=24)
    ap.add_argument("--also-model", nargs="*", default=[], help="trained model dirs to check for unchanged F1")
    ap.add_argument("--parts", default="speed,quality")
    ap.add_argument("--diagnose", action="store_true", help="also 1-process variants and smaller hand-over parts")
    ap.add_argument("--section", default="speed", help="store the speed part under this key")
    ap.add_argument("--out", type=Path, default=RESULTS, help="result file (one per CPU model: lscpu is kept once)")
    args = ap.parse_args()
    out: Path = args.out
    results: dict[str, Any] = json.loads(out.read_text()) if out.exists() else {}
    for part in args.parts.split(","):
        section = {"speed": speed, "quality": quality, "ceiling": ceiling}[part](args)
        section["measured_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        section["cpu_count"] = os.cpu_count()
        results[args.section if part == "speed" else part] = section
        results["lscpu"] = machine()
        results["command"] = "/tmp/ragkiln-cpu timing env HF_HUB_OFFLINE=1 .venv/bin/python bench/ner_speed.py " \
                             + " ".join(sys.argv[1:])
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps({k: v for k, v in results.items() if k != "lscpu"}, indent=2))


if __name__ == "__main__":
    main()
