"""A parsed sentence as plain data: the reader's view of a spaCy `Doc`, so candidate spans and their
features are pure functions that tests can feed by hand (no spaCy import here; spaCy stays in `ner/`).

`parse_texts(nlp, texts)` runs any spaCy-like pipeline (tagger + parser + ner, e.g. en_core_web_sm)
and copies what the reader needs; a pipeline without a parser still works (no noun chunks, every
token its own head).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Token:
    """One token: character offsets into the parsed text, and its tags. `head` is an index into the
    same sentence (a root is its own head)."""

    text: str
    start: int
    end: int
    lemma: str
    pos: str  # universal POS (NOUN, PROPN, NUM, ...)
    tag: str  # fine-grained (NN, CD, WRB, ...)
    dep: str
    head: int
    ent: str  # entity label of the entity covering this token, "" outside entities
    like_num: bool
    is_stop: bool
    is_punct: bool


@dataclass(frozen=True)
class Parsed:
    """A parsed text: its tokens, entities (token index ranges [start, end) and label) and noun chunks."""

    text: str
    tokens: tuple[Token, ...]
    ents: tuple[tuple[int, int, str], ...] = ()
    noun_chunks: tuple[tuple[int, int], ...] = ()

    def __len__(self) -> int:
        return len(self.tokens)

    def span_text(self, i: int, j: int) -> str:
        """The text of tokens [i, j) as written (inner whitespace kept)."""
        return self.text[self.tokens[i].start : self.tokens[j - 1].end]


def from_doc(doc: Any) -> Parsed:
    """Copy a spaCy `Doc` (duck-typed) into a `Parsed`."""
    has_parse = bool(getattr(doc, "has_annotation", lambda _: False)("DEP"))
    toks = tuple(
        Token(text=t.text, start=t.idx, end=t.idx + len(t.text), lemma=(t.lemma_ or t.text).lower(),
              pos=t.pos_ or "X", tag=t.tag_ or "", dep=(t.dep_ or "") if has_parse else "",
              head=t.head.i if has_parse else t.i, ent=t.ent_type_ or "", like_num=bool(t.like_num),
              is_stop=bool(t.is_stop), is_punct=bool(t.is_punct))
        for t in doc
    )
    ents = tuple((e.start, e.end, e.label_) for e in doc.ents)
    chunks: tuple[tuple[int, int], ...] = ()
    if has_parse:
        try:
            chunks = tuple((c.start, c.end) for c in doc.noun_chunks)
        except (ValueError, NotImplementedError):  # a language without a noun-chunk iterator
            chunks = ()
    return Parsed(doc.text, toks, ents, chunks)


def parse_texts(nlp: Any, texts: Sequence[str], batch_size: int = 64) -> list[Parsed]:
    """Parse `texts` with a spaCy-like pipeline, in order."""
    return [from_doc(d) for d in nlp.pipe(list(texts), batch_size=batch_size)]


def content_lemmas(parsed: Parsed, skip: Iterable[str] = ()) -> set[str]:
    """Lemmas of the tokens that carry content (not stop words, punctuation or `skip`)."""
    skipped = set(skip)
    return {t.lemma for t in parsed.tokens if not t.is_stop and not t.is_punct and t.lemma not in skipped}
