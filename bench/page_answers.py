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
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.machine import machine  # noqa: E402


def names(name: str, text: str) -> bool:
    if not re.fullmatch(r"[\w.]+", name):
        return name in text
    return re.search(r"(?<!\w)" + re.escape(name) + r"(?![\w])", text) is not None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workspace", type=Path, required=True)
    ap.add_argument("--questions", type=Path, default=ROOT / "bench" / "data" / "cmake_questions.jsonl")
    ap.add_argument("--out", type=Path, default=None)
    a = ap.parse_args()
    from common.settings import load_settings
    from indexer.workspace import Workspace
    from reader.answer import ask, make_reader_runtime

    rows = [json.loads(line) for line in a.questions.read_text().splitlines() if line.strip()]
    settings = load_settings({"home": a.workspace})
    searcher = Workspace.existing(settings).searcher()
    runtime = make_reader_runtime(settings)
    t0 = time.perf_counter()
    answers = []
    for r in rows:
        g = ask(searcher, runtime, r["q"], settings)
        expected = r.get("expected") or [Path(p).stem for p in r["pages"]]
        span, sentence = g.text, g.sentence or ""
        example = g.example.text if g.example else ""
        doc = g.hit.chunk.doc_id if g.hit else None
        answers.append({"question": r["q"], "expected": expected, "answer": span, "sentence": sentence,
                        "example": example, "doc": doc, "grounded": g.grounded,
                        "page": bool(doc) and any(doc.endswith(p) for p in r["pages"]),
                        "span": any(names(e, span) for e in expected),
                        "span_or_sentence": any(names(e, f"{span}\n{sentence}") for e in expected),
                        "shown": any(names(e, f"{span}\n{sentence}\n{example}") for e in expected)})
    summary = {"questions": len(rows), **{k: sum(x[k] for x in answers) for k in
                                          ("page", "span", "span_or_sentence", "shown")},
               "refused": sum(not x["grounded"] for x in answers), "seconds": round(time.perf_counter() - t0, 1)}
    print(json.dumps(summary))
    if a.out:
        a.out.write_text(json.dumps({"command": "HF_HUB_OFFLINE=1 .venv/bin/python bench/page_answers.py "
                                     + " ".join(sys.argv[1:]), "machine": machine(), "summary": summary,
                                     "answers": answers}, indent=1) + "\n")


if __name__ == "__main__":
    main()
