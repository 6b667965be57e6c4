"""Extractive answering: where an answer copied from the prompt's passages may start and stop.

`extractive_params` turns sampling parameters into extractive ones for a QA prompt: the passages'
token ids to copy from (`context_token_ids`), the question's to avoid copying alone, and the positions
an answer may open and close on (`answer_bounds`); `common.sampling` and both back ends (torch and
llama.cpp) enforce them. The opening rules ("any", "not_asked", "content", "typed") are the ones
bench/lm.py compares; "typed" is what `ragkiln generate --extractive` uses. The server's extractive
answers no longer decode with these rules: the reader (reader/) picks a span of the passages instead.
"""

from __future__ import annotations

import bisect
import re
import string
from collections.abc import Sequence
from dataclasses import replace
from typing import Any, Literal

from common.errors import InvalidInput
from common.sampling import SamplingParams
from indexer.bm25 import tokenize as bm25_words
from trainer.lm.tokenizer import Tokenizer

Opening = Literal["any", "not_asked", "content", "typed"]
AnswerType = Literal["number", "name"]

# Question phrasings whose SQuAD answers (nearly) always open on a number or a name; a first guess at
# a question's kind, not a parser, so what matches nothing (what, which, where, why) stays untyped.
_TYPED_QUESTIONS: tuple[tuple[AnswerType, re.Pattern[str]], ...] = (
    ("number", re.compile(r"\bhow (?:many|much|long|old|far|large|big|tall|high|often)\b"
                          r"|\b(?:what|which) (?:year|decade|century|percentage|percent|proportion|share)\b"
                          r"|^when\b|\bwhen (?:did|was|were|is|does|do)\b", re.IGNORECASE)),
    ("name", re.compile(r"^who\b|\bwho (?:is|was|were|did|had|has)\b|\bwhose\b|\b(?:what|which) (?:is|was) the name\b"
                        r"|\b(?:what|which) (?:city|country|state|county|town|region|continent|river|island"
                        r"|nation|province|company|organi[sz]ation|team|university|party|band|newspaper|person"
                        r"|president|king|emperor|player|scientist|author|artist|composer|writer)\b", re.IGNORECASE)),
)
_NUMBER_WORDS = frozenset(
    "one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen seventeen "
    "eighteen nineteen twenty thirty forty fifty sixty seventy eighty ninety hundred thousand million billion "
    "trillion dozen dozens hundreds thousands millions billions half first second third fourth fifth sixth seventh "
    "eighth ninth tenth eleventh twelfth thirteenth fourteenth fifteenth sixteenth seventeenth eighteenth "
    "nineteenth twentieth twenty-first january february march april may june july august september october "
    "november december".split())


def answer_type(question: str) -> AnswerType | None:
    """The kind of word a SQuAD-style answer to `question` opens on: "number" (how many, what year,
    when: a digit, a number word, an ordinal or a month) or "name" (who, which city: a capital)."""
    q = question.strip()
    return next((kind for kind, pattern in _TYPED_QUESTIONS if pattern.search(q)), None)


def _fits(word: str, kind: AnswerType) -> bool:
    word = word.strip().strip(string.punctuation)
    if kind == "number":
        return any(c.isdigit() for c in word) or word.lower() in _NUMBER_WORDS
    return word[:1].isupper()


def _wordy(c: str) -> bool:
    return c.isalnum() or c == "\ufffd"  # a lone byte piece of a multi-byte letter decodes to U+FFFD


def answer_bounds(source: Sequence[int], question: Sequence[int], tokenizer: Any, opening: Opening = "typed"
                  ) -> tuple[tuple[int, ...] | None, tuple[int, ...]]:
    """Where an extracted answer may start and stop in `source` (context token ids).

    Starts: the first piece of a word, or one right after punctuation ("(" then "1990"), or the lone
    space piece before a split number, whose word is (`opening`) "any"; "not_asked": not one the
    question has (BM25 stems); "content": neither a question word nor a stop word; or "typed" (served):
    a content word of the question's `answer_type` when the passage has one. A small model that has
    found the right sentence still often copies from where the question's own words stand ("How many
    Grammys has Lady Gaga won?" -> "Lady Gaga performed"), opens on "the" and then picks the wrong
    noun, or copies the wrong kind of span (a name for "What year ..."); SQuAD answers rarely begin
    with a question word, and F1 ignores a leading article (bench/lm.py measures each rule). Ends:
    positions that do not split a run of letters or digits. None for starts when no position
    qualifies, so decoding is never left with nothing to copy. Pieces come from
    `tokenizer.piece_bytes`, which both the SentencePiece tokenizer and the GGUF vocabulary have."""
    pieces = [tokenizer.piece_bytes(t).decode("utf-8", errors="replace") for t in source]
    question_text = "".join(tokenizer.piece_bytes(t).decode("utf-8", errors="replace") for t in question)
    asked = set(bm25_words(question_text))
    n = len(pieces)
    word_start = [i == 0 or p.startswith(" ") for i, p in enumerate(pieces)]
    after_mark = [i > 0 and not _wordy(pieces[i - 1][-1:] or " ") for i in range(n)]  # the piece before ends in punctuation
    # a lone space piece opens a word split from its first piece (digits: " ", "2", "8"), as answers are encoded
    wordy = [any(map(_wordy, p)) or (p == " " and i + 1 < n and _wordy(pieces[i + 1][:1] or " "))
             for i, p in enumerate(pieces)]
    edges = [i for i in range(n) if word_start[i]] + [n]

    def word(i: int) -> str:  # the word from position i
        return "".join(pieces[i : edges[bisect.bisect_right(edges, i)]])

    def opens(i: int) -> bool:  # the word from position i may open an answer
        stems = set(bm25_words(word(i)))
        return opening == "any" or (not stems & asked and (bool(stems) or opening == "not_asked"))

    starts = [i for i in range(n) if (word_start[i] or after_mark[i]) and wordy[i] and opens(i)]
    kind = answer_type(question_text) if opening == "typed" else None
    if kind:  # the question's kind where the passage has such a word, else the content rule alone
        starts = [i for i in starts if _fits(word(i), kind)] or starts
    ends = tuple(j for j in range(1, n + 1) if j == n or word_start[j] or after_mark[j] or not _wordy(pieces[j][:1] or " "))
    return (tuple(starts) or None), ends


def context_token_ids(ids: Sequence[int], tokenizer: Tokenizer) -> tuple[int, ...]:
    """The ids inside `<ctx> ... </ctx>` blocks of a prompt: what extractive decoding may copy."""
    out: list[int] = []
    inside = False
    for i in ids:
        if i == tokenizer.ctx_open:
            inside = True
        elif i == tokenizer.ctx_close:
            inside = False
        elif inside:
            out.append(int(i))
    return tuple(out)


def question_token_ids(ids: Sequence[int], tokenizer: Any) -> tuple[int, ...]:
    """The ids of the prompt's last question (after `<q>`, up to `<a>` or the end)."""
    ids = list(ids)
    if tokenizer.q_id not in ids:
        return ()
    start = len(ids) - ids[::-1].index(tokenizer.q_id)
    end = ids.index(tokenizer.a_id, start) if tokenizer.a_id in ids[start:] else len(ids)
    return tuple(int(i) for i in ids[start:end])


def extractive_params(params: SamplingParams, ids: Sequence[int], tokenizer: Any, bounds: bool = True,
                      opening: Opening = "typed") -> SamplingParams:
    """`params` restricted to a span of the prompt's passages that is not only the question's words
    (`common.sampling.span_continuations`), with `bounds` also starting and stopping at word edges
    on an `opening` word (`answer_bounds`); unchanged params when the prompt has no passages."""
    source = context_token_ids(ids, tokenizer)
    if not source:
        return params
    asked = question_token_ids(ids, tokenizer)
    starts, ends = answer_bounds(source, asked, tokenizer, opening) if bounds else (None, None)
    return replace(params, extract_from=source, extract_avoid=asked, extract_starts=starts, extract_ends=ends)


def extract_from_context(params: SamplingParams, ids: Sequence[int], tokenizer: Any) -> SamplingParams:
    """`params` restricted to copying a span of the prompt's passages (extractive decoding, either
    back end); a prompt without `<ctx> ... </ctx>` passages has nothing to copy and is refused."""
    out = extractive_params(params, ids, tokenizer)
    if not out.extract_from:
        raise InvalidInput("extractive decoding needs a prompt with <ctx> ... </ctx> passages")
    return out
