"""BM25 with identifiers split into their words: does it help questions written for technical documentation?

A documentation page is often named by an identifier (`target_include_directories`, `CMAKE_BUILD_TYPE`,
`getFooBar`) that BM25 kept as one token, so a question in plain words ("add include directories to a
target") matched the page's title only through its prose. The variant indexes (and reads queries with) each
snake_case, SCREAMING_CASE or camelCase identifier as itself plus its words (`identifier_parts` below, put in
place of `indexer.bm25.tokenize` while the variant is built and searched).

Each workspace's stored chunks are indexed both ways (as the index does: title plus two neighbours each side),
swapped into its loaded searcher, and its questions searched: documents ranked by their best chunk, MRR@10 and
Recall@5, in bm25 and hybrid (the mode search serves).

Declared before the first run: cmake and rustdoc choose (the idea came from reading CMake's help); the
variant is kept if its hybrid MRR@10 averaged over those two rises; embedded and npm are then the record
(written once, after the choice).

    HF_HUB_OFFLINE=1 /tmp/ragkiln-cpu heavy .venv/bin/python bench/bm25_identifiers.py
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from bench.loader_rules import page_rank  # noqa: E402
from bench.machine import machine  # noqa: E402

WORK = ROOT / "bench" / "work"
_PART = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|\d+")


def identifier_parts(word: str) -> list[str]:
    """The lower-case words of a snake_case, SCREAMING_CASE or camelCase identifier (none for a plain word)."""
    if "_" not in word and not (any(c.isupper() for c in word[1:]) and any(c.islower() for c in word)):
        return []
    parts = [p.lower() for p in _PART.findall(word)]
    return parts if len(parts) > 1 else []


def tokenize_identifiers(text: str, language: str = "english") -> list[str]:
    """`indexer.bm25.tokenize`, with each identifier followed by its words."""
    from indexer import bm25

    stop = bm25._stopwords()
    words: list[str] = []
    for w in bm25._TOKEN.findall(text):
        if w.lower() not in stop:
            words.append(w.lower())
        words.extend(p for p in identifier_parts(w) if len(p) > 1 and p not in stop)
    return bm25._stemmer(language).stemWords(words)
CASES = {  # name -> (workspace made by bench/loader_rules.py, questions, role)
    "cmake": (WORK / "code-block" / "as_code", "cmake_questions.jsonl", "choose"),
    "rustdoc": (WORK / "html-main" / "main_element", "rustdoc_questions.jsonl", "choose"),
    "embedded": (WORK / "html-main-embedded" / "main_element", "embedded_book_questions.jsonl", "record"),
    "npm": (WORK / "front-matter" / "front_matter", "npm_docs_questions.jsonl", "record"),
}


def evaluate(searcher: Any, store: Any, questions: list[dict[str, Any]], mode: str) -> dict[str, Any]:
    rr, hit5, ranks = [], [], []
    for q in questions:
        ids, _ = searcher.ranked_ids(q["q"], mode, 30)
        chunks = store.get_chunks(ids)
        docs = list(dict.fromkeys(chunks[i].doc_id for i in ids if i in chunks))
        rank = page_rank([{d} for d in docs], q["pages"])
        ranks.append(rank)
        rr.append(1 / rank if rank else 0.0)
        hit5.append(1.0 if rank and rank <= 5 else 0.0)
    return {"mrr@10": round(float(np.mean(rr)), 4), "recall@5": round(float(np.mean(hit5)), 4), "ranks": ranks}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cases", default=",".join(CASES))
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "bm25-identifiers.json")
    a = ap.parse_args()
    from common.settings import load_settings
    from indexer import bm25
    from indexer.bm25 import BM25Index
    from indexer.chunking import bm25_texts
    from indexer.workspace import Workspace

    result: dict[str, Any] = {"command": " ".join(sys.argv), "machine": machine(), "cases": {}}
    for name in a.cases.split(","):
        home, qfile, role = CASES[name]
        questions = [json.loads(ln) for ln in (ROOT / "bench" / "data" / qfile).read_text().splitlines() if ln.strip()]
        settings = load_settings({"home": home, "ner": {"enabled": False}})
        cfg = settings.indexer
        ws = Workspace.open(settings)
        searcher = ws.searcher()
        ids = searcher.gen.bm25.ids
        chunks = list(ws.store.get_chunks(ids.tolist()).values())
        texts = bm25_texts(chunks, cfg.bm25_context_chunks)
        row: dict[str, Any] = {"role": role, "questions": len(questions), "chunks": len(ids)}
        words = bm25.tokenize
        for variant, tokenize in (("words", words), ("identifier_parts", tokenize_identifiers)):
            bm25.tokenize = tokenize
            try:
                searcher.gen.bm25 = BM25Index.build((texts[int(i)] for i in ids), ids, cfg.bm25_k1, cfg.bm25_b,
                                                    cfg.stemmer_language)
                row[variant] = {mode: evaluate(searcher, ws.store, questions, mode) for mode in ("bm25", "hybrid")}
            finally:
                bm25.tokenize = words
            print(name, variant, {m: {k: v for k, v in r.items() if k != "ranks"} for m, r in row[variant].items()},
                  flush=True)
        result["cases"][name] = row
    choose = [c for c in result["cases"].values() if c["role"] == "choose"]
    if choose:
        result["choice"] = {v: round(float(np.mean([c[v]["hybrid"]["mrr@10"] for c in choose])), 4)
                            for v in ("words", "identifier_parts")}
    a.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result.get("choice")))


if __name__ == "__main__":
    main()
