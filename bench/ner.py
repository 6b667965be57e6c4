"""NER benchmark: enrichment speed, pretrained and trained F1 on CoNLL-2003 valid, filtered search cost.

Parts (all by default, or pick with --parts):
  enrich      words/s on SciFact abstracts: the issue's baseline (tok2vec+ner, one process,
              nlp.pipe(batch_size=64)) against ragkiln's enricher (ner only, n_process workers),
              fed 256 texts per call as ingest does; ratios are against the baseline of this run.
  pretrained  entity F1 of the default pipeline on valid.txt through the OntoNotes->CoNLL map.
  train       runs `ragkiln ner train` (subprocess, timed) on train.txt minus its last 1000 sentences,
              with those 1000 as the dev set that picks the best epoch, then scores valid.txt
              (never seen in training or model selection). --train-args passes extra CLI flags.
  trained     scores an existing model directory (--model) on valid.txt.
  filter      latency of entity-filtered vs unfiltered hybrid search (k=10) on a SciFact workspace.

Results are merged into bench/results/ner.json (each part replaces its own section).

    HF_HUB_OFFLINE=1 flock /tmp/ragkiln-heavy.lock nice -n 5 .venv/bin/python bench/ner.py --parts enrich,pretrained
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DATA = Path(os.environ.get("RAGKILN_DATASETS", ROOT.parent / "shared" / "datasets"))
RESULTS = ROOT / "bench" / "results" / "ner.json"


def load_scifact(n_docs: int) -> list[str]:
    texts = []
    with open(DATA / "scifact" / "corpus.jsonl", encoding="utf-8") as f:
        for line in f:
            texts.append(json.loads(line)["text"])
            if len(texts) >= n_docs:
                break
    return texts


def bench_enrich(args: argparse.Namespace) -> dict[str, Any]:
    """The variants run in interleaved rounds so that load from other processes hits them alike."""
    import spacy

    from common.settings import NerConfig
    from ner.enrich import SpacyEnricher
    from ner.pipeline import resolve_model_name

    load_before = os.getloadavg()
    texts = load_scifact(args.docs)
    n_words = sum(len(t.split()) for t in texts)
    name = resolve_model_name("auto")
    print(f"enrich: {len(texts)} abstracts, {n_words} words, model {name}, {args.rounds} rounds", file=sys.stderr)

    # Baseline as measured in the issue: tok2vec + ner enabled, one process, nlp.pipe(batch_size=64).
    base_nlp = spacy.load(name, enable=["tok2vec", "ner"])
    enrichers = {n: SpacyEnricher.from_config(NerConfig(model="auto", n_process=n, batch_size=64)) for n in (1, 2)}

    def baseline(ts: list[str]) -> int:
        return sum(len(d.ents) for d in base_nlp.pipe(ts, batch_size=64))

    def by_ingest_calls(enricher: SpacyEnricher) -> Any:  # ingest hands over 256 chunks per call
        return lambda ts: sum(len(es) for i in range(0, len(ts), 256) for es in enricher(ts[i : i + 256]))

    variants = {
        "baseline_tok2vec_ner_1proc": baseline,
        "ragkiln_enricher_ner_only_1proc": by_ingest_calls(enrichers[1]),
        "ragkiln_enricher_ner_only_2proc": by_ingest_calls(enrichers[2]),
    }
    for run in variants.values():
        run(texts[:600])  # warm-up (starts the worker pool)
    secs = dict.fromkeys(variants, 0.0)
    ents = dict.fromkeys(variants, 0)
    size = -(-len(texts) // args.rounds)
    for r in range(args.rounds):
        part = texts[r * size : (r + 1) * size]
        for vname, run in variants.items():
            t = time.perf_counter()
            ents[vname] += run(part)
            secs[vname] += time.perf_counter() - t
    for e in enrichers.values():
        e.close()
    out: dict[str, Any] = {"docs": len(texts), "words": n_words, "model": name, "rounds": args.rounds,
                           "load_average_before": load_before}
    base_wps = n_words / secs["baseline_tok2vec_ner_1proc"]
    for vname in variants:
        wps = n_words / secs[vname]
        out[vname] = {"seconds": round(secs[vname], 2), "words_per_s": round(wps, 1), "entities": ents[vname],
                      "speedup_vs_baseline": round(wps / base_wps, 2)}
        print(f"  {vname}: {wps:.0f} words/s ({wps / base_wps:.2f}x)", file=sys.stderr)
    out["target_words_per_s"] = 13000
    out["issue_baseline_words_per_s_idle"] = 7700
    out["load_average_at_end"] = os.getloadavg()
    return out


def score_model(model: str) -> dict[str, Any]:
    from ner.evaluate import evaluate_file

    t = time.perf_counter()
    r = evaluate_file(DATA / "conll2003" / "valid.txt", model)
    return {
        "model": r["model"],
        "overall": {k: round(v, 4) if isinstance(v, float) else v for k, v in r["overall"].items()},
        "per_label": {lab: round(s["f1"], 4) for lab, s in r["per_label"].items()},
        "label_map": "OntoNotes->CoNLL default" if r["label_map"] else None,
        "eval_seconds": round(time.perf_counter() - t, 1),
    }


def bench_pretrained(_args: argparse.Namespace) -> dict[str, Any]:
    r = score_model("auto")
    print(f"pretrained {r['model']} on valid.txt: F1 {r['overall']['f1']:.4f}", file=sys.stderr)
    r["data"] = "conll2003/valid.txt"
    return r


def split_train(tmp: Path, n_dev: int) -> tuple[Path, Path]:
    text = (DATA / "conll2003" / "train.txt").read_text(encoding="utf-8").strip("\n")
    sents = [s for s in text.split("\n\n") if s.strip()]
    tr, dv = tmp / "train.txt", tmp / "dev.txt"
    tr.write_text("\n\n".join(sents[:-n_dev]) + "\n", encoding="utf-8")
    dv.write_text("\n\n".join(sents[-n_dev:]) + "\n", encoding="utf-8")
    return tr, dv


def bench_train(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmpd:
        tr, dv = split_train(Path(tmpd), 1000)
        out = Path(args.model or (Path(tempfile.gettempdir()) / "ragkiln-bench-ner-model"))
        cmd = [sys.executable, "-m", "cli", "ner", "train", "--train", str(tr), "--dev", str(dv),
               "--out", str(out), *args.train_args.split(), "--json"]
        print("running:", " ".join(cmd), file=sys.stderr)
        t = time.perf_counter()
        proc = subprocess.run(cmd, cwd=ROOT, stdout=subprocess.PIPE, text=True)
        wall = time.perf_counter() - t
    if proc.returncode != 0:
        raise SystemExit(f"ner train failed with exit code {proc.returncode}")
    train = json.loads(proc.stdout)
    r = score_model(str(out))
    r.update(trained_model_section(train, wall, " ".join(["ragkiln ner train", *args.train_args.split()])))
    print(f"trained model on valid.txt: F1 {r['overall']['f1']:.4f} after {wall / 60:.1f} min", file=sys.stderr)
    return r


def trained_model_section(train: dict[str, Any], wall: float | None, command: str) -> dict[str, Any]:
    return {
        "command": command,
        "train_data": "conll2003/train.txt minus its last 1000 sentences (dev for epoch selection)",
        "train_wall_minutes": round(wall / 60, 2) if wall is not None else None,
        "train_loop_minutes": round(train["seconds"] / 60, 2),
        "best_epoch": train["best_epoch"],
        "dev_f1_per_epoch": [e["dev_f1"] for e in train["epochs"]],
        "target_f1": 0.90,
        "target_minutes": 40,
    }


def bench_trained(args: argparse.Namespace) -> dict[str, Any]:
    if not args.model:
        raise SystemExit("--parts trained needs --model DIR")
    r = score_model(args.model)
    log = Path(args.model) / "training.jsonl"
    if log.exists():
        rows = [json.loads(line) for line in log.read_text().splitlines()]
        epochs = [x for x in rows if x["event"] == "epoch"]
        done = next(x for x in rows if x["event"] == "done")
        start = next(x for x in rows if x["event"] == "start")
        train = {"seconds": done["seconds"], "best_epoch": done["best_epoch"], "epochs": epochs}
        r.update(trained_model_section(train, None, args.command or "ragkiln ner train " + str(start["options"])))
    print(f"model {args.model} on valid.txt: F1 {r['overall']['f1']:.4f}", file=sys.stderr)
    return r


def bench_filter(args: argparse.Namespace) -> dict[str, Any]:
    from common.settings import load_settings
    from indexer import service
    from indexer.workspace import Workspace
    from ner.enrich import open_enricher
    from ner.filters import EntityFilter, search_with_entities

    ws_dir = Path(args.workspace)
    settings = load_settings({"home": ws_dir})
    if not (ws_dir / "docstore.sqlite").exists():
        corpus_dir = ws_dir.parent / f"{ws_dir.name}-corpus"
        corpus_dir.mkdir(parents=True, exist_ok=True)
        with open(DATA / "scifact" / "corpus.jsonl", encoding="utf-8") as src, open(
            corpus_dir / "corpus.jsonl", "w", encoding="utf-8"
        ) as dst:
            for i, line in enumerate(src):
                if i >= args.filter_docs:
                    break
                dst.write(line)
        with open_enricher(settings.ner) as enricher:
            service.ingest(settings, [corpus_dir], enricher=enricher, progress=True)
    ws = Workspace.open(settings)
    searcher = ws.searcher()
    counts = ws.store.entity_counts()
    top_label = max({lab for lab, _n, _c in counts}, key=lambda lab: sum(c for l2, _n, c in counts if l2 == lab))
    lab_v, norm_v, _c = counts[0]
    filters = {
        "none": [],
        f"{top_label}": [EntityFilter(top_label)],
        f"{lab_v}:{norm_v}": [EntityFilter(lab_v, norm_v)],
        f"{top_label} AND {lab_v}:{norm_v}": [EntityFilter(top_label), EntityFilter(lab_v, norm_v)],
    }
    queries = []
    with open(DATA / "scifact" / "queries.jsonl", encoding="utf-8") as f:
        for line in f:
            queries.append(json.loads(line)["text"])
            if len(queries) >= args.queries:
                break
    for q in queries[:5]:  # warm-up
        search_with_entities(searcher, ws.store, q, k=10)
    out: dict[str, Any] = {"chunks": searcher.size, "queries": len(queries), "k": 10, "mode": "hybrid"}
    lat: dict[str, list[float]] = {name: [] for name in filters}
    got: dict[str, list[int]] = {name: [] for name in filters}
    for q in queries:  # interleaved, so load changes hit every variant alike
        for name, fl in filters.items():
            t = time.perf_counter()
            r = search_with_entities(searcher, ws.store, q, k=10, mode="hybrid", filters=fl)
            lat[name].append(time.perf_counter() - t)
            got[name].append(len(r["hits"]))
    base = statistics.mean(lat["none"])
    for name in filters:
        out[name] = {
            "allowed_chunks": None if not filters[name] else len(
                set.intersection(*(ws.store.chunk_ids_with_entity(f.label, f.norm) for f in filters[name]))),
            "mean_ms": round(1000 * statistics.mean(lat[name]), 2),
            "median_ms": round(1000 * statistics.median(lat[name]), 2),
            "mean_hits": round(statistics.mean(got[name]), 2),
            "cost_vs_unfiltered": round(statistics.mean(lat[name]) / base, 2),
        }
        print(f"  filter {name}: {out[name]}", file=sys.stderr)
    out["target_cost_vs_unfiltered"] = 2.0
    return out


PARTS = {
    "enrich": bench_enrich,
    "pretrained": bench_pretrained,
    "train": bench_train,
    "trained": bench_trained,
    "filter": bench_filter,
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--parts", default="enrich,pretrained,filter", help=f"comma-separated: {', '.join(PARTS)}")
    ap.add_argument("--docs", type=int, default=1500, help="SciFact abstracts for the enrichment benchmark")
    ap.add_argument("--rounds", type=int, default=5, help="interleaved rounds of the enrichment variants")
    ap.add_argument("--model", help="model directory (output of the train part, input of the trained part)")
    ap.add_argument("--command", help="the command that trained --model, recorded in the results")
    ap.add_argument("--train-args", default="--base auto --max-epochs 15 --patience 3 --max-minutes 38")
    ap.add_argument("--tag", help="store results under PART_TAG (e.g. train_chars) instead of PART")
    ap.add_argument("--workspace", default=str(Path(tempfile.gettempdir()) / "ragkiln-bench-ner-ws"))
    ap.add_argument("--filter-docs", type=int, default=1000)
    ap.add_argument("--queries", type=int, default=100)
    args = ap.parse_args()
    if not (DATA / "conll2003").exists():
        raise SystemExit(f"datasets not found under {DATA}")
    results: dict[str, Any] = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    for part in args.parts.split(","):
        part = part.strip()
        if part not in PARTS:
            raise SystemExit(f"unknown part {part!r}; choose from {', '.join(PARTS)}")
        section = PARTS[part](args)
        section["measured_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        section["cpu_count"] = os.cpu_count()
        results[f"{part}_{args.tag}" if args.tag else part] = section
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
