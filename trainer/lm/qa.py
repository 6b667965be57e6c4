"""Answering from context: the fixed QA prompt, QA JSONL loading, synthetic cloze questions, EM/F1.

Prompt (also `tokenizer.PROMPT_FORMAT`, recorded in the manifest):
    <s><ctx> passage </ctx>...<q> question <a> answer</s>
QA examples are stored in the same memmap layout as LM data (trainer/lm/data.py): the prefix holds
context + question + `<a>`, the target holds answer + `</s>`, so the loss is on the answer only
(several pairs per row after one shared context when packed; see `build_qa_dataset`).

Synthetic questions: a named entity (from the docstore's NER) or, failing that, a capitalised phrase
or number is removed from a sentence, and a wh-word chosen by its label leads the rest ("fronted", the
default) or takes the span's place ("inplace"); the removed span is the answer and the chunk the
sentence came from is the context. The model learns to find and copy
a span, which is what extractive answering needs. Counterfactual copies of a chunk (its entities
swapped for others of the same label) make answers that only the passage can give; lookup questions
(a phrase of the passage asked for, the words after it answered) practise finding the place alone.
"""

from __future__ import annotations

import bisect
import json
import math
import random
import re
import string
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np

from common.errors import InvalidInput
from common.jsonl import iter_jsonl
from common.sampling import SamplingParams
from common.settings import LmConfig
from indexer.bm25 import tokenize as bm25_words
from indexer.chunking import sentence_spans
from trainer.lm.data import ChunkLike, _write
from trainer.lm.tokenizer import BOS_ID, Tokenizer


@dataclass(frozen=True)
class QaExample:
    question: str
    answer: str
    context: tuple[str, ...] = ()
    doc_id: str = ""


def qa_prompt_ids(tokenizer: Tokenizer, contexts: Sequence[str], question: str, passage_len: int) -> list[int]:
    """`<s><ctx> c </ctx>...<q> question <a>`: the ids the model continues with the answer."""
    ids = [BOS_ID]
    for c in contexts:
        ids += [tokenizer.ctx_open, *tokenizer.encode(c)[:passage_len], tokenizer.ctx_close]
    return ids + [tokenizer.q_id, *tokenizer.encode(question)[:64], tokenizer.a_id]


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


def extract_from_context(params: SamplingParams, ids: Sequence[int], tokenizer: Any) -> SamplingParams:
    """`params` restricted to copying a span of the prompt's passages (extractive decoding, either
    back end); a prompt without `<ctx> ... </ctx>` passages has nothing to copy and is refused."""
    out = extractive_params(params, ids, tokenizer)
    if not out.extract_from:
        raise InvalidInput("extractive decoding needs a prompt with <ctx> ... </ctx> passages")
    return out


def load_qa_jsonl(path: Path) -> list[QaExample]:
    """Read `{"question", "answer"[, "context"]}` lines; any bad line is an InvalidInput naming it."""
    out: list[QaExample] = []
    for where, row in iter_jsonl(path, "QA file"):
        if not isinstance(row, dict) or not isinstance(row.get("question"), str) or not isinstance(row.get("answer"), str):
            raise InvalidInput(f"{where}: needs string fields 'question' and 'answer'")
        ctx = row.get("context")
        if ctx is not None and not isinstance(ctx, (str, list)):
            raise InvalidInput(f"{where}: 'context' must be a string or a list of strings")
        contexts = (ctx,) if isinstance(ctx, str) else tuple(str(c) for c in (ctx or ()))
        out.append(QaExample(row["question"].strip(), row["answer"].strip(), contexts))
    if not out:
        raise InvalidInput(f"{path} holds no QA examples")
    return out


_WH = {"PERSON": "who", "ORG": "what organisation", "GPE": "where", "LOC": "where", "DATE": "when",
       "TIME": "when", "CARDINAL": "how many", "QUANTITY": "how much", "PERCENT": "what percentage",
       "MONEY": "how much", "NORP": "which group", "EVENT": "what event", "WORK_OF_ART": "what"}
_STARTS_SENTENCE = re.compile(r"[\"'(\[]?[A-Z0-9]")
_PHRASE = re.compile(r"\b(?:[A-Z][\w-]+(?:\s+(?:of|the|de|and)?\s*[A-Z][\w-]+)*|\d(?:[\d,.]*\d)?%?)")  # no final stop

Spans = Callable[[ChunkLike], list[tuple[int, int, str]]]  # (start, end, label) chunk-relative


def regex_spans(chunk: ChunkLike) -> list[tuple[int, int, str]]:
    """Fallback answer candidates without NER: capitalised phrases (not sentence-initial) and numbers."""
    out = []
    for m in _PHRASE.finditer(chunk.text):
        before = chunk.text[max(0, m.start() - 2) : m.start()]
        if m.start() == 0 or before.rstrip().endswith((".", "!", "?")):
            continue
        label = "CARDINAL" if m.group()[0].isdigit() else "PHRASE"
        out.append((m.start(), m.end(), label))
    return out


def noun_phrase_spans(doc: Any, head_nouns: bool = False) -> list[tuple[int, int, str]]:
    """Answer candidates from a parsed spaCy Doc's noun chunks (a third of SQuAD's answers are common
    noun phrases, which NER never proposes); pronouns and determiners-only chunks are skipped.

    `head_nouns` labels a chunk whose common-noun head follows a content word "NP:<head lemma>", so its
    question asks "What army ...?" for "the Red Army", as SQuAD's "What" questions often name the kind
    of thing asked; the answer then still opens on a word the question lacks ("Red")."""
    out = []
    for nc in doc.noun_chunks:
        if nc.root.pos_ == "PRON" or all(t.is_stop for t in nc):
            continue
        modified = any(not t.is_stop and not t.is_punct for t in nc if t.i < nc.root.i)
        head = head_nouns and nc.root.pos_ == "NOUN" and modified and nc.root.i == nc.end - 1
        out.append((nc.start_char, nc.end_char, f"NP:{(nc.root.lemma_ or nc.root.text).lower()}" if head else "NP"))
    return out


def passage_sentences(text: str) -> list[tuple[int, int]]:
    """The indexer's sentences, rejoined where a piece starts lower-case (after "e.g." and the like)."""
    merged: list[tuple[int, int]] = []
    for s, e in sentence_spans(text):
        if merged and not _STARTS_SENTENCE.match(text, s):
            merged[-1] = (merged[-1][0], e)
        else:
            merged.append((s, e))
    return merged


def question_sentences(text: str, min_chars: int = 20, max_chars: int = 400) -> list[tuple[int, int]]:
    """`passage_sentences` without a closing quote after the final stop; overlong ones are skipped, not
    cut, so a question never starts mid-sentence."""
    out = []
    for s, e in passage_sentences(text):
        if e - s >= 2 and text[e - 1] in "\"')]" and text[e - 2] in ".!?":
            e -= 1
        if min_chars <= e - s <= max_chars:
            out.append((s, e))
    return out


_PREPOSITION = re.compile(r"\b(?:in|on|at|by|of|from|to|for|with|since|during|until|after|before|about|than|as)\s*$",
                          re.IGNORECASE)
_FUNCTION_WORDS = {"the", "a", "an", "it", "its", "this", "that", "these", "those", "in", "on", "at", "by", "of",
                   "from", "to", "for", "with", "during", "after", "before", "since", "there", "they", "he",
                   "she", "we", "his", "her", "their", "many", "some", "most", "each", "all", "both", "as"}
Style = Literal["inplace", "fronted", "inverted", "mixed"]
_AUX = {"is", "are", "was", "were", "has", "have", "had", "can", "could", "will", "would", "may", "might", "must",
        "should", "do", "does", "did"}


def invert_auxiliary(rest: str, reach: int = 6) -> str:
    """Subject-auxiliary inversion, as English questions have it: "the game was played ..." -> "was the game
    played ...", when an auxiliary is among the first `reach` words and no comma comes before it."""
    words = rest.split(" ")
    for i, w in enumerate(words[:reach]):
        if w.lower() in _AUX:
            return rest if i == 0 else " ".join([w.lower(), *words[:i], *words[i + 1:]])
        if w.endswith((",", ";", ":")):
            break
    return rest


def cloze_question(sentence: str, start: int, end: int, label: str, fronted: bool, window: int = 0,
                   invert: bool = False) -> str:
    """The question for span [start, end) of `sentence`: the wh-word in the span's place ("inplace"),
    or leading the rest of the sentence with the preposition before the span dropped ("fronted",
    Lewis et al. 2019's "wh + cloze", closer to how people ask), `invert` also putting an auxiliary
    before its subject ("inverted": "When was the game played?"). `window` > 0 keeps only that many
    words each side of the span, so the question is as short as a real one and the model must find
    the answer from a few nearby words rather than from the whole sentence repeated."""
    wh = _WH.get(label) or ("what " + label[3:] if label.startswith("NP:") else "what")  # NP:army -> what army
    before, after = sentence[:start], sentence[end:]
    if window > 0:
        kept_before = before.split()[-window:]
        before = " ".join(kept_before) + (" " if before[-1:].isspace() and kept_before else "")
        after = (" " if after[:1].isspace() else "") + " ".join(after.split()[:window])
    if not fronted:
        return (before + wh + after).strip().rstrip(".!?") + "?"
    before = _PREPOSITION.sub("", before.rstrip()).rstrip(" ,;:")
    rest = " ".join((before + " " + after.lstrip(" ,;:")).split()).rstrip(".!? ")
    first = rest.split(" ", 1)[0]
    if first.lower() in _FUNCTION_WORDS and first[:1].isupper():  # capitalised only as the sentence's start
        rest = first.lower() + rest[len(first):]
    if invert:
        rest = invert_auxiliary(rest)
    return f"{wh[0].upper()}{wh[1:]} {rest}?" if rest else f"{wh[0].upper()}{wh[1:]}?"


def add_noise(question: str, p: float, rng: random.Random) -> str:
    """Lewis et al.'s noisy cloze (after Lample et al. 2018): each word but the first is dropped with
    probability p and the rest shuffled locally (no word moves more than 3 places), so the model
    cannot rely on the question repeating the sentence word for word, which real questions never do."""
    words = question.rstrip("?").split()
    if p <= 0 or len(words) < 3:
        return question
    kept = [words[0]] + [w for w in words[1:] if rng.random() >= p]
    order = sorted(range(1, len(kept)), key=lambda i: i + rng.uniform(0, 3))
    return " ".join([kept[0]] + [kept[i] for i in order]) + "?"


def counterfactual_text(
    text: str, spans: Sequence[tuple[int, int, str]], pool: dict[str, list[str]], rng: random.Random
) -> tuple[str, list[tuple[int, int, str]]]:
    """`text` with every span replaced by another corpus span of the same label (the same original by the
    same replacement), and the spans' new offsets. Questions on such a passage cannot be answered from
    facts memorised in pre-training, only by copying from the passage (Longpre et al. 2021's entity
    substitution), which is what answering from retrieved context needs."""
    mapping: dict[str, str] = {}
    absent: dict[str, list[str]] = {}  # per label: the pool's spans this text does not already hold
    pieces: list[str] = []
    out: list[tuple[int, int, str]] = []
    pos = length = 0
    for s, e, label in sorted(spans):
        if s < pos:  # overlaps the previous span: left as it is
            continue
        original = text[s:e]
        if original not in mapping:  # one-to-one: two names never merge into one, so every question stays answerable
            if label not in absent:
                absent[label] = [t for t in pool.get(label, ()) if t not in text]
            taken = set(mapping.values())
            others = [t for t in absent[label] if t not in taken]
            mapping[original] = rng.choice(others) if others else original
        new = mapping[original]
        pieces += [text[pos:s], new]
        length += s - pos
        out.append((length, length + len(new), label))
        length += len(new)
        pos = e
    pieces.append(text[pos:])
    return "".join(pieces), out


def lookup_questions(text: str, doc_id: str, rng: random.Random, n: int) -> list[QaExample]:
    """`n` lookup questions on a passage: a phrase of 3-6 of its words is the question and the 1-4 words
    after it the answer. They teach the step cloze questions leave implicit (find where the question's
    words are in the passage, then copy from there) with an answer that only that place gives."""
    out: list[QaExample] = []
    sentences = question_sentences(text)
    for _ in range(n * 4 if sentences else 0):  # a few draws may not fit
        a, b = rng.choice(sentences)
        words = text[a:b].rstrip(".!?").split()
        k, m = rng.randint(3, 6), rng.randint(1, 4)
        if len(words) < k + m:
            continue
        i = rng.randrange(len(words) - k - m + 1)
        phrase, answer = " ".join(words[i : i + k]), " ".join(words[i + k : i + k + m]).strip(",;:")
        if answer and text.count(phrase) == 1:  # one place only: the answer is not ambiguous
            out.append(QaExample(f'What comes after "{phrase}"?', answer, (text,), doc_id))
        if len(out) >= n:
            break
    return out


def cloze_questions(
    chunks: Iterable[ChunkLike], spans: Spans = regex_spans, per_chunk: int = 2, seed: int = 0,
    per_sentence: int = 1, style: Style = "fronted", noise: float = 0.0, window: int = 0, counterfactual: int = 0,
    lookup: int = 0,
) -> list[QaExample]:
    """Synthetic questions: a span removed from one of the chunk's sentences becomes the answer.

    `style` places the wh-word (see `cloze_question`; "mixed" draws fronted or inplace per question), `window`
    shortens the question to the words near the answer and `noise` > 0 perturbs them (`add_noise`).
    `counterfactual` > 0 adds that many copies of each chunk with its spans swapped for other same-label
    spans of the corpus (`counterfactual_text`), each with its own questions; `lookup` > 0 adds that many
    `lookup_questions` to each passage. A passage's questions are consecutive in the result, so
    `build_qa_dataset(pack=...)` can put them in one row after it.
    """
    rng = random.Random(seed)
    chunks = list(chunks)
    found = [spans(c) for c in chunks]
    pool: dict[str, list[str]] = {}
    if counterfactual:
        for c, sp in zip(chunks, found):
            for s, e, label in sp:
                pool.setdefault(label, []).append(c.text[s:e])
        pool = {k: sorted(set(v)) for k, v in pool.items()}
    out: list[QaExample] = []
    for chunk, sp in zip(chunks, found):
        out += _passage_questions(chunk.text, sp, chunk.doc_id, rng, per_chunk, per_sentence, style, noise, window)
        out += lookup_questions(chunk.text, chunk.doc_id, rng, lookup) if lookup else []
        for _ in range(counterfactual):
            text, moved = counterfactual_text(chunk.text, sp, pool, rng)
            out += _passage_questions(text, moved, chunk.doc_id, rng, per_chunk, per_sentence, style, noise, window)
    return out


def synthetic_options(cfg: LmConfig) -> dict[str, Any]:
    """The `lm` settings that shape synthetic questions, as `cloze_questions` keywords: one place for every caller."""
    return {"style": cfg.synthetic_style, "noise": cfg.synthetic_noise, "window": cfg.synthetic_window,
            "counterfactual": cfg.synthetic_counterfactual, "lookup": cfg.synthetic_lookup}


def _passage_questions(
    text: str, spans: Sequence[tuple[int, int, str]], doc_id: str, rng: random.Random, per_chunk: int,
    per_sentence: int, style: Style, noise: float, window: int,
) -> list[QaExample]:
    if per_chunk < 1:  # lookup questions only
        return []
    sentences = question_sentences(text)
    cands = []
    for s, e, label in spans:
        sent = next(((a, b) for a, b in sentences if a <= s and e <= b), None)
        if sent is None or e - s > 60 or e - s < 2 or (e - s) > 0.6 * (sent[1] - sent[0]):
            continue
        cands.append((s, e, label, sent))
    rng.shuffle(cands)
    used: Counter[tuple[int, int]] = Counter()
    out: list[QaExample] = []
    for s, e, label, sent in cands:
        if used[sent] >= per_sentence:
            continue
        used[sent] += 1
        a, b = sent
        fronted = style in ("fronted", "inverted") or (style == "mixed" and rng.random() < 0.5)
        question = cloze_question(text[a:b], s - a, e - a, label, fronted, window, invert=style == "inverted")
        question = add_noise(question, noise, rng)
        out.append(QaExample(question, text[s:e].strip(), (text,), doc_id))
        if len(out) >= per_chunk:
            break
    return out


def build_qa_dataset(
    examples: Sequence[QaExample],
    tokenizer: Tokenizer,
    out_dir: Path,
    passage_len: int,
    retrieve: Callable[[str], list[str]] | None = None,
    max_answer: int = 32,
    pack: int = 1,
    max_row: int | None = None,
    focus: int = 0,
) -> dict[str, int]:
    """Write QA examples in the LM memmap layout: prefix = context + question, target = answer + `</s>`.

    With `pack` > 1, consecutive examples with the same context share one row (up to `pack`
    questions and `max_row` tokens): `ctx <q> q1 <a> a1 </s> <q> q2 <a> a2 </s> ...`, with the loss on
    the answers only (loss_mask.npy). The first pair is exactly the inference prompt; the rest multiply
    the answer tokens a row teaches, which is what a copy skill learned from scratch is short of.
    `focus` > 0 keeps only that many sentences of each passage, chosen by the question
    (`focus_passage`), as inference then does; pairs share a row only when their kept sentences do.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    prefixes: list[list[int]] = []
    targets: list[list[int]] = []
    masks: list[list[int]] = []
    last_ctx: tuple[str, ...] | None = None
    for ex in examples:
        contexts = ex.context if ex.context else tuple(retrieve(ex.question) if retrieve else ())
        contexts = tuple(focus_contexts(contexts, ex.question, focus))
        answer = [*tokenizer.encode(ex.answer)[:max_answer], tokenizer.eos_id]  # "▁Answer": the dummy-prefix space
        if pack > 1 and ex.context and contexts == last_ctx:
            more = [tokenizer.q_id, *tokenizer.encode(ex.question)[:64], tokenizer.a_id]
            fits = max_row is None or len(prefixes[-1]) + len(targets[-1]) + len(more) + len(answer) <= max_row
            if fits and targets[-1].count(tokenizer.eos_id) < pack:
                targets[-1] += more + answer
                masks[-1] += [0] * len(more) + [1] * len(answer)
                continue
        prefixes.append(qa_prompt_ids(tokenizer, contexts, ex.question, passage_len)[1:])  # BOS is added per row
        targets.append(answer)
        masks.append([1] * len(answer))
        last_ctx = contexts
    if not targets:
        raise InvalidInput("no QA examples to train on")
    P, T = max(map(len, prefixes)), max(map(len, targets))
    pre = np.full((len(targets), P), -1, np.int32)
    tgt = np.full((len(targets), T), -1, np.int32)
    msk = np.zeros((len(targets), T), np.int32)
    lens = np.zeros((len(targets), 2), np.int32)
    for i, (p, t, m) in enumerate(zip(prefixes, targets, masks)):
        pre[i, : len(p)], tgt[i, : len(t)], msk[i, : len(m)], lens[i] = p, t, m, (len(t), len(p))
    _write(out_dir / "targets.npy", tgt)
    _write(out_dir / "prefix.npy", pre)
    _write(out_dir / "lens.npy", lens)
    _write(out_dir / "loss_mask.npy", msk)
    meta = {"rows": len(targets), "questions": len(examples), "target_tokens": int(msk.sum()), "target_len": T,
            "prefix_len": P, "longest_row": int(lens.sum(axis=1).max()), "qa": True}
    (out_dir / "meta.json").write_text(json.dumps(meta, indent=2), encoding="utf-8")
    return meta


def normalize_answer(s: str) -> str:
    """SQuAD's official normalisation: lower case, no punctuation, no articles, single spaces."""
    s = s.lower()
    s = "".join(ch for ch in s if ch not in set(string.punctuation))
    s = re.sub(r"\b(a|an|the)\b", " ", s)
    return " ".join(s.split())


def exact_match(pred: str, golds: Sequence[str]) -> float:
    return float(any(normalize_answer(pred) == normalize_answer(g) for g in golds))


def token_f1(pred: str, golds: Sequence[str]) -> float:
    """Best SQuAD token F1 of a prediction against any gold answer (0..1)."""
    best = 0.0
    p = normalize_answer(pred).split()
    for g in golds:
        gt = normalize_answer(g).split()
        common = Counter(p) & Counter(gt)
        same = sum(common.values())
        if same == 0:
            continue
        prec, rec = same / len(p), same / len(gt)
        best = max(best, 2 * prec * rec / (prec + rec))
    return best
