"""The grounding rule with "how <kind>" weighed as a kind of answer, not a subject: what it changes.

reader.grounding leaves a question's function words out of the terms a passage must hold. "How often is the
forklift inspected?" against a manual that says "every Monday" and never "often" made "often" the question's
rarest term, missing from every passage, and the question was refused; the adjective after "how" (often,
long, old, far, ...) now counts as a function word (`asked_about`). The rule's fitted constants are not
refitted: this asks bench/refusal.py's questions of its two indexes and applies the served rule with the
question's terms weighed both ways.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/how_kind_refusal.py   # -> bench/results/how-kind-refusal.json
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench.refusal import K, WORK, _workspace, half_of, read_jsonl, squad_questions, squad_workspace  # noqa: E402
from common.settings import ServerConfig  # noqa: E402
from machine import machine  # noqa: E402
from reader.grounding import asked_about, relevant_hits  # noqa: E402

OUT = ROOT / "bench" / "results" / "how-kind-refusal.json"


class Raw:
    """The question's terms weighed as before: every word, the adjective after "how" included."""

    def __init__(self, bm25: Any, question: str) -> None:
        self.bm25, self.language, self.question = bm25, bm25.language, question

    def term_weights(self, _query: str) -> dict[str, float]:
        return self.bm25.term_weights(self.question)


def refusals(ws: Any, questions: list[str], gold: Callable[[int, Any], bool] | None = None) -> list[dict[str, Any]]:
    s = ws.searcher()
    cfg = ServerConfig()
    out = []
    for i, (q, v) in enumerate(zip(questions, s.encode_queries(questions))):
        hits = s.search(q, k=K, mode="hybrid", query_vec=v)
        now = relevant_hits(hits, q, s.gen.bm25, cfg)
        before = relevant_hits(hits, q, Raw(s.gen.bm25, q), cfg)
        out.append({"question": q, "how_kind": asked_about(q) != q, "refused_before": not before,
                    "refused_now": not now,
                    "gold_hit": None if gold is None else any(gold(i, h) for h in hits)})
    return out


def tally(rows: list[dict[str, Any]]) -> dict[str, Any]:
    def rate(rs: list[dict[str, Any]], key: str) -> str:
        return f"{sum(r[key] for r in rs)}/{len(rs)}"

    how = [r for r in rows if r["how_kind"]]
    return {"refused_before": rate(rows, "refused_before"), "refused_now": rate(rows, "refused_now"),
            "how_kind_questions": len(how), "how_kind_refused_before": rate(how, "refused_before"),
            "how_kind_refused_now": rate(how, "refused_now"),
            "changed": [{"question": r["question"], "refused_now": r["refused_now"]} for r in rows
                        if r["refused_before"] != r["refused_now"]][:40]}


def main() -> None:
    t0 = time.perf_counter()
    squad_ws = squad_workspace(WORK / "refusal-squad")
    demo_ws = _workspace(WORK / "refusal-demo", ROOT / "samples" / "python-docs")
    off = [r["question"] for r in read_jsonl(ROOT / "bench" / "data" / "offtopic_questions.jsonl")]
    py = read_jsonl(ROOT / "bench" / "data" / "python_docs_questions.jsonl")
    squad, _ = squad_questions()
    cases = {
        "off-topic, SQuAD index": refusals(squad_ws, off),
        "off-topic, demo corpus": refusals(demo_ws, off),
        "demo corpus questions": refusals(demo_ws, [r["question"] for r in py]),
        "SQuAD questions, evaluation articles": refusals(
            squad_ws, [q["question"] for q in squad if half_of(q["doc_id"].rsplit("#", 1)[0]) == "eval"]),
    }
    result = {
        "command": "HF_HUB_OFFLINE=1 .venv/bin/python bench/how_kind_refusal.py",
        "machine": machine(),
        "rule": "served constants (ServerConfig defaults), not refitted; top 5 hybrid hits as /v1/answer retrieves",
        "cases": {name: tally(rows) for name, rows in cases.items()},
        "seconds": round(time.perf_counter() - t0, 1),
    }
    OUT.write_text(json.dumps(result, indent=2) + "\n")
    for name, t in result["cases"].items():
        print(f"{name}: refused {t['refused_before']} -> {t['refused_now']}; 'how <kind>' questions "
              f"{t['how_kind_refused_before']} -> {t['how_kind_refused_now']}")


if __name__ == "__main__":
    main()
