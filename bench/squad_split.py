"""The fixed halves of SQuAD v1.1 dev used across benches: split by *article*, so no paragraph of an
evaluation article is ever fitted on (questions about one article share its facts and wording).

The 48 articles are ordered by the SHA-256 of their title and cut in two: the first 24 are the
evaluation half (scored once, after choices are made), the other 24 the fit half (anything may be
chosen or fitted on them). The index of a bench is still every paragraph of both halves.

    from bench.squad_split import load_squad, article_halves
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

SQUAD = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "squad-v1.1"


def is_dev(key: str) -> bool:
    """A third of the fit side, fixed by a hash of `key` (an article title, a document id): the dev part."""
    return int(hashlib.sha256(("dev:" + key).encode()).hexdigest(), 16) % 3 == 0


def load_squad(folder: Path = SQUAD) -> dict[str, Any]:
    files = sorted(folder.glob("*.json"))
    if not files:
        raise SystemExit(f"no SQuAD JSON under {folder}")
    return json.loads(files[0].read_text(encoding="utf-8"))


def article_halves(squad: dict[str, Any]) -> tuple[list[str], list[str]]:
    """(fit titles, evaluation titles), fixed by the titles alone."""
    titles = sorted((a["title"] for a in squad["data"]), key=lambda t: hashlib.sha256(t.encode()).hexdigest())
    half = len(titles) // 2
    return sorted(titles[half:]), sorted(titles[:half])


def questions(squad: dict[str, Any], titles: list[str]) -> list[dict[str, Any]]:
    """Every question of these articles: id, question, gold answers, its paragraph and article."""
    keep = set(titles)
    out = []
    for a in squad["data"]:
        if a["title"] not in keep:
            continue
        for pi, p in enumerate(a["paragraphs"]):
            for qa in p["qas"]:
                out.append({"id": qa["id"], "question": qa["question"], "answers": [x["text"] for x in qa["answers"]],
                            "answer_starts": [x["answer_start"] for x in qa["answers"]], "context": p["context"],
                            "title": a["title"], "paragraph": pi})
    return out
