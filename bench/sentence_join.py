"""The indexer's sentences rejoined where its splitter cut inside one (`indexer.chunking._goes_on`), on and off.

The splitter cuts after every full stop, so "(e.g. custom commands)", "Lyndon B. Johnson" and "et al. found" were
two sentences each: a chunk could end there, the sentence vector held half a sentence, and an answer cited
"(e.g.". The rule rejoins a cut before a lower-case word, after e.g./i.e./cf./vs./viz., or inside a name's
initials (never across a blank line). It changes chunks, sentence vectors, pair mining and citations; this bench
measures what it does to search, as served (defaults otherwise, NER off: it does not touch ranking). The "on"
run reuses the "off" run's int8 embedder export: OpenVINO calibrates on corpus chunks, and a calibration on other
chunks moved SQuAD-300's dense nDCG@10 by 0.005 with one chunk of 454 different.

Rule, declared before any score: the cases are chunk_study.py's dev cases (SciFact with every `qrels/train.tsv`
query, SQuAD-300 half A, the small SciFact's half A, the sample corpus with our questions) and CMake's help with
the 30 questions of bench/data/cmake_questions.jsonl. The rule is kept (it makes the text right) unless it loses
more than 0.003 mean hybrid nDCG@10 over the cases or more than 0.01 on any one case. No test split is read.

    HF_HUB_OFFLINE=1 /tmp/ragkiln-cpu heavy .venv/bin/python bench/sentence_join.py
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path
from typing import Any

import chunk_study as cs  # sets HF_HUB_OFFLINE and the import path
from embedder_gate import CMAKE_HELP, page_labels

from common.settings import load_settings
from machine import machine  # bench/machine.py

ROOT = cs.ROOT
WORK = ROOT / "bench" / "work" / "sentence-join"
RULE = ("Declared before any score: kept unless it loses more than 0.003 mean hybrid nDCG@10 over the cases "
        "(each counts once) or more than 0.01 hybrid on any case. Dense and BM25 are reported, not chosen on.")


def cases() -> dict[str, tuple[Path, Any]]:
    out = cs.corpora("dev")

    def cmake(s):  # type: ignore[no-untyped-def]
        q, qrels = page_labels(ROOT / "bench" / "data" / "cmake_questions.jsonl")
        return q, {**qrels["A"], **qrels["B"]}

    out["cmake"] = (CMAKE_HELP, cmake)
    return dict(sorted(out.items(), key=lambda kv: kv[0] == "scifact"))  # the long one last


def verdict(rows: dict[str, dict[str, Any]]) -> dict[str, Any]:
    names = sorted(c for c in rows if {"off", "on"} <= set(rows[c]))
    d = {c: round(rows[c]["on"]["hybrid"]["ndcg@10"] - rows[c]["off"]["hybrid"]["ndcg@10"], 4) for c in names}
    mean = round(sum(d.values()) / len(d), 4) if d else 0.0
    return {"cases": names, "hybrid_delta": d, "mean_hybrid_delta": mean,
            "kept": bool(d) and mean >= -0.003 and min(d.values()) >= -0.01}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", default="", help="comma-separated cases (default: all)")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "sentence-join.json")
    a = ap.parse_args()
    from indexer import chunking

    res: dict[str, Any] = json.loads(a.out.read_text()) if a.out.exists() else {}
    res["commands"] = [*res.get("commands", []), " ".join(["python"] + sys.argv)]
    res.update({"rule": RULE, "machine": machine()})
    rows = res.setdefault("rows", {})
    only = {c for c in a.only.split(",") if c}
    goes_on = chunking._goes_on
    for name, (path, labels) in cases().items():
        if only and name not in only:
            continue
        for label in ("off", "on"):
            if label in rows.get(name, {}):
                continue
            chunking._goes_on = goes_on if label == "on" else (lambda *_a: False)
            home = WORK / f"{name}-{label}"
            off_exports = WORK / f"{name}-off" / "models" / "exports"
            if label == "on" and not home.exists() and off_exports.is_dir():
                shutil.copytree(off_exports, home / "models" / "exports")  # the same int8 embedder both ways
            s = load_settings({"home": home, "ner": {"enabled": False}})
            rows.setdefault(name, {})[label] = cs.ingest_and_score(s, path, labels, f"{name} {label}")
            res["verdict"] = verdict(rows)
            a.out.write_text(json.dumps(res, indent=2))
    chunking._goes_on = goes_on


if __name__ == "__main__":
    main()
