"""Reading answers out of retrieved passages: the best sentence, then the shortest span in it.

    from reader import Passage, load_weights, read
    from indexer.embedder import load_embedder

    weights = load_weights()                         # reader/weights.json, fitted by bench/reader.py
    embedder = load_embedder("all-MiniLM-L6-v2")     # or the workspace's (domain-adapted) embedder
    nlp = spacy.load("en_core_web_sm")               # tagger + parser + ner (ner.pipeline's NER-only
                                                     # pipeline works too, with weaker spans)
    passages = [Passage(h.chunk.text, h.chunk.doc_id, h.chunk.start, rank=i + 1, score=h.score,
                        title=h.chunk.title)
                for i, h in enumerate(hits)]         # hybrid search hits, best first
    answers = read(question, passages, embedder, nlp, weights, top_k=1)
    a = answers[0]   # a.text, a.start/a.end (passage), a.doc_start/a.doc_end (document),
                     # a.sentence with a.sentence_start/end and a.sentence_doc_start/end, a.probability

Steps: split the passages into sentences; score every sentence against the question (embedder cosine,
IDF-weighted overlap, retrieval rank and score, position: `reader.sentences`) with the sentence model;
parse the question and the `settings.sentences` best sentences; rank every token-aligned candidate
span of those sentences (`reader.spans`) with the span model, whose features include the sentence's
log probability. `read` returns the `top_k` best distinct answers (empty when no passage has text);
it reads the first `settings.passages` passages given (best first), as the weights were fitted.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from reader.model import ReaderWeights, load_weights
from reader.parse import Parsed, parse_texts
from reader.question import QuestionInfo, question_info
from reader.sentences import Passage, Sentence, sentence_features, split_sentences
from reader.spans import char_span, sentence_candidates
from reader.subject import names_a_means, qualified_name, title_subject


@dataclass(frozen=True)
class Answer:
    text: str
    passage: int  # index into the passages read
    doc_id: str
    start: int  # the answer's offsets in its passage
    end: int
    doc_start: int  # ... and in its document (passage.doc_start + start)
    doc_end: int
    sentence: str  # the sentence that contains the answer
    sentence_start: int  # its offsets in the passage
    sentence_end: int
    sentence_doc_start: int  # ... and in the document
    sentence_doc_end: int
    probability: float  # the span model's probability among all candidates read
    sentence_probability: float  # the sentence model's probability among all sentences
    name: str | None = None  # the span as its qualified name ("pty.spawn"; reader.subject.qualified_name)


@dataclass(frozen=True)
class Example:
    """The code block a how-to answer's sentence is in or introduces ("The following command enables
    versioning::" and the command under it), cut from the stored document (reader.answer.answer_example): a
    "How do I ...?" question asks for a procedure, which a reference shows as code, not as the reader's span."""

    text: str
    doc_start: int
    doc_end: int


@dataclass(frozen=True)
class SpanCandidate:
    sentence: int  # index into the sentences of `rank_sentences`
    start: int  # offsets in the sentence text
    end: int
    text: str
    log_prob: float


def cosines(embedder: Any, question: str, texts: Sequence[str], question_vec: np.ndarray | None = None,
            encode: Callable[[list[str]], np.ndarray] | None = None) -> np.ndarray:
    """Cosine of the question with each text under `embedder` (its vectors are unit length). A server
    passes the query vector retrieval already computed and an `encode` that caches sentence vectors."""
    qv = question_vec if question_vec is not None else embedder.encode([question], is_query=True)
    sv = encode(list(texts)) if encode is not None else embedder.encode(list(texts))
    return np.asarray(sv, np.float64) @ np.asarray(qv, np.float64).reshape(-1)


def rank_sentences(question: str, passages: Sequence[Passage], sentence_cosines: Sequence[float] | np.ndarray,
                   weights: ReaderWeights, sentences: Sequence[Sentence] | None = None
                   ) -> tuple[list[Sentence], list[float]]:
    """All sentences of the passages and their log probabilities under the sentence model."""
    sents = list(sentences) if sentences is not None else split_sentences(passages)
    feats = sentence_features(question, sents, passages, sentence_cosines)
    return sents, weights.sentence.log_probs(feats)


Chosen = tuple[Parsed, float, int, str]  # a sentence's parse, log probability, rank and document subject


def span_rows(q: QuestionInfo, chosen: Sequence[Chosen], max_tokens: int
              ) -> list[tuple[int, int, int, dict[str, float]]]:
    """(chosen index, token start, token end, features) of every candidate span of the chosen sentences."""
    rows = []
    for ci, (parsed, lp, rank, subject) in enumerate(chosen):
        spans, feats = sentence_candidates(q, parsed, max_tokens, subject)
        for (i, j), f in zip(spans, feats):
            f["sent_lp"] = lp
            f[f"sent_rank={rank}"] = 1.0
            rows.append((ci, i, j, f))
    return rows


def rank_spans(q: QuestionInfo, chosen: Sequence[Chosen], weights: ReaderWeights
               ) -> list[tuple[int, int, int, float]]:
    """(chosen index, char start, char end in that sentence, log prob), best first."""
    rows = span_rows(q, chosen, weights.settings.max_tokens)
    lps = weights.span.log_probs([r[3] for r in rows])
    out = []
    for (ci, i, j, _f), lp in zip(rows, lps):
        s, e = char_span(chosen[ci][0], i, j)
        out.append((ci, s, e, lp))
    out.sort(key=lambda r: (-r[3], r[0], r[1], r[2]))
    return out


def read(question: str, passages: Sequence[Passage], embedder: Any, nlp: Any, weights: ReaderWeights | None = None,
         top_k: int = 1, question_vec: np.ndarray | None = None,
         encode: Callable[[list[str]], np.ndarray] | None = None,
         parse: Callable[[list[str]], list[Parsed]] | None = None) -> list[Answer]:
    """The `top_k` best answers (distinct texts) to `question` in `passages`, best first. `encode` and
    `parse` replace embedding sentences and running `nlp` (reader.serve caches both; `nlp` is then unused)."""
    w = weights if weights is not None else load_weights()
    passages = list(passages)[: w.settings.passages]
    sents = split_sentences(passages)
    if not sents or not question.strip():
        return []
    cos = cosines(embedder, question, [s.text for s in sents], question_vec, encode)
    sents, s_lp = rank_sentences(question, passages, cos, w, sents)
    order = sorted(range(len(sents)), key=lambda i: (-s_lp[i], i))[: w.settings.sentences]
    texts = [question] + [sents[i].text for i in order]
    parsed = parse(texts) if parse is not None else parse_texts(nlp, texts)
    q = question_info(parsed[0])
    subjects = [title_subject(p.title) for p in passages]
    modules = [title_subject(p.title, keep_underscores=True) for p in passages]  # "py_compile" kept whole
    chosen = [(parsed[1 + r], s_lp[i], r, subjects[sents[i].passage]) for r, i in enumerate(order)]
    out: list[Answer] = []
    seen: set[str] = set()
    for ci, s, e, lp in rank_spans(q, chosen, w):
        sent = sents[order[ci]]
        text = sent.text[s:e]
        if q.wh == "how_to" and not names_a_means(text, sent.text, s, modules[sent.passage]):
            s, e, text = 0, len(sent.text), sent.text  # a fragment answers no "How do I ...?": its sentence does
        if text.lower() in seen:
            continue
        seen.add(text.lower())
        p = passages[sent.passage]
        start, end = sent.start + s, sent.start + e
        out.append(Answer(text, sent.passage, p.doc_id, start, end, p.doc_start + start, p.doc_start + end,
                          sent.text, sent.start, sent.end, p.doc_start + sent.start, p.doc_start + sent.end,
                          float(np.exp(lp)), float(np.exp(s_lp[order[ci]])),
                          qualified_name(text, sent.text, s, modules[sent.passage])))
        if len(out) >= top_k:
            break
    return out
