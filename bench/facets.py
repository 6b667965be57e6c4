"""Entity facet quality: precision and recall of `ner.filters.entity_problem` against hand labels.

The labels (bench/data/facet_labels.jsonl) are 160 distinct (label, value) entities of the demo
workspace (samples/python-docs ingested with the default en_core_web_sm pipeline): the 80 most
mentioned ("top80", what facet panels show most) and 80 drawn at random from the rest (seed 0).
Each was labelled by hand, before looking at the rule's verdict, as informative (it names a
specific person, organisation, place, product, language, standard or format, or a named work,
whatever spaCy's label) or junk (numbers, dates and amounts, code and markup, common words and
section headings tagged as names, extraction glitches).

Precision: share of the facets shown that are informative; recall: share of the informative ones
shown. "show everything" is the old behaviour. The rule is scored with and without its corpus-casing
signal (the "common words" test).

    .venv/bin/ragkiln --workspace /tmp/facet-ws ingest samples/python-docs
    HF_HUB_OFFLINE=1 .venv/bin/python bench/facets.py --workspace /tmp/facet-ws
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

LABELS = ROOT / "bench" / "data" / "facet_labels.jsonl"
RESULTS = ROOT / "bench" / "results" / "facets.json"


def score(gold: list[bool], shown: list[bool]) -> dict[str, Any]:
    kept = [g for g, s in zip(gold, shown) if s]
    informative = sum(gold)
    tp = sum(kept)
    return {"shown": len(kept), "informative_shown": tp,
            "precision": round(tp / len(kept), 4) if kept else None,
            "recall": round(tp / informative, 4) if informative else None}


def evaluate(rows: dict[str, list[Any]], labels: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for sample in ("all", "top80", "random"):
        part = [x for x in labels if sample == "all" or x["sample"] == sample]
        gold = [x["informative"] for x in part]
        res = {"n": len(part), "informative": sum(gold), "show everything": score(gold, [True] * len(part))}
        for name, verdicts in rows.items():
            res[name] = score(gold, [verdicts[(x["label"], x["value"])] is None for x in part])
        out[sample] = res
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workspace", type=Path, default=Path("/tmp/facet-ws"))
    ap.add_argument("--labels", type=Path, default=LABELS)
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()

    from common.settings import load_settings
    from indexer.workspace import Workspace
    from ner.filters import corpus_entity_rows

    store = Workspace.open(load_settings({"home": args.workspace})).store
    labels = [json.loads(line) for line in args.labels.read_text(encoding="utf-8").splitlines() if line.strip()]
    full = corpus_entity_rows(store)
    variants = {"rule": {(r.label, r.value): r.problem for r in full},
                "rule without corpus casing": {(r.label, r.value): r.problem for r in corpus_entity_rows(store, use_case=False)}}
    # Entities the labels name but this workspace no longer extracts (the ingest changed, e.g. markup is
    # rendered now) are reported and left out of the scores, for both the rule and the baseline.
    missing = [x for x in labels if (x["label"], x["value"]) not in variants["rule"]]
    labels = [x for x in labels if (x["label"], x["value"]) in variants["rule"]]
    if not labels:
        raise SystemExit(f"none of the labelled entities is in {args.workspace}")
    verdict = variants["rule"]
    result = {
        "workspace": str(args.workspace),
        "corpus": {"entities": len(full), "shown by the rule": sum(r.problem is None for r in full),
                   "dropped by reason": dict(Counter(r.problem for r in full if r.problem).most_common())},
        "labels": str(args.labels.relative_to(ROOT) if args.labels.is_relative_to(ROOT) else args.labels),
        "labelled_not_extracted": {"count": len(missing), "informative": sum(x["informative"] for x in missing),
                                   "entities": [f"{x['label']}:{x['value']}" for x in missing]},
        "scores": evaluate(variants, labels),
        "errors": {
            "junk shown": [f"{x['label']}:{x['value']}" for x in labels if not x["informative"] and verdict[(x["label"], x["value"])] is None],
            "informative dropped": [f"{x['label']}:{x['value']} ({verdict[(x['label'], x['value'])]})" for x in labels
                                    if x["informative"] and verdict[(x["label"], x["value"])] is not None],
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(json.dumps(result["scores"]["all"], indent=1))
    print(json.dumps(result["errors"], indent=1, ensure_ascii=False))


if __name__ == "__main__":
    main()
