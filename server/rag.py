"""Retrieval-augmented answering, the pure part: the citations of an answer.

The prompt is the one the LM was trained on (trainer/lm/tokenizer.py `PROMPT_FORMAT`), planned by
`trainer.lm.qa.plan_prompt` (QA tuning's answer check plans it the same way). When no passage supports
an answer (reader/grounding.py) the answer says so and the model is never asked to invent one.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from indexer.chunking import sentence_spans
from indexer.types import Hit


_WORD = re.compile(r"\w+", re.UNICODE)
_STOP = frozenset(
    "a an and are as at be by can do does for from has have how i in is it its of on or that the this to was "
    "were what when where which who why will with you your".split()
)


@dataclass(frozen=True)
class Citation:
    doc_id: str
    title: str
    chunk_id: int
    rank: int  # 1-based rank of the passage in retrieval
    start: int  # document offsets of the quoted span
    end: int
    quote: str
    score: float
    match: str  # "answer": the span supports the answer text; "context": best span for the question


def _words(text: str) -> set[str]:
    return {w for w in (m.group(0).lower() for m in _WORD.finditer(text)) if w not in _STOP}


def _sentence_around(text: str, start: int, end: int) -> tuple[int, int]:
    for s, e in sentence_spans(text):
        if s <= start < e:
            return s, max(e, min(end, len(text)))
    return start, end


def _best_sentence(text: str, words: set[str]) -> tuple[int, int, int]:
    """(start, end, overlap) of the sentence sharing most words with `words`."""
    best = (0, len(text), 0)
    for s, e in sentence_spans(text):
        n = len(words & _words(text[s:e]))
        if n > best[2]:
            best = (s, e, n)
    return best


def select_citations(answer: str, passages: Sequence[Hit], question: str, max_citations: int = 3) -> list[Citation]:
    """Spans of the prompt's passages that support the answer (the answer text itself, else the sentence
    sharing most of its words); when none does, the first passage's sentence closest to the question."""
    out: list[Citation] = []
    needle = " ".join(answer.split()).lower()
    ans_words = _words(answer)
    for rank, hit in enumerate(passages, 1):
        text = hit.chunk.text
        span: tuple[int, int] | None = None
        flat = text.lower()
        at = flat.find(needle) if len(needle) >= 2 and ans_words else -1
        if at >= 0:
            span = _sentence_around(text, at, at + len(needle))
        elif ans_words:
            s, e, n = _best_sentence(text, ans_words)
            if n >= max(1, (len(ans_words) + 1) // 2):
                span = (s, e)
        if span is not None:
            out.append(_citation(hit, rank, span, "answer"))
        if len(out) >= max_citations:
            break
    if not out and passages:
        s, e, _ = _best_sentence(passages[0].chunk.text, _words(question))
        out.append(_citation(passages[0], 1, (s, e), "context"))
    return out


def _citation(hit: Hit, rank: int, span: tuple[int, int], match: str) -> Citation:
    c = hit.chunk
    s, e = span
    return Citation(c.doc_id, c.title, c.id, rank, c.start + s, c.start + e, c.text[s:e], float(hit.score), match)
