"""Answers from a chat model (pure): numbered passages in its system message, `[n]` markers back to citations.

A registered chat model (quantize/chat_template.py renders its own template) gets a system message
telling it to answer only from the numbered passages and to cite them as [n]; the passages follow,
numbered [1]..[k] in retrieval order. After generation every `[n]` (also `[1, 3]` and `[1][3]`) in
the answer becomes a citation of passage n: the sentence of that passage that shares most words with
the claim the marker ends (the answer's sentence, markers removed), or the whole passage when none
does, with document offsets. Only passages the answer refers to are cited, a claim without a marker
is not cited, and a marker past the passages given is dropped.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from indexer.chunking import sentence_spans
from indexer.types import Hit
from server.rag import Citation

SYSTEM_PROMPT = (
    "You answer questions using only the numbered passages below. Cite the passage that supports each "
    "sentence with its number in square brackets, like [1] or [2][3]. If the passages do not contain the "
    "answer, say that you cannot find it in the documents. Do not use outside knowledge."
)
NO_PASSAGES = "There are no passages: answer only if the conversation itself holds the answer."

_MARKER = re.compile(r"\[(\d{1,3}(?:\s*[,;]\s*\d{1,3})*)\]")
_WORD = re.compile(r"\w+", re.UNICODE)
_STOP = frozenset(
    "a an and are as at be by can do does for from has have how i in is it its of on or that the this to was "
    "were what when where which who why will with you your".split()
)


def numbered_passages(passages: Sequence[tuple[str, str]]) -> str:
    """`[n] title\\ntext` blocks for (title, text) pairs, numbered from 1."""
    return "\n\n".join(f"[{i}] {title}\n{text}" if title else f"[{i}] {text}"
                       for i, (title, text) in enumerate(passages, 1))


def rag_messages(question: str, passages: Sequence[tuple[str, str]],
                 history: Sequence[tuple[str, str]] = ()) -> list[dict[str, str]]:
    """The chat messages of an answer over `passages`: our system message (instructions + numbered
    passages, then any system text of the caller's), the conversation, and the question last.
    `history`: (role, content) turns before the question (the chat request's messages but the last
    user one); `question` is appended when the history does not already end with it."""
    system = [SYSTEM_PROMPT, "Passages:\n\n" + numbered_passages(passages) if passages else NO_PASSAGES]
    system += [c for r, c in history if r in ("system", "developer") and c.strip()]
    turns = [{"role": r, "content": c} for r, c in history if r in ("user", "assistant")]
    if not turns or turns[-1] != {"role": "user", "content": question}:
        turns.append({"role": "user", "content": question})
    return [{"role": "system", "content": "\n\n".join(system)}, *turns]


@dataclass(frozen=True)
class Marker:
    start: int  # character offsets of the marker in the answer
    end: int
    numbers: tuple[int, ...]


def find_markers(answer: str) -> list[Marker]:
    """Every `[n]` / `[n, m]` marker in the answer, in order."""
    return [Marker(m.start(), m.end(), tuple(int(x) for x in re.split(r"\s*[,;]\s*", m.group(1))))
            for m in _MARKER.finditer(answer)]


def _words(text: str) -> set[str]:
    return {w for w in (m.group(0).lower() for m in _WORD.finditer(text)) if w not in _STOP}


def claims(answer: str) -> list[tuple[str, tuple[int, ...]]]:
    """(claim text without markers, passage numbers it cites) per sentence of the answer that cites any.
    A sentence opening with markers only ("... sentence. [2] Next") gives them to the sentence before."""
    spans = sentence_spans(answer)
    cited: list[list[int]] = [[] for _ in spans]
    for mk in find_markers(answer):
        i = next((j for j, (s, e) in enumerate(spans) if s <= mk.start < e), None)
        if i is None:
            continue
        if i > 0 and not _WORD.search(_MARKER.sub("", answer[spans[i][0]:mk.start])):
            i -= 1  # only markers before it in its sentence: they close the previous one
        cited[i].extend(mk.numbers)
    out = []
    for (s, e), nums in zip(spans, cited):
        if nums:
            claim = re.sub(r"\s+([.,;:!?])", r"\1", " ".join(_MARKER.sub("", answer[s:e]).split()))
            out.append((claim, tuple(dict.fromkeys(nums))))
    return out


def marker_citations(answer: str, passages: Sequence[Hit]) -> list[Citation]:
    """Citations of the passages the answer's markers refer to (1-based, as numbered in the prompt), in
    the order first cited; each quotes the passage sentence that best matches its claim (document
    offsets), or the whole passage when no sentence shares a word with it."""
    out: list[Citation] = []
    seen: set[tuple[int, int, int]] = set()
    for claim, numbers in claims(answer):
        words = _words(claim)
        for n in numbers:
            if not 1 <= n <= len(passages):
                continue  # a marker past the passages given: dropped
            hit = passages[n - 1]
            s, e = _best_sentence(hit.chunk.text, words)
            if (n, s, e) in seen:
                continue
            seen.add((n, s, e))
            c = hit.chunk
            out.append(Citation(c.doc_id, c.title, c.id, n, c.start + s, c.start + e, c.text[s:e], float(hit.score),
                                "answer"))
    return out


def _best_sentence(text: str, words: set[str]) -> tuple[int, int]:
    best, n_best = (0, len(text)), 0
    for s, e in sentence_spans(text):
        n = len(words & _words(text[s:e]))
        if n > n_best:
            best, n_best = (s, e), n
    if n_best == 0:  # nothing in common: the passage as a whole (trimmed)
        spans = sentence_spans(text)
        return (spans[0][0], spans[-1][1]) if spans else (0, len(text))
    return best
