"""What a question asks for: its wh-word class, the noun it asks about, the expected kind of answer
(`trainer.lm.qa_bounds.answer_type`) and its content lemmas (the words an answer rarely repeats)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from reader.parse import Parsed, content_lemmas
from trainer.lm.qa_bounds import answer_type

_WH = ("what", "which", "who", "whom", "whose", "when", "where", "why", "how")
# "how" + one of these is its own class: "how many" asks for a count, "how long" for a duration
HOW_KINDS = frozenset("many much long old far large big tall high often fast deep wide".split())
# "how do I ...", "how can one ...", "how to ...": a procedural question, whose answer is usually a
# means (a tool, a function, a step) rather than SQuAD's manner phrase ("How did they win?")
_HOW_TO = frozenset("do does can could should would to".split())


@dataclass(frozen=True)
class QuestionInfo:
    text: str
    wh: str  # what, which, who, when, where, why, how, how_many, ..., how_to, or "other"
    head: str  # lemma of the noun the wh-phrase asks about ("year" in "What year ..."), "" when none
    kind: str  # qa_bounds.answer_type: "number", "name" or "" (untyped)
    role: str  # the wh-phrase's dependency label (nsubj: "Who won?", dobj: "What did they win?"), "" when none
    lemmas: frozenset[str]  # content lemmas of the question


def wh_class(words: list[str]) -> tuple[str, int]:
    """The question's class from its words (the first wh-word, refined by the next word) and that
    wh-word's index (-1 when there is none)."""
    for i, w in enumerate(words):
        low = w.lower()
        if low in _WH:
            nxt = words[i + 1].lower() if i + 1 < len(words) else ""
            if low == "how" and nxt in HOW_KINDS:
                return "how_" + nxt, i
            if low == "how" and nxt in _HOW_TO:
                return "how_to", i
            return ("who" if low == "whom" else low), i
    return "other", -1


def question_class(text: str) -> str:
    """`wh_class` of a question not parsed (its words as a tokenizer would split them)."""
    return wh_class(re.findall(r"\w+|[^\w\s]", text))[0]


def question_info(parsed: Parsed) -> QuestionInfo:
    toks = parsed.tokens
    wh, wh_i = wh_class([t.text for t in toks])
    head, role = "", ""
    if wh_i >= 0:
        k = wh_i  # up from "How" in "How many people" / "What" in "What year" to the phrase's head
        for _ in range(2):
            t = toks[k]
            if t.dep in ("det", "amod", "advmod", "nummod") and t.head != k and toks[t.head].pos in (
                    "NOUN", "PROPN", "ADJ", "ADV"):
                k = t.head
        role = toks[k].dep
        if toks[wh_i].dep == "det" and toks[wh_i].head != wh_i:  # "What year ...": the wh-word's head noun
            head = toks[toks[wh_i].head].lemma
        else:  # the first noun soon after the wh-word ("what kind of", "how many people")
            for t in toks[wh_i + 1 : wh_i + 4]:
                if t.pos in ("NOUN", "PROPN"):
                    head = t.lemma
                    break
                if t.pos in ("VERB", "AUX"):
                    break
    skip = {t.text.lower() for t in toks if t.text.lower() in _WH}
    return QuestionInfo(parsed.text, wh, head, answer_type(parsed.text) or "", role, frozenset(content_lemmas(parsed, skip)))
