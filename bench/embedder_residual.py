"""Issue 28: the residual-training study's two declared decisions, from the runs' recorded scores.

1. Recipe: does `embedder_train.bm25_residual` become the default? (rule in embedder-residual-rule.json:
   half A, served model WiSE-FT 0.3, mean over SQuAD-300, the small SciFact and the demo corpus: hybrid
   nDCG@10 up by >= 0.002 on the default recipe's and the mean of dense and hybrid not lower.)
2. Gate: does R1 (replace only on a probe gain beyond 1.645 standard errors over >= 20 BM25-missed queries)
   replace R0 (any positive gain)? More right calls on the fresh cases of both runs, and no fewer over every
   case recorded before. Truth: half B's hybrid nDCG@10 not below the base's. The default recipe on all 2,067
   SQuAD dev paragraphs, run after the decision, is tallied apart ("later").

Reads the runs' files (bench/embedder_gate.py) and writes bench/results/embedder-residual.json:
  .venv/bin/python bench/embedder_residual.py
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from trainer.embedder.gate import beyond  # noqa: E402

RESULTS = ROOT / "bench" / "results"
RUNS = {"default": "embedder-residual-base.json", "residual": "embedder-residual-clear.json"}
EARLIER = ("embedder-gate.json", "embedder-squad-full.json", "embedder-fill-1-served.json", "embedder-fill-4.json",
           "embedder-epochs-3.json", "embedder-gate-128.json", "embedder-gate-awscli.json",
           "embedder-gate-awscli2.json")
LATER = ("embedder-squad-full-sentences.json",)  # default recipe on all SQuAD dev paragraphs, run after: counted apart
CORPORA = ("squad", "scifact-mini", "demo")


def recipe_decision(runs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    per: dict[str, dict[str, Any]] = {}
    for name, res in runs.items():
        scores = {c: res["cases"][c]["wise-0.3"]["A"] for c in CORPORA}
        hybrid = sum(s["hybrid"]["ndcg@10"] for s in scores.values()) / len(CORPORA)
        dense = sum(s["dense"]["ndcg@10"] for s in scores.values()) / len(CORPORA)
        per[name] = {"A_wise-0.3": {c: {m: s[m]["ndcg@10"] for m in ("dense", "hybrid")} for c, s in scores.items()},
                     "mean_hybrid": round(hybrid, 4), "mean_dense": round(dense, 4),
                     "mean_dense_hybrid": round((hybrid + dense) / 2, 4)}
    gain = per["residual"]["mean_hybrid"] - per["default"]["mean_hybrid"]
    adopt = gain >= 0.002 and per["residual"]["mean_dense_hybrid"] >= per["default"]["mean_dense_hybrid"]
    return {"per_recipe": per, "hybrid_gain": round(gain, 4), "adopt": adopt}


def gate_cases(res: dict[str, Any], label: str) -> list[dict[str, Any]]:
    rows = []
    for r in res.get("summary", {}).get("rows", []):
        if r["probe"].get("rule") != "bm25-misses":
            continue
        should = r["should_replace"]["served"]
        rows.append({"run": label, "corpus": r["corpus"], "model": r["model"], "B_hybrid_gain": r["gain_B"]["hybrid"],
                     "probe_gain": r["probe"].get("gain"), "se": r["probe"].get("se"),
                     "bm25_misses": r["probe"].get("bm25_misses"), "should_replace": should,
                     # R0 is the recorded call; R1 the gate's own test with a 1.645 SE margin (a probe with too
                     # few missed queries records no gain, so both keep)
                     "R0": bool(r["probe"]["replace"]), "R1": beyond(r["probe"].get("gain"), r["probe"].get("se"), 1.645)})
    return rows


def tally(rows: list[dict[str, Any]]) -> dict[str, str]:
    n = len(rows)
    out = {rule: f"{sum(r[rule] == r['should_replace'] for r in rows)}/{n}" for rule in ("R0", "R1")}
    out["always keep"] = f"{sum(not r['should_replace'] for r in rows)}/{n}"
    beyond = [r for r in rows if abs(r["B_hybrid_gain"]) > 0.003]
    out["R0, truth beyond ±0.003"] = f"{sum(r['R0'] == r['should_replace'] for r in beyond)}/{len(beyond)}"
    return out


def main() -> None:
    runs = {k: json.loads((RESULTS / f).read_text()) for k, f in RUNS.items()}
    fresh = [row for k, res in runs.items() for row in gate_cases(res, k)]
    earlier = [row for f in EARLIER for row in gate_cases(json.loads((RESULTS / f).read_text()), f)]
    later = [row for f in LATER for row in gate_cases(json.loads((RESULTS / f).read_text()), f)]
    t_fresh, t_earlier = tally(fresh), tally(earlier)

    def right(t: dict[str, str], rule: str) -> int:
        return int(t[rule].split("/")[0])

    r1_wins = right(t_fresh, "R1") > right(t_fresh, "R0") and right(t_earlier, "R1") >= right(t_earlier, "R0")
    out = {"command": ".venv/bin/python bench/embedder_residual.py",
           "rules": json.loads((RESULTS / "embedder-residual-rule.json").read_text()),
           "machine": runs["default"].get("machine"),
           "recipe": recipe_decision(runs),
           "gate": {"fresh": t_fresh, "earlier": t_earlier, "adopt_R1": r1_wins, "later": tally(later),
                    "fresh_cases": fresh, "later_cases": later}}
    (RESULTS / "embedder-residual.json").write_text(json.dumps(out, indent=2))
    print(json.dumps({"recipe": out["recipe"], "gate": {k: v for k, v in out["gate"].items() if not k.endswith("_cases")}},
                     indent=2))


if __name__ == "__main__":
    main()
