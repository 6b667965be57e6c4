"""How-to questions written for a reference folder, through `reader.answer.ask` (what `ragkiln ask` and
`/v1/answer` answer): does the answer name what the question needs?

Each question (`bench/data/cmake_questions.jsonl`: written before any search of CMake's help) lists the pages that
answer it and may list the names an answer should show (`expected`); without them, the pages' file stems (a
reference names its pages after their subject: `command/add_executable.rst` documents add_executable). A name is
found as written, case-sensitive, as a whole word (a qualified `fs.readFile` shows readFile) unless it holds
punctuation itself (`once(`, `recursive: true`), which is found anywhere. Counted: the expected name in the answer span,
in the span or its sentence, in those or the example; the answering page among the expected ones; refusals.
Nothing is fitted on these questions.

    HF_HUB_OFFLINE=1 /tmp/ragkiln-cpu heavy .venv/bin/python bench/page_answers.py \\
        --workspace bench/work/cmake-build/ws --out bench/results/cmake-answers.json
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.machine import machine  # noqa: E402


def names(name: str, text: str) -> bool:
    if not re.fullmatch(r"[\w.]+", name):
        return name in text
    return re.search(r"(?<!\w)" + re.escape(name) + r"(?![\w])", text) is not None


@dataclass(frozen=True)
class Asked:
    """One question as `ragkiln ask` answers it."""

    question: str
    answer: str
    sentence: str
    example: str
    doc: str | None
    grounded: bool


def ask_each(settings: Any, questions: list[str]) -> tuple[list[Asked], float]:
    """Each question through `reader.answer.ask` on the workspace of `settings`, and the seconds the answers took."""
    from indexer.workspace import Workspace
    from reader.answer import ask, make_reader_runtime

    searcher = Workspace.existing(settings).searcher()
    runtime = make_reader_runtime(settings)
    t0 = time.perf_counter()
    out = []
    for q in questions:
        g = ask(searcher, runtime, q, settings)
        out.append(Asked(q, g.text, g.sentence or "", g.example.text if g.example else "",
                         g.hit.chunk.doc_id if g.hit else None, g.grounded))
    return out, round(time.perf_counter() - t0, 1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workspace", type=Path, required=True)
    ap.add_argument("--questions", type=Path, default=ROOT / "bench" / "data" / "cmake_questions.jsonl")
    ap.add_argument("--out", type=Path, default=None)
    a = ap.parse_args()
    from common.settings import load_settings

    rows = [json.loads(line) for line in a.questions.read_text().splitlines() if line.strip()]
    asked, seconds = ask_each(load_settings({"home": a.workspace}), [r["q"] for r in rows])
    answers = []
    for r, g in zip(rows, asked):
        expected = r.get("expected") or [Path(p).stem for p in r["pages"]]
        span, sentence, example, doc = g.answer, g.sentence, g.example, g.doc
        answers.append({"question": r["q"], "expected": expected, "answer": span, "sentence": sentence,
                        "example": example, "doc": doc, "grounded": g.grounded,
                        "page": bool(doc) and any(doc.endswith(p) for p in r["pages"]),
                        "span": any(names(e, span) for e in expected),
                        "span_or_sentence": any(names(e, f"{span}\n{sentence}") for e in expected),
                        "shown": any(names(e, f"{span}\n{sentence}\n{example}") for e in expected)})
    summary = {"questions": len(rows), **{k: sum(x[k] for x in answers) for k in
                                          ("page", "span", "span_or_sentence", "shown")},
               "refused": sum(not x["grounded"] for x in answers), "seconds": seconds}
    print(json.dumps(summary))
    if a.out:
        a.out.write_text(json.dumps({"command": "HF_HUB_OFFLINE=1 .venv/bin/python bench/page_answers.py "
                                     + " ".join(sys.argv[1:]), "machine": machine(), "summary": summary,
                                     "answers": answers}, indent=1) + "\n")


if __name__ == "__main__":
    main()
