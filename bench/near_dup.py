"""Near-duplicate hits (indexer/near_dup.py): how often chunks of different documents repeat each other, and what
folding them does to search.

1. For each workspace, every active chunk's highest `overlap` with a chunk of another document: how many reach
   0.5 / 0.7 / 0.8 / 0.9 (the threshold is chosen where copies and parallel-but-distinct text separate).
   A BEIR corpus.jsonl is measured the same way over its documents.
2. For a workspace with questions (each with the pages that answer it), search both ways, collapse_overlap 0
   and the default: MRR@10 over documents (strict: the hit's own document; with also_in: a folded copy counts
   at its hit's rank), the distinct documents in the top 5, and the top 5's hits that repeat a better one
   (overlap >= 0.8): slots that said nothing new.

    HF_HUB_OFFLINE=1 /tmp/ragkiln-cpu heavy .venv/bin/python bench/near_dup.py \\
        --workspace rustdoc=bench/work/html-main/main_element --workspace sample=bench/work/rebuild/ws \\
        --beir scifact=../shared/datasets/scifact/corpus.jsonl \\
        --questions rustdoc=bench/data/rustdoc_questions.jsonl --out bench/results/near-dup.json

The rustdoc workspace is bench/loader_rules.py --rule html-main's (the rustdoc book read from its main elements); the sample one any
ingest of samples/python-docs.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import sys
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.loader_rules import page_rank  # noqa: E402
from bench.machine import machine  # noqa: E402
from indexer.near_dup import overlap, trigrams  # noqa: E402

LEVELS = (0.5, 0.7, 0.8, 0.9)


def best_overlaps(items: Iterable[tuple[str, str]]) -> list[tuple[str, float]]:
    """(document, highest overlap with a text of another document) per text. Candidates share a trigram that
    at most 50 texts hold (a pair that overlaps much shares many rare ones), which keeps it near linear."""
    rows = [(doc, trigrams(text)) for doc, text in items]
    inverted: dict[int, list[int]] = defaultdict(list)
    for i, (_, g) in enumerate(rows):
        for t in g:
            inverted[t].append(i)
    out = []
    for i, (doc, g) in enumerate(rows):
        cands = {j for t in g if len(inverted[t]) <= 50 for j in inverted[t] if rows[j][0] != doc}
        out.append((doc, max((overlap(g, rows[j][1]) for j in cands), default=0.0)))
    return out


def distribution(best: list[tuple[str, float]]) -> dict[str, Any]:
    vals = [v for _, v in best]
    return {"texts": len(vals), **{f">={t}": sum(v >= t for v in vals) for t in LEVELS},
            "highest_below_0.8": round(max((v for v in vals if v < 0.8), default=0.0), 3)}


def workspace_chunks(home: Path) -> list[tuple[str, str]]:
    with sqlite3.connect(home / "docstore.sqlite") as c:
        return c.execute("SELECT c.doc_id, c.text FROM chunks c JOIN active a ON a.doc_id = c.doc_id AND "
                         "a.sha256 = c.doc_sha256 AND a.chunker = c.chunker").fetchall()


def search_effect(home: Path, questions: list[dict[str, Any]]) -> dict[str, Any]:
    from common.settings import load_settings
    from indexer import service

    out: dict[str, Any] = {}
    for name, collapse in (("off", 0.0), ("default", None)):
        over = {"indexer": {"collapse_overlap": collapse}} if collapse is not None else {}
        s = load_settings({"home": home, "ner": {"enabled": False}, **over})
        strict, folded, distinct, repeats = [], [], [], []
        for q in questions:
            hits = service.search(s, q["q"], k=30)
            docs = list(dict.fromkeys(h.chunk.doc_id for h in hits))
            groups: list[set[str]] = []
            for h in hits:
                if not any(h.chunk.doc_id in g for g in groups):
                    groups.append({h.chunk.doc_id, *h.also_in})
            r1, r2 = page_rank([{d} for d in docs], q["pages"]), page_rank(groups, q["pages"])
            strict.append(1 / r1 if r1 else 0.0)
            folded.append(1 / r2 if r2 else 0.0)
            distinct.append(len({h.chunk.doc_id for h in hits[:5]}))
            grams = [trigrams(h.chunk.text) for h in hits[:5]]
            repeats.append(sum(any(overlap(g, e) >= 0.8 for e in grams[:i]) for i, g in enumerate(grams)))
        n = len(questions)
        out[name] = {"mrr@10": round(sum(strict) / n, 4), "mrr@10_with_also_in": round(sum(folded) / n, 4),
                     "distinct_documents_in_top5": round(sum(distinct) / n, 3),
                     "repeated_passages_in_top5": round(sum(repeats) / n, 3)}
    return out


def pairs(values: list[str]) -> dict[str, str]:
    return dict(v.split("=", 1) for v in values)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--workspace", action="append", default=[], help="NAME=DIR")
    ap.add_argument("--beir", action="append", default=[], help="NAME=corpus.jsonl")
    ap.add_argument("--questions", action="append", default=[], help="NAME=questions.jsonl (NAME a --workspace)")
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args()
    result: dict[str, Any] = {"command": " ".join(sys.argv), "machine": machine(), "corpora": {}}
    for name, home in pairs(a.workspace).items():
        best = best_overlaps(workspace_chunks(Path(home)))
        result["corpora"][name] = distribution(best)
        if pv := [v for d, v in best if d.endswith("print.html")]:  # an mdBook's whole book on one page
            result["corpora"][name]["print.html"] = {"chunks": len(pv), ">=0.8": sum(v >= 0.8 for v in pv)}
        print(name, result["corpora"][name], flush=True)
    for name, path in pairs(a.beir).items():
        docs = [json.loads(ln) for ln in Path(path).read_text().splitlines() if ln.strip()]
        result["corpora"][name] = distribution(best_overlaps(
            (d["_id"], f"{d.get('title', '')} {d['text']}") for d in docs))
        print(name, result["corpora"][name], flush=True)
    homes = pairs(a.workspace)
    for name, path in pairs(a.questions).items():
        qs = [json.loads(ln) for ln in Path(path).read_text().splitlines() if ln.strip()]
        result.setdefault("search", {})[name] = {"questions": len(qs), **search_effect(Path(homes[name]), qs)}
        print(name, result["search"][name], flush=True)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
