"""Synthetic questions for QA tuning, made from the corpus itself.

A named entity (from the docstore's NER) or, failing that, a capitalised phrase or number is removed
from a sentence, and a wh-word chosen by its label leads the rest ("fronted", the default) or takes
the span's place ("inplace"); the removed span is the answer and the chunk the sentence came from is
the context. The model learns to find and copy a span, which is what extractive answering needs.
Counterfactual copies of a chunk (its entities swapped for others of the same label) make answers
that only the passage can give; lookup questions (a phrase of the passage asked for, the words after
it answered) practise finding the place alone.
"""

from __future__ import annotations

import random
import re
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Literal

from common.settings import LmConfig
from trainer.lm.data import ChunkLike
from trainer.lm.qa import QaExample
from trainer.lm.qa_focus import passage_sentences

_WH = {"PERSON": "who", "ORG": "what organisation", "GPE": "where", "LOC": "where", "DATE": "when",
       "TIME": "when", "CARDINAL": "how many", "QUANTITY": "how much", "PERCENT": "what percentage",
       "MONEY": "how much", "NORP": "which group", "EVENT": "what event", "WORK_OF_ART": "what"}
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
