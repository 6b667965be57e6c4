"""Questions a corpus asks of itself, for fitting the reader on the kind of text it will read.

SQuAD's questions paraphrase one sentence and want a noun phrase from it; a user of a documentation
corpus asks "How do I ...?" and wants the name of the thing to use. Reference documentation states
that pairing twice over, and both are read here without any corpus-specific rule:

- a title "NAME — description" (`reader.subject.title_subject`): the description, made a question,
  is answered by NAME ("Dump the Python traceback" -> "How do I dump the Python traceback?": faulthandler);
- a signature line followed by its description ("setraw(fd, when=...)" then "Change the mode of the
  file descriptor fd to raw."): "How do I change the mode of the file descriptor fd to raw?" is
  answered by setraw (or by its document's subject).

`is_imperative(description)` says whether a description starts with an imperative verb (a tagger
decides; the bench passes spaCy's, which reads the verb in its clause). Answers are checked as whole words (`reader.subject.mentions`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from reader.subject import SEPARATORS, title_subject

_SIGNATURE = re.compile(r"^\s*([A-Za-z_][\w.]*)\((?:[^()]|\([^()]*\))*\)\s*(?:->.*)?$")
_FIRST_SENTENCE = re.compile(r"^(.+?[.!?])(?:\s|$)", re.DOTALL)
MIN_WORDS, MAX_WORDS = 3, 24
# "Return the value" asks "How do I get the value?"
_VERB_AS_ASKED = {"return": "get", "returns": "get"}


@dataclass(frozen=True)
class CorpusQuestion:
    question: str
    answers: tuple[str, ...]  # names any of which answers it
    doc_id: str
    kind: str  # "title" or "signature"


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


def title_question(doc_id: str, title: str, is_imperative: Callable[[str], bool]) -> CorpusQuestion | None:
    subject = title_subject(title)
    parts = SEPARATORS.split(" ".join(title.split()), maxsplit=1)
    if not subject or len(parts) < 2 or len(subject.split()) > 1:
        return None
    q = _how_do_i(parts[1], is_imperative)
    return CorpusQuestion(q, (subject,), doc_id, "title") if q else None


def signature_questions(doc_id: str, title: str, text: str, is_imperative: Callable[[str], bool]
                        ) -> Iterator[CorpusQuestion]:
    """One question per signature line whose next paragraph starts with an imperative sentence."""
    subject = title_subject(title)
    paragraphs = [p.strip() for p in re.split(r"\n\s*\n", text)]
    for p, nxt in zip(paragraphs, paragraphs[1:]):
        m = _SIGNATURE.match(p)
        if not m or "\n" in p:
            continue
        first = _FIRST_SENTENCE.match(" ".join(nxt.split()))
        q = _how_do_i(first.group(1), is_imperative) if first else None
        if q is None:
            continue
        name = m.group(1)
        answers = (name, name.rsplit(".", 1)[-1]) if "." in name else (name,)
        if subject and len(subject.split()) == 1:
            answers = (*answers, subject)
        yield CorpusQuestion(q, tuple(dict.fromkeys(answers)), doc_id, "signature")


def corpus_questions(docs: list[tuple[str, str, str]], is_imperative: Callable[[str], bool]) -> list[CorpusQuestion]:
    """Every question the (doc_id, title, text) documents give, at most one per question text."""
    seen: set[str] = set()
    out: list[CorpusQuestion] = []
    for doc_id, title, text in docs:
        found = [title_question(doc_id, title, is_imperative), *signature_questions(doc_id, title, text, is_imperative)]
        for q in found:
            if q is not None and q.question.lower() not in seen:
                seen.add(q.question.lower())
                out.append(q)
    return out
