"""Issue 28 item 3: does a bigger probe make the label-free gate's call less of a coin toss?

The gate (trainer/embedder/gate.py) judges on the probe queries BM25 alone misses. One wh-question per
sentence with four words each side of the answer gives few of them: 7 on SQuAD's first 300 paragraphs, 23-34
elsewhere, and its call there is noise. This study re-judges every corpus x model case whose models are still
on disk with probes that ask more (declared before scoring, in RULES): every span of a sentence instead of one,
a tighter window (two words each side, which BM25 misses more often), more queries per kind. Held-out documents
and distractors are each run's own, so only the queries change.

The choice is made on half A's truths (hybrid nDCG@10 as served at least the base's: serve the adapted model),
by right calls, ties to the current rule; half B is counted after. The cases are not independent: the fill-1,
fill-4 and 3-epoch runs share their corpora, base and most of their training.

Run: HF_HUB_OFFLINE=1 .venv/bin/python bench/gate_probe_study.py  (-> bench/results/gate-probe-study.json)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from common.settings import DEFAULT_EMBEDDER  # noqa: E402

WORK = ROOT / "bench" / "work"
RESULTS = ROOT / "bench" / "results"
# rule -> build_probe keywords; "current" is the gate as it stands
RULES: dict[str, dict[str, Any]] = {
    "current": {"kinds": ("title", "keywords", "question")},
    "every-span": {"kinds": ("title", "keywords", "question"), "every_span": True, "max_queries": 1000},
    "every-span-w2": {"kinds": ("title", "keywords", "question2"), "every_span": True, "max_queries": 1000},
    "every-span-w4+w2": {"kinds": ("title", "keywords", "question", "question2"), "every_span": True, "max_queries": 1000},
}
# (case, workspace, trainer run, result file, how its truths are recorded)
SOURCES = [
    ("squad-300 fill1", "fill1/squad", "embedder-squad-default", "embedder-fill-1-served.json", "gate:squad"),
    ("scifact-mini fill1", "fill1/scifact-mini", "embedder-scifact-mini-default", "embedder-fill-1-served.json", "gate:scifact-mini"),
    ("squad-300 fill4", "fill4/squad", "embedder-squad-default", "embedder-fill-4.json", "gate:squad"),
    ("scifact-mini fill4", "fill4/scifact-mini", "embedder-scifact-mini-default", "embedder-fill-4.json", "gate:scifact-mini"),
    ("squad-300 epochs3", "ep3/squad", "embedder-squad-default", "embedder-epochs-3.json", "gate:squad"),
    ("scifact-mini epochs3", "ep3/scifact-mini", "embedder-scifact-mini-default", "embedder-epochs-3.json", "gate:scifact-mini"),
    ("squad-2067", "squad-full/squad", "embedder-squad-default", "embedder-squad-full.json", "gate:squad"),
    ("scifact 88 steps", "emb28-zen4/scifact", "embedder-scifact-default", "embedder-choose-zen4.json", "choose"),
    ("scifact 64 steps", "emb28-zen4b/scifact", "embedder-scifact-default", "embedder-choose-zen4-planfix.json", "choose"),
]


def truths(result: dict[str, Any], how: str) -> dict[str, dict[str, Any]]:
    """model key -> {"model": path, "A": hybrid gain, "B": hybrid gain} from a recorded result file."""
    if how == "choose":  # bench/embedder.py's choose phase: A = dev queries, B = fit queries
        v = result["choose"]["variants"]
        base = v.pop("base")
        return {k: {"model": m["model"], **{h: m[p]["hybrid"]["ndcg@10"] - base[p]["hybrid"]["ndcg@10"]
                                             for h, p in (("A", "dev"), ("B", "fit"))}} for k, m in v.items()}
    case = result["cases"][how.split(":", 1)[1]]
    return {k: {"model": m["model"], **{h: m[h]["hybrid"]["ndcg@10"] - case["base"][h]["hybrid"]["ndcg@10"]
                                        for h in ("A", "B")}}
            for k, m in case.items() if k.startswith(("wise-", "over-"))}


def cached(encode):  # type: ignore[no-untyped-def]
    """`encode` remembering each text's vector: the rules share their corpus and many queries."""
    import numpy as np

    memo: dict[str, Any] = {}

    def run(texts):  # type: ignore[no-untyped-def]
        todo = list(dict.fromkeys(t for t in texts if t not in memo))
        if todo:
            memo.update(zip(todo, encode(todo)))
        return np.stack([memo[t] for t in texts])

    return run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=RESULTS / "gate-probe-study.json")
    a = ap.parse_args()
    from embedder_gate import rebuild_probe

    from bench.machine import machine
    from common.settings import load_settings
    from trainer.embedder.gate import run_probe, served_mode, st_encoder

    served = served_mode(load_settings({}).indexer)
    out: dict[str, Any] = {"command": " ".join(["python"] + sys.argv), "rules": RULES, "served": served,
                           "machine": machine(),
                           "choice_rule": "the rule with most right calls on half A (truth: hybrid gain >= 0); "
                                          "ties keep 'current'; half B counted after", "cases": []}
    for name, home, run, result_file, how in SOURCES:
        home_dir, run_dir = WORK / home, WORK / home / "runs" / run
        if not run_dir.is_dir():
            print(f"skip {name}: {run_dir} is gone")
            continue
        models = truths(json.loads((RESULTS / result_file).read_text()), how)
        paths = {k: str(ROOT / m["model"]) if not Path(m["model"]).is_absolute() else m["model"] for k, m in models.items()}
        # one caching encoder per model of this corpus: the rules share their corpus and many queries
        encoders = {p: cached(st_encoder(p)) for p in (DEFAULT_EMBEDDER, *paths.values())}
        for rule, options in RULES.items():
            t0 = time.perf_counter()
            probe = rebuild_probe(home_dir, run_dir, **options)
            for key, m in models.items():
                rec = run_probe(probe, DEFAULT_EMBEDDER, paths[key], encoder=encoders.__getitem__, **served)
                call = {k: rec[k] for k in ("replace", "gain", "se", "bm25_misses")}
                out["cases"].append({"case": name, "model": key, "rule": rule, **call,
                                     "queries": {k: len(v) for k, v in probe.queries.items()},
                                     "gain_A": round(m["A"], 4), "gain_B": round(m["B"], 4)})
                print(json.dumps(out["cases"][-1]), flush=True)
            out["cases"][-1]["seconds_rule"] = round(time.perf_counter() - t0, 1)
        a.out.write_text(json.dumps(out, indent=2))
    out["summary"] = summarise(out["cases"])
    a.out.write_text(json.dumps(out, indent=2))
    print(json.dumps(out["summary"], indent=2))


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Right calls per rule and half, and the rule half A chooses."""
    right: dict[str, dict[str, int]] = {}
    n: dict[str, int] = {}
    for r in rows:
        for h in ("A", "B"):
            right.setdefault(r["rule"], {"A": 0, "B": 0})[h] += int(r["replace"] == (r[f"gain_{h}"] >= 0))
        n[r["rule"]] = n.get(r["rule"], 0) + 1
    best = max(RULES, key=lambda k: (right.get(k, {"A": -1})["A"], k == "current"))
    return {"right_calls": {k: {h: f"{v[h]}/{n[k]}" for h in v} for k, v in right.items()}, "chosen_on_A": best}


if __name__ == "__main__":
    main()
