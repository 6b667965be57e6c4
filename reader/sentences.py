"""Candidate sentences of retrieved passages and the features that rank them against a question.

Sentences are `trainer.lm.qa_focus.passage_sentences` (the indexer's splitter, rejoined after
"e.g."-like breaks), with offsets into their passage. Features, all scale-free within one question:
the embedder's cosine between question and sentence (any `indexer.embedder.Embedder`, so a
domain-adapted one works too) and its gap to the best sentence; the BM25-style IDF-weighted overlap
of `qa_focus.sentence_scores` over all candidate sentences, its gap to the best, the share of the
question's words matched, question bigrams found; the best cosine and overlap of the sentence's
passage against the best passage's; whether the sentence holds the kind of word the question asks for
(`qa_bounds.answer_type`: a number or a name not asked about); the passage's retrieval rank and score;
the sentence's position in its passage and its length; whether it names its document's subject or a
code-shaped word the question does not (`reader.subject`), also per question class.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from indexer.bm25 import tokenize as bm25_words
from reader.question import question_class
from reader.subject import code_words, mentions, title_subject
from trainer.lm.qa_bounds import answer_type
from trainer.lm.qa_focus import passage_sentences, sentence_scores

_DIGIT = re.compile(r"\d")
_NUMBER_WORD = re.compile(r"\b(?:one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|twenty|thirty|forty|"
                          r"fifty|hundred|thousand|million|billion|dozen|half|first|second|third|January|February|"
                          r"March|April|May|June|July|August|September|October|November|December)\b", re.IGNORECASE)
_INNER_NAME = re.compile(r"(?<=[a-z,;:] )[A-Z][\w'’-]*")


@dataclass(frozen=True)
class Passage:
    """A passage to read: its text and where it came from. `doc_start` is the passage's offset in its
    document (a chunk's `start`), `rank` its 1-based retrieval rank and `score` its retrieval score
    (any scale; only ratios to the best passage's score are used)."""

    text: str
    doc_id: str = ""
    doc_start: int = 0
    rank: int = 1
    score: float = 1.0
    title: str = ""  # its document's title (`reader.subject.title_subject` reads the subject from it)


@dataclass(frozen=True)
class Sentence:
    passage: int  # index into the passages read
    index: int  # the sentence's position in its passage
    start: int  # offsets into the passage text
    end: int
    text: str
    last: bool = False  # the passage's last sentence


def split_sentences(passages: Sequence[Passage]) -> list[Sentence]:
    out: list[Sentence] = []
    for pi, p in enumerate(passages):
        spans = passage_sentences(p.text)
        out.extend(Sentence(pi, si, s, e, p.text[s:e], si == len(spans) - 1) for si, (s, e) in enumerate(spans))
    return out


def _bigrams(words: Sequence[str]) -> set[tuple[str, str]]:
    return set(zip(words, words[1:]))


def sentence_features(question: str, sentences: Sequence[Sentence], passages: Sequence[Passage],
                      cosines: np.ndarray | Sequence[float]) -> list[dict[str, float]]:
    """Named features of each candidate sentence; `cosines[i]` is the embedder's cosine similarity
    between the question and `sentences[i]`."""
    if not sentences:
        return []
    cos = np.asarray(cosines, dtype=np.float64)
    lex = sentence_scores([s.text for s in sentences], question)
    q_words = bm25_words(question)
    q_set, q_bi = set(q_words), _bigrams(q_words)
    best_cos, best_lex = float(cos.max()), max(lex)
    cos_order = np.argsort(-cos, kind="stable")
    cos_rank = np.empty(len(sentences), dtype=np.int64)
    cos_rank[cos_order] = np.arange(len(sentences))
    lex_order = sorted(range(len(lex)), key=lambda i: (-lex[i], i))
    lex_rank = {i: r for r, i in enumerate(lex_order)}
    best_score = max((p.score for p in passages), default=0.0)
    p_cos: dict[int, float] = {}
    p_lex: dict[int, float] = {}
    for i, s in enumerate(sentences):
        p_cos[s.passage] = max(p_cos.get(s.passage, -1.0), float(cos[i]))
        p_lex[s.passage] = max(p_lex.get(s.passage, 0.0), lex[i])
    best_p_cos, best_p_lex = max(p_cos.values()), max(p_lex.values())
    kind = answer_type(question) or ""
    asked_lower = {w.lower() for w in re.findall(r"\w+", question)}
    wh = question_class(question)
    asked_code = {w.lower() for w in code_words(question)}
    subjects = {pi: title_subject(p.title) for pi, p in enumerate(passages)}
    subjects = {pi: sub for pi, sub in subjects.items() if sub and not mentions(question, sub)}
    out = []
    for i, s in enumerate(sentences):
        words = bm25_words(s.text)
        p = passages[s.passage]
        f = {
            "bias": 1.0,
            "cos": float(cos[i]),
            "cos_gap": float(cos[i]) - best_cos,
            "cos_top": float(cos_rank[i] == 0),
            "cos_top3": float(cos_rank[i] < 3),
            "lex": lex[i],
            "lex_gap": lex[i] - best_lex,
            "lex_top": float(lex_rank[i] == 0),
            "lex_top3": float(lex_rank[i] < 3),
            "asked_frac": len(q_set & set(words)) / len(q_set) if q_set else 0.0,
            "bigrams": math.log1p(len(q_bi & _bigrams(words))),
            "rank_recip": 1.0 / max(p.rank, 1),
            "rank1": float(p.rank <= 1),
            "score_ratio": p.score / best_score if best_score > 0 else 1.0,
            "first": float(s.index == 0),
            "last": float(s.last),
            "log_pos": math.log1p(s.index),
            "log_words": math.log1p(len(s.text.split())),
            "passage_cos_gap": p_cos[s.passage] - best_p_cos,
            "passage_lex_gap": p_lex[s.passage] - best_p_lex,
        }
        if s.passage in subjects and mentions(s.text, subjects[s.passage]):
            f["subject"] = 1.0
            f[f"subject|wh={wh}"] = 1.0
        if any(w.lower() not in asked_code for w in code_words(s.text)):
            f["code"] = 1.0
            f[f"code|wh={wh}"] = 1.0
        if kind == "number":
            f["has_number|kind=number"] = float(bool(_DIGIT.search(s.text) or _NUMBER_WORD.search(s.text)))
        elif kind == "name":
            names = [m for m in _INNER_NAME.findall(s.text) if m.lower() not in asked_lower]
            f["has_new_name|kind=name"] = float(bool(names))
        out.append(f)
    return out
