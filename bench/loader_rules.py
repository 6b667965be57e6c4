"""A loader rule on and off: does reading a folder's pages this way help search on questions written for it?

  html-main     an HTML page is read from its one `<main>` (or role="main") element: a documentation generator's
                template around it (mdBook's keyboard help and theme menu, Sphinx's copyright footer) is on every
                page. Off: the whole page.
  front-matter  a Markdown file's front matter (YAML `---` or TOML `+++`) gives the title and description and
                never reaches the text. Off: it is read as Markdown (a heading "title: ... section: 1 ...").
  code-block    Sphinx's `.. code-block:: LANG` (and `sourcecode`) is a code block kept line by line. Off: an
                unknown directive, its argument and lines read as prose. The off run goes first: docutils'
                directive registry is process-wide.

The same folder is ingested both ways with the default settings, and questions written for it (each with the pages
that answer it; never tuned on) are searched: MRR@10 and Recall@5 over documents, in the mode search serves, and
the chunks the index holds.

    HF_HUB_OFFLINE=1 /tmp/ragkiln-cpu heavy .venv/bin/python bench/loader_rules.py --rule html-main \\
        --corpus ~/.rustup/toolchains/stable-x86_64-unknown-linux-gnu/share/doc/rust/html/rustdoc \\
        --questions bench/data/rustdoc_questions.jsonl --work bench/work/html-main --out bench/results/html-main.json

The rustdoc book and the Embedded Rust Book ship with every Rust toolchain (rustup's `rust-docs` component); npm's
own documentation (Markdown with front matter) with npm, under `node_modules/npm/docs/content`; CMake's reST sources
with Debian's cmake-data, under `/usr/share/cmake-3.25/Help`.
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


RULES = {  # rule -> (module, function, what it is replaced by when the rule is off)
    "html-main": ("indexer.loaders", "_main_content", lambda soup: soup),
    "front-matter": ("indexer.markup", "front_matter", lambda text: ({}, text)),
    "code-block": ("indexer.markup", "CODE_DIRECTIVES", frozenset()),
}


def page_rank(groups: list[set[str]], pages: list[str]) -> int | None:
    """The 1-based rank (within 10) of the first result whose documents include a page that answers the question
    (document ids end with the page's path under the corpus folder)."""
    return next((i + 1 for i, g in enumerate(groups[:10]) if any(d.endswith(p) for d in g for p in pages)), None)


def run(corpus: Path, home: Path, questions: list[dict[str, Any]], rule: str, on: bool, k: int) -> dict[str, Any]:
    import importlib

    from common.settings import load_settings
    from indexer import service

    module, name, off = RULES[rule]
    mod = importlib.import_module(module)
    kept = getattr(mod, name)
    if not on:
        setattr(mod, name, off)
    try:
        settings = load_settings({"home": home, "ner": {"enabled": False}})
        report = service.ingest(settings, [corpus], progress=False)
    finally:
        setattr(mod, name, kept)
    rr, hit5, rows = [], [], []
    for q in questions:
        hits = service.search(settings, q["q"], k=k)
        docs = list(dict.fromkeys(h.chunk.doc_id for h in hits))
        rank = page_rank([{d} for d in docs], q["pages"])
        rr.append(1 / rank if rank else 0.0)
        hit5.append(1.0 if rank and rank <= 5 else 0.0)
        rows.append({"q": q["q"], "rank": rank, "top": docs[:5]})
    return {"chunks": report.chunks_total, "documents": report.documents_total,
            "mrr@10": round(sum(rr) / len(rr), 4), "recall@5": round(sum(hit5) / len(hit5), 4), "questions": rows}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rule", choices=sorted(RULES), default="html-main")
    ap.add_argument("--corpus", type=Path, required=True)
    ap.add_argument("--questions", type=Path, required=True)
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--k", type=int, default=30, help="chunks retrieved; documents ranked by their first chunk")
    a = ap.parse_args()
    questions = [json.loads(ln) for ln in a.questions.read_text().splitlines() if ln.strip()]
    if a.work.exists():
        shutil.rmtree(a.work)
    result: dict[str, Any] = {"command": " ".join(sys.argv), "machine": machine(), "rule": a.rule,
                              "corpus": str(a.corpus), "questions": len(questions)}
    names = {"html-main": ("whole_page", "main_element"), "front-matter": ("as_markdown", "front_matter"),
             "code-block": ("as_prose", "as_code")}[a.rule]
    for name, on in zip(names, (False, True)):
        result[name] = run(a.corpus.expanduser(), a.work / name, questions, a.rule, on, a.k)
        print(name, {k: v for k, v in result[name].items() if k != "questions"}, flush=True)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
