"""Issue 28 item 3, development of the label-free gate: which probe signal tracks the truth on half A?

For each case of bench/results/embedder-gate.json (corpus x adapted model), the probe is rebuilt over the
trainer's held-out documents (its run's dev.json) with every candidate query kind, and each kind is scored
dense-only and fused with BM25 (as search serves), per query, for the base and the adapted model. The
output lists, per case, each kind's mean gain, its standard error and half A's labelled gains (the
development truth). Each mode is also pooled over the gate's kinds, once over all queries and once over the
queries BM25 alone does not answer at rank 1 (`hard`: where the embedder can still move a hybrid ranking; a
candidate for desaturating the hybrid probe). Half B is never read here: bench/embedder_gate.py counts the
chosen rule's calls on it.

Run (heavy): HF_HUB_OFFLINE=1 .venv/bin/python bench/gate_study.py
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from common.jsonlog import setup_logging  # noqa: E402
from common.settings import DEFAULT_EMBEDDER, load_settings  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", type=Path, default=ROOT / "bench" / "work" / "emb28")
    ap.add_argument("--gate", type=Path, default=ROOT / "bench" / "results" / "embedder-gate.json")
    ap.add_argument("--cases", default="squad,scifact-mini")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "gate-study.json")
    a = ap.parse_args()
    setup_logging("INFO")
    from embedder_gate import rebuild_probe

    import numpy as np

    from trainer.embedder.gate import (KINDS, QUESTION_KINDS, bm25_misses, gate_decision, lexical_scores,
                                       probe_scores, served_mode, st_encoder)

    served = served_mode(load_settings({}).indexer)  # hybrid as the defaults serve it

    gate = json.loads(a.gate.read_text())["cases"]
    results: dict[str, Any] = {"command": " ".join(["python"] + sys.argv), "cases": {}}
    for name in a.cases.split(","):
        rec = gate[name]
        run = Path(rec["run"]["model"]).name if "run" in rec else f"{name}-default"  # the choose run: no "run" record
        probe = rebuild_probe(a.work / name, a.work / name / "runs" / f"embedder-{run}",
                              kinds=tuple(dict.fromkeys((*KINDS, *QUESTION_KINDS))))  # every candidate kind
        lexical = lexical_scores(probe, **served["bm25"])
        models = {"base": DEFAULT_EMBEDDER, **{k: v["model"] for k, v in rec.items() if k.startswith(("wise-", "over-"))}}
        scores = {key: probe_scores(st_encoder(path), probe, lexical, served["dense_weight"], **served["fusion"])
                  for key, path in models.items()}  # {mode: {kind: [q]}}
        base = scores["base"]
        hard = bm25_misses(probe, lexical)  # where the embedder can still change a hybrid ranking
        out: dict[str, Any] = {"queries": {k: len(v) for k, v in probe.queries.items()},
                               "examples": {k: [q for q, _ in v[:5]] for k, v in probe.queries.items()},
                               "base": {kind: {m: round(float(base[m][kind].mean()), 4) for m in base}
                                        for kind in probe.queries},
                               "bm25_hard": {kind: int(h.sum()) for kind, h in hard.items()}}
        for key in models:
            if key == "base":
                continue
            gains = {}
            for kind in probe.queries:
                for mode in ("dense", "hybrid"):
                    for suffix, m in (("", slice(None)), ("/hard", hard[kind])):
                        _, gain, se = gate_decision({kind: base[mode][kind][m]}, {kind: scores[key][mode][kind][m]})
                        gains[f"{kind}/{mode}{suffix}"] = {"gain": gain, "se": se}
            pooled = {}
            for mode in ("dense", "hybrid"):
                for sub in ("all", "hard"):
                    pick = {k: (np.ones_like(hard[k]) if sub == "all" else hard[k])
                            for k in KINDS if k in probe.queries}
                    _, gain, se = gate_decision({k: base[mode][k][m] for k, m in pick.items()},
                                                {k: scores[key][mode][k][m] for k, m in pick.items()})
                    n = int(sum(m.sum() for m in pick.values()))
                    pooled[f"{mode}/{sub}"] = {"gain": gain, "se": se, "queries": n}
            truth_a = {m: round(rec[key]["A"][m]["ndcg@10"] - rec["base"]["A"][m]["ndcg@10"], 4) for m in ("dense", "hybrid")}
            out[key] = {"probe": gains, "pooled": pooled, "truth_A": truth_a}
        results["cases"][name] = out
        a.out.write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
