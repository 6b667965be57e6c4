"""Questions a corpus asks of itself, for fitting the reader on the kind of text it will read.

SQuAD's questions paraphrase one sentence and want a noun phrase from it; a user of a documentation
corpus asks "How do I ...?" or "Which module ...?" and wants the name of the thing to use. Reference
documentation states those pairings itself, and they are read here without any corpus-specific rule:

- a title "NAME — description" (`reader.subject.title_subject`): the description, made a question,
  is answered by NAME ("Dump the Python traceback" -> "How do I dump the Python traceback?": faulthandler);
- a signature line followed by its description ("setraw(fd, when=...)" then "Change the mode of the
  file descriptor fd to raw."): "How do I change the mode of the file descriptor fd to raw?" is
  answered by setraw, and only by it: accepting the module's name as well taught the reader the easier
  answer (the page's title), so "How do I create a SAX parser?" got "xml.sax", not make_parser;
- the title's description when it is not imperative ("xml.sax --- Support for SAX2 parsers"), and a
  first sentence "This module provides ..." / "The atexit module defines ...": "Which module provides
  support for SAX2 parsers?" and "Which module defines functions to register ...?" are answered by the
  subject; without these the reader learns no "which module" answer from the corpus;
- a bare name line followed by "Raised when ..." (an exception's entry): "Which exception is raised
  when ...?" is answered by that name.

`is_imperative(description)` says whether a description starts with an imperative verb (a tagger
decides; the bench passes spaCy's, which reads the verb in its clause). Answers are checked as whole
words (`reader.subject.mentions`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from reader.subject import SEPARATORS, mentions, title_subject

_SIGNATURE = re.compile(r"^\s*([A-Za-z_][\w.]*)\((?:[^()]|\([^()]*\))*\)\s*(?:->.*)?$")
# a signature line or a bare name line (an entry without arguments)
_ENTRY = re.compile(r"^\s*([A-Za-z_][\w.]*)(?:\((?:[^()]|\([^()]*\))*\)\s*(?:->.*)?)?\s*$")
_FIRST_SENTENCE = re.compile(r"^(.+?[.!?])(?:\s|$)", re.DOTALL)
_THIS_MODULE = re.compile(r"^(?:This|The\s+(?P<name>[\w.]+))\s+(?:module|package)\s+(?P<rest>[a-z].*)$")
_PROSE = re.compile(r"^[A-Za-z][\w\s,()-]*\.?$")  # a title description that is one plain phrase
_RAISED = re.compile(r"^(?:This exception is |Exception )?[Rr]aised\s+(?P<rest>(?:when|if|by|on|for)\s.*)$")
MIN_WORDS, MAX_WORDS = 3, 24
# "Return the value" asks "How do I get the value?"
_VERB_AS_ASKED = {"return": "get", "returns": "get"}


@dataclass(frozen=True)
class CorpusQuestion:
    question: str
    answers: tuple[str, ...]  # names any of which answers it
    doc_id: str
    kind: str  # "title", "module", "signature" or "exception"


def _how_do_i(description: str, is_imperative: Callable[[str], bool]) -> str | None:
    """'How do I <description>?' when the description is an imperative clause of a sensible length."""
    words = description.strip().rstrip(".!?:;").split()
    if not MIN_WORDS <= len(words) <= MAX_WORDS:
        return None
    first = words[0]
    verb = _VERB_AS_ASKED.get(first.lower())
    if verb is None:
        if not first[:1].isupper() or not is_imperative(" ".join(words)):
            return None
        verb = first.lower()
    return "How do I " + " ".join([verb, *words[1:]]) + "?"


def _sentence_words(text: str) -> list[str] | None:
    """The words of a clause of sensible length that reads as prose (not cut at "e.g." inside brackets)."""
    words = text.strip().rstrip(".!?:;").split()
    ok = MIN_WORDS <= len(words) <= MAX_WORDS and text.count("(") == text.count(")")
    return words if ok else None


def _lower_first(words: list[str]) -> str:
    """The words as the rest of a question: a leading capital dropped unless the word is an acronym."""
    first = words[0]
    if len(first) > 1 and first[1:2].islower():
        first = first[0].lower() + first[1:]
    return " ".join([first, *words[1:]])


def title_question(doc_id: str, title: str, is_imperative: Callable[[str], bool]) -> CorpusQuestion | None:
    """"How do I <description>?" for an imperative title description, else "Which module provides
    <description>?"; answered by the title's one-word subject."""
    subject = title_subject(title)
    parts = SEPARATORS.split(" ".join(title.split()), maxsplit=1)
    if not subject or len(parts) < 2 or len(subject.split()) > 1:
        return None
    desc = parts[1][:1].upper() + parts[1][1:]
    q = _how_do_i(desc, is_imperative)
    if q:
        return CorpusQuestion(q, (subject,), doc_id, "title")
    words = _sentence_words(parts[1]) if _PROSE.match(parts[1]) else None
    if (words is None or words[0].lower() in {"this", "the", "a", "an"} or mentions(parts[1], subject)
            or _THIS_MODULE.match(parts[1])):
        return None
    if words[0].islower() and words[0].endswith("s") and not words[0].endswith("ss"):  # "implements ..."
        return CorpusQuestion(f"Which module {' '.join(words)}?", (subject,), doc_id, "title")
    return CorpusQuestion(f"Which module provides {_lower_first(words)}?", (subject,), doc_id, "title")


def module_question(doc_id: str, title: str, text: str) -> CorpusQuestion | None:
    """"Which module <verb> ...?" from a paragraph opening "This module <verb> ..." or "The <subject>
    module <verb> ...", answered by the subject."""
    subject = title_subject(title)
    if not subject or len(subject.split()) > 1:
        return None
    for para in re.split(r"\n\s*\n", text):
        first = _FIRST_SENTENCE.match(" ".join(para.split()))
        m = _THIS_MODULE.match(first.group(1)) if first else None
        if m and m.group("name") in (None, subject):
            words = _sentence_words(m.group("rest"))
            if words and not mentions(m.group("rest"), subject):
                return CorpusQuestion(f"Which module {' '.join(words)}?", (subject,), doc_id, "module")
    return None


def _entries(text: str, line: re.Pattern[str]) -> Iterator[tuple[str, str]]:
    """(name, first sentence of the next paragraph) for each one-line paragraph that `line` matches."""
    paragraphs = [p.strip() for p in re.split(r"\n\s*\n", text)]
    for p, nxt in zip(paragraphs, paragraphs[1:]):
        m = line.match(p)
        first = _FIRST_SENTENCE.match(" ".join(nxt.split())) if m and "\n" not in p else None
        if first:
            yield m.group(1), first.group(1)


def _name_answers(name: str) -> tuple[str, ...]:
    return (name, name.rsplit(".", 1)[-1]) if "." in name else (name,)


def signature_questions(doc_id: str, text: str, is_imperative: Callable[[str], bool]
                        ) -> Iterator[CorpusQuestion]:
    """One question per signature line whose next paragraph starts with an imperative sentence."""
    for name, first in _entries(text, _SIGNATURE):
        q = _how_do_i(first, is_imperative)
        if q is not None:
            yield CorpusQuestion(q, _name_answers(name), doc_id, "signature")


def exception_questions(doc_id: str, text: str) -> Iterator[CorpusQuestion]:
    """"Which exception is raised when ...?" for a bare name line (or a signature) whose next paragraph
    opens with "Raised when ..."."""
    for name, first in _entries(text, _ENTRY):
        r = _RAISED.match(first)
        words = _sentence_words(r.group("rest")) if r else None
        if words:
            q = f"Which exception is raised {' '.join(words)}?"
            yield CorpusQuestion(q, _name_answers(name), doc_id, "exception")


def corpus_questions(docs: list[tuple[str, str, str]], is_imperative: Callable[[str], bool]) -> list[CorpusQuestion]:
    """Every question the (doc_id, title, text) documents give, at most one per question text."""
    seen: set[str] = set()
    out: list[CorpusQuestion] = []
    for doc_id, title, text in docs:
        found = [title_question(doc_id, title, is_imperative), module_question(doc_id, title, text),
                 *signature_questions(doc_id, text, is_imperative), *exception_questions(doc_id, text)]
        for q in found:
            if q is not None and q.question.lower() not in seen:
                seen.add(q.question.lower())
                out.append(q)
    return out
