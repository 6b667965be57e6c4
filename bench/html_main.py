"""HTML pages read whole or from their one main element: does dropping a generator's page template help search?

A folder of generated documentation (mdBook, Sphinx, MkDocs ...) repeats its template on every page: mdBook's
keyboard-help popup and theme menu, Sphinx's copyright footer. `indexer.loaders` reads a page from its one
`<main>` (or role="main") element when it has one. This ingests the same folder both ways, with the default
settings, and asks questions written for it, each with the pages that answer it (never tuned on: the rule is
HTML's own meaning of <main>, chosen before these questions were written). Reported: MRR@10 and Recall@5 over
documents, in the mode search serves, and the chunks the index holds.

    HF_HUB_OFFLINE=1 /tmp/ragkiln-cpu heavy .venv/bin/python bench/html_main.py \\
        --corpus ~/.rustup/toolchains/stable-x86_64-unknown-linux-gnu/share/doc/rust/html/rustdoc \\
        --questions bench/data/rustdoc_questions.jsonl --work bench/work/html-main --out bench/results/html-main.json

The rustdoc book ships with every Rust toolchain (rustup's `rust-docs` component): 26 HTML pages, one of them
(print.html) the whole book on one page.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.machine import machine  # noqa: E402


def run(corpus: Path, home: Path, questions: list[dict[str, Any]], main_only: bool, k: int) -> dict[str, Any]:
    import indexer.loaders as loaders
    from common.settings import load_settings
    from indexer import service

    whole = loaders._main_content
    if not main_only:
        loaders._main_content = lambda soup: soup
    try:
        settings = load_settings({"home": home, "ner": {"enabled": False}})
        report = service.ingest(settings, [corpus], progress=False)
    finally:
        loaders._main_content = whole
    rr, hit5, rows = [], [], []
    for q in questions:
        hits = service.search(settings, q["q"], k=k)
        docs = list(dict.fromkeys(h.chunk.doc_id for h in hits))
        rank = next((i + 1 for i, d in enumerate(docs[:10]) if any(d.endswith(p) for p in q["pages"])), None)
        rr.append(1 / rank if rank else 0.0)
        hit5.append(1.0 if rank and rank <= 5 else 0.0)
        rows.append({"q": q["q"], "rank": rank, "top": docs[:5]})
    return {"chunks": report.chunks_total, "documents": report.documents_total,
            "mrr@10": round(sum(rr) / len(rr), 4), "recall@5": round(sum(hit5) / len(hit5), 4), "questions": rows}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--corpus", type=Path, required=True)
    ap.add_argument("--questions", type=Path, required=True)
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--k", type=int, default=30, help="chunks retrieved; documents ranked by their first chunk")
    a = ap.parse_args()
    questions = [json.loads(ln) for ln in a.questions.read_text().splitlines() if ln.strip()]
    if a.work.exists():
        shutil.rmtree(a.work)
    result: dict[str, Any] = {"command": " ".join(sys.argv), "machine": machine(), "corpus": str(a.corpus),
                              "questions": len(questions)}
    for name, main_only in (("whole_page", False), ("main_element", True)):
        result[name] = run(a.corpus.expanduser(), a.work / name, questions, main_only, a.k)
        print(name, {k: v for k, v in result[name].items() if k != "questions"}, flush=True)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
