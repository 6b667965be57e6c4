"""Focused passages: the sentences of a passage that a question keeps (`lm.qa_context_sentences`).

A QA prompt may keep only the few sentences of each passage that share the most (rare) words with the
question; QA tuning and answering read passages the same way, and the model's manifest records how.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence

from indexer.bm25 import tokenize as bm25_words
from indexer.chunking import PARAGRAPH_BREAK, sentence_spans

# a piece opening with anything but a capital, a digit or a quote goes on from the one before ("- item", "`x`");
# the indexer's splitter has already rejoined pieces it cut in a name's initials or after "e.g." and the like
_STARTS_SENTENCE = re.compile(r"[\"'(\[]?[A-Z0-9]")
_ENDS_SENTENCE = re.compile(r"[.!?:;][\"')\]]*\s*$")


def passage_sentences(text: str) -> list[tuple[int, int]]:
    """The indexer's sentences, rejoined where a piece opens with neither a capital nor a digit, but never across
    a blank line; a paragraph that is one unpunctuated line (a heading, a signature, a term being defined) opens
    the sentence after it, which it introduces ("setraw(fd)" + "Change the mode of fd to raw."), instead of
    trailing the sentence before it."""
    merged: list[tuple[int, int]] = []
    heading: tuple[int, int] | None = None  # a lone line waiting for the sentence it introduces
    for s, e in sentence_spans(text):
        after_break = bool(merged or heading) and bool(PARAGRAPH_BREAK.search(text, (heading or merged[-1])[1], s))
        if merged and heading is None and not after_break and not _STARTS_SENTENCE.match(text, s):
            merged[-1] = (merged[-1][0], e)
            continue
        if heading is not None:
            if after_break and _is_heading(text, s, e):  # two lone lines in a row: the first stands alone
                merged.append(heading)
                heading = (s, e)
            else:
                merged.append((heading[0], e))
                heading = None
            continue
        if _is_heading(text, s, e) and PARAGRAPH_BREAK.match(text, e):
            heading = (s, e)
        else:
            merged.append((s, e))
    if heading is not None:
        merged.append(heading)
    return merged


def _is_heading(text: str, s: int, e: int) -> bool:
    """One line without a sentence's closing punctuation."""
    piece = text[s:e]
    return "\n" not in piece.strip() and not _ENDS_SENTENCE.search(piece)


def focus_passage(text: str, question: str, sentences: int) -> str:
    """The `sentences` sentences of `text` sharing the most question words, in passage order (all of it
    when 0 or when it has no more). A model of a few million parameters learns what kind of span
    answers a question but not where in a paragraph it is; this lexical step finds the sentence holding
    a SQuAD answer 4 times in 5 (bench/lm.py), so the model only picks the span inside it. Words are the
    BM25 index's (stemmed, no stop words), each weighted by ln(1 + n/df) over the passage's n sentences,
    so a word every sentence shares decides nothing."""
    spans = passage_sentences(text) if sentences > 0 else []
    if len(spans) <= sentences:
        return text
    keep = sorted(sentence_ranking(sentence_scores([text[s:e] for s, e in spans], question))[:sentences])
    return " ".join(text[spans[i][0] : spans[i][1]].strip() for i in keep)


def sentence_scores(sentences: Sequence[str], question: str) -> list[float]:
    """`focus_passage`'s score of each of a passage's sentences: the question's BM25 words it has, each
    weighted by ln(1 + n/df) over the n sentences (bench/lm_focus.py compares other scorers). Summed
    exactly, so equal scores stay equal in every process and ties go to the earlier sentence."""
    asked = set(bm25_words(question))
    words = [set(bm25_words(s)) for s in sentences]
    df = Counter(w for ws in words for w in ws)
    # fsum: a set's order changes with the process's string hashing, and a plain sum with it
    return [math.fsum(math.log(1 + len(words) / df[w]) for w in asked & ws) for ws in words]


def sentence_ranking(scores: Sequence[float]) -> list[int]:
    """Sentence indices by their `sentence_scores`, best first; ties go to the earlier sentence."""
    return sorted(range(len(scores)), key=lambda i: (-scores[i], i))


def focus_contexts(contexts: Sequence[str], question: str, sentences: int) -> list[str]:
    """`focus_passage` on each passage: the contexts of a QA prompt as the model was tuned to read them."""
    return [focus_passage(c, question, sentences) for c in contexts]
