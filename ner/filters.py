"""Entity filters and facets for search.

`--entity ORG` keeps chunks with at least one ORG entity, `--entity ORG:pfizer` those with an ORG
named by "pfizer": its normalised form, or a run of its whole words ("pfizer inc", "pfizer", not "pfiz"),
because people filter by the name they remember, not by the span the tagger chose; several filters
combine with AND. The filters become a set of
allowed chunk ids (from the docstore's entity table) that the Searcher applies inside both
retrievers, so a filtered query still returns k hits when k matching chunks exist, unlike a
post-filter of the unfiltered top k. Facets count, among the hits, how many carry each label and
each (label, value).

Facets and the entity listing show only informative entities (`informative_entity`): a small NER
model tags numbers, code (`parser.parse_args`), lowercase common words (`api`, `doc`) and extraction
glitches as names, and such facets say nothing about the hits. The rule reads only general signals
(the label's kind, the casing of the mentions, the shape of the text), no word lists; its precision
and recall on the demo corpus are measured by bench/facets.py. Filters still accept every entity.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

from common.errors import InvalidInput
from indexer.types import Entity, Hit
from ner.enrich import normalize_entity


@dataclass(frozen=True)
class EntityFilter:
    label: str
    norm: str | None = None

    def __str__(self) -> str:
        return self.label if self.norm is None else f"{self.label}:{self.norm}"


class EntityStore(Protocol):
    """The part of the DocStore filters and facets need."""

    def entity_norms(self, label: str, containing: str = "") -> list[str]: ...

    def chunk_ids_with_entity(self, label: str, norms: Sequence[str] | None = None) -> set[int]: ...

    def entities_for(self, chunk_ids: Iterable[int]) -> dict[int, list[Entity]]: ...


# ---- which entities are worth a facet -------------------------------------------------------------
# spaCy's OntoNotes labels: names of things, and values (amounts, points in time).
NAME_LABELS = frozenset({"PERSON", "NORP", "FAC", "ORG", "GPE", "LOC", "PRODUCT", "EVENT", "WORK_OF_ART", "LAW",
                         "LANGUAGE"})
VALUE_LABELS = frozenset({"DATE", "TIME", "PERCENT", "MONEY", "QUANTITY", "ORDINAL", "CARDINAL"})
# Characters and shapes that occur in code and markup, not in names: identifiers joined by a dot
# (`list.sort`, not `u.s` or `martin v. löwis`), underscores, brackets, operators, reST roles.
_CODE_SHAPE = re.compile(r"[_()\[\]{}<>=`\\|*@$%^~;#]|::|->|[^\W\d_][\w]+\.[^\W\d_][\w]+")


_WORD = re.compile(r"[^\W\d_]+")
_CAMEL_HUMP = re.compile(r"[A-Z][a-z]+")
COMMON_SHARE = 0.5  # a word the text writes in lowercase at least this often is a common word


class CaseStats:
    """How often each word is written in lowercase in a body of text: names are capitalised wherever
    they occur, common words only at the start of a sentence or in a heading ("Files", "License")."""

    def __init__(self, texts: Iterable[str] = ()) -> None:
        self.total: Counter[str] = Counter()
        self.lower: Counter[str] = Counter()
        for t in texts:
            self.add(t)

    def add(self, text: str) -> None:
        for w in _WORD.findall(text):
            key = w.lower()
            self.total[key] += 1
            if w == key:
                self.lower[key] += 1

    def lowercase_share(self, word: str) -> float | None:
        n = self.total.get(word.lower(), 0)
        return None if n == 0 else self.lower[word.lower()] / n

    def camel_compound(self, text: str) -> bool:
        """One token joining two or more capitalised common words (`TypeError`, `SelectSelector`): how
        code names its classes; `CPython`, `macOS` or `WebKit`-like brands with uncommon parts pass."""
        token = text.strip()
        humps = _CAMEL_HUMP.findall(token)
        return (" " not in token and len(humps) >= 2 and "".join(humps) == token
                and all((self.lowercase_share(h) or 0.0) >= COMMON_SHARE for h in humps))

    def common(self, text: str) -> bool:
        """Every word of `text` is mostly written in lowercase (a phrase of common words)."""
        words = _WORD.findall(text)
        shares = [self.lowercase_share(w) for w in words]
        return bool(words) and all(s is not None and s >= COMMON_SHARE for s in shares)


def entity_problem(label: str, mentions: Sequence[str], case: CaseStats | None = None) -> str | None:
    """Why an entity (its label and the surface text of its mentions) carries no information as a facet;
    None when it is worth showing.

    - value: DATE, CARDINAL, MONEY... are amounts and points in time, not names of things;
    - no letters: `3.4`, `#`, `2001-2026`; one character: `c`;
    - code: the text has a code or markup shape (`parser.parse_args`, `init__.py`, ``meth:`get``);
    - glitch: a mention runs across a line break (`Keyword-Only Arguments\n\n4.8.3.4`) or starts with
      punctuation (`--verbose`);
    - lowercase: most mentions of a name-type entity (PERSON, ORG, GPE, ...) have no capital letter:
      names are capitalised in English text, so `api`, `asyncio`, `stdin` tagged ORG are a small
      model's guesses. Labels of a trained or gazetteer model (DRUG...) are exempt: lowercase is normal there;
    - common words: with `case` (word casing counted over the corpus or the hits' text), every word of a
      name-type entity is mostly written in lowercase there: a capitalised heading or sentence start
      (`Files`, `Data Structures`) tagged as a name; acronyms written in capitals (`XML`) are exempt,
      as a module or file name may spell them in lowercase; and a single token made of capitalised
      common words (`TypeError`, `CompilerFlag`) is a class name: code.
    """
    texts = [" ".join(t.split()) for t in mentions if t.strip()]
    if label in VALUE_LABELS:
        return "value"
    if not texts:
        return "empty"
    norm = normalize_entity(texts[0])
    if not any(c.isalpha() for c in norm):
        return "no letters"
    if len(norm) < 2:
        return "one character"
    if any(_CODE_SHAPE.search(t) for t in texts):
        return "code"
    if any("\n" in t.strip() for t in mentions) or not norm[0].isalnum():
        return "glitch"
    if label in NAME_LABELS and 2 * sum(t == t.lower() for t in texts) > len(texts):
        return "lowercase"
    acronym = 2 * sum(t.isupper() for t in texts) > len(texts)  # XML, SAX: capitals are their spelling
    if label in NAME_LABELS and case is not None and not acronym and case.common(norm):
        return "common words"
    if case is not None and 2 * sum(case.camel_compound(t) for t in texts) > len(texts):
        return "code"
    return None


def informative_entity(label: str, mentions: Sequence[str] | str, case: CaseStats | None = None) -> bool:
    """True when the entity is worth a facet (see `entity_problem`)."""
    return entity_problem(label, [mentions] if isinstance(mentions, str) else mentions, case) is None


def parse_entity_filter(spec: str) -> EntityFilter:
    """`LABEL` or `LABEL:value`; the value is normalised like stored entities (case, articles...)."""
    label, sep, value = spec.strip().partition(":")
    label = label.strip()
    if not label or any(c.isspace() for c in label):
        raise InvalidInput(f"entity filter {spec!r}: expected LABEL or LABEL:value (e.g. ORG or ORG:pfizer)")
    if sep:
        norm = normalize_entity(value)
        if not norm:
            raise InvalidInput(f"entity filter {spec!r}: the value after ':' is empty")
        return EntityFilter(label, norm)
    return EntityFilter(label)


def parse_entity_filters(specs: Sequence[str] | None) -> list[EntityFilter]:
    return [parse_entity_filter(s) for s in specs or ()]


_NAME_WORD = re.compile(r"\w+")


def names_entity(value: str, norm: str) -> bool:
    """True when the filter value (normalised) is the entity's normalised form or a run of its whole
    words: "acme" names "acme corporation", "u.s" names "u.s. army"; "acm" names neither."""
    if value == norm:
        return True
    want, words = _NAME_WORD.findall(value), _NAME_WORD.findall(norm)
    n = len(want)
    return n > 0 and any(words[i:i + n] == want for i in range(len(words) - n + 1))


def matching_chunk_ids(store: EntityStore, f: EntityFilter) -> set[int]:
    if f.norm is None:
        return store.chunk_ids_with_entity(f.label)
    longest = max(_NAME_WORD.findall(f.norm), key=len, default=f.norm)  # every match contains it
    norms = [n for n in store.entity_norms(f.label, longest) if names_entity(f.norm, n)]
    return store.chunk_ids_with_entity(f.label, norms) if norms else set()


def allowed_chunk_ids(store: EntityStore, filters: Sequence[EntityFilter]) -> set[int] | None:
    """Chunk ids matching every filter (AND); None when there is no filter (search everything)."""
    if not filters:
        return None
    allowed: set[int] | None = None
    # Most selective first keeps the intersections small.
    sets = sorted((matching_chunk_ids(store, f) for f in filters), key=len)
    for ids in sets:
        allowed = set(ids) if allowed is None else allowed & ids
        if not allowed:
            break
    return allowed or set()


def entity_facets(
    hits: Sequence[Hit], entities: Mapping[int, Sequence[Entity]] | None = None, top: int = 10,
    informative_only: bool = True,
) -> dict[str, dict[str, Any]]:
    """{label: {"count": hits with the label, "values": [{"value": norm, "count": hits}, ...]}}.

    Entities come from `entities` (chunk id -> entities) or, when absent, from the hits themselves.
    Each hit counts once per label and once per value, however often the entity repeats in it.
    With `informative_only`, entities that fail `entity_problem` (judged on their mentions among
    the hits, word casing counted over the hits' text) are left out, and a label none of whose values
    is informative disappears.
    """
    per_hit = [entities.get(hit.chunk.id, ()) if entities is not None else hit.entities for hit in hits]
    keep: set[tuple[str, str]] | None = None
    if informative_only:
        surfaces: dict[tuple[str, str], list[str]] = {}
        for ents in per_hit:
            for e in ents:
                surfaces.setdefault((e.label, e.norm), []).append(e.text)
        case = CaseStats(hit.chunk.text for hit in hits)
        keep = {key for key, texts in surfaces.items() if entity_problem(key[0], texts, case) is None}
    per_label: Counter[str] = Counter()
    per_value: dict[str, Counter[str]] = {}
    for ents in per_hit:
        pairs = {(e.label, e.norm) for e in ents}
        if keep is not None:
            pairs &= keep
        per_label.update({label for label, _ in pairs})
        for label, norm in pairs:
            per_value.setdefault(label, Counter())[norm] += 1
    return {
        label: {
            "count": count,
            "values": [{"value": v, "count": c} for v, c in sorted(per_value[label].items(), key=lambda x: (-x[1], x[0]))[:top]],
        }
        for label, count in sorted(per_label.items(), key=lambda x: (-x[1], x[0]))
    }


def search_with_entities(
    searcher: Any,
    store: EntityStore,
    query: str,
    k: int = 10,
    mode: str = "hybrid",
    filters: Sequence[EntityFilter] = (),
    facet_top: int = 10,
    **search_kwargs: Any,
) -> dict[str, Any]:
    """Search restricted to chunks matching the filters; hits carry their entities; facets added."""
    allowed = allowed_chunk_ids(store, filters)
    if allowed is not None and not allowed:
        hits: list[Hit] = []
    else:
        hits = searcher.search(query, k=k, mode=mode, allowed_ids=allowed, **search_kwargs)
    ents = store.entities_for([h.chunk.id for h in hits]) if hits else {}
    hits = [_with_entities(h, ents.get(h.chunk.id, ())) for h in hits]
    return {
        "hits": hits,
        "filters": [str(f) for f in filters],
        "allowed_chunks": None if allowed is None else len(allowed),
        "facets": entity_facets(hits, ents, top=facet_top),
    }


def _with_entities(hit: Hit, ents: Sequence[Entity]) -> Hit:
    if hit.entities or not ents:
        return hit
    return replace(hit, entities=tuple(ents))


@dataclass(frozen=True)
class EntityRow:
    """One (label, value) of the corpus: its mentions, the chunks it occurs in, why it is no facet (or None)."""

    label: str
    value: str
    mentions: int
    chunks: int
    problem: str | None


MENTIONS_JUDGED = 50  # surface forms kept per entity to judge its casing


def corpus_entity_rows(store: Any, label: str | None = None, use_case: bool = True) -> list[EntityRow]:
    """Every entity of the active corpus with its counts and `entity_problem` (word casing counted over
    the corpus text), most mentioned first (ties by label, value: the order of the docstore's entity
    counts). One pass over the entity table and one over the chunk texts."""
    mentions: Counter[tuple[str, str]] = Counter()
    chunks: Counter[tuple[str, str]] = Counter()
    surfaces: dict[tuple[str, str], list[str]] = {}
    ids = [int(i) for i in store.active_chunk_ids()]
    for ents in store.entities_for(ids).values():
        for e in ents:
            if label is not None and e.label != label:
                continue
            key = (e.label, e.norm)
            mentions[key] += 1
            texts = surfaces.setdefault(key, [])
            if len(texts) < MENTIONS_JUDGED:
                texts.append(e.text)
        chunks.update({(e.label, e.norm) for e in ents if label is None or e.label == label})
    case = CaseStats(c.text for c in store.iter_chunks()) if use_case and mentions else None
    return [EntityRow(lab, norm, n, chunks[(lab, norm)], entity_problem(lab, surfaces[(lab, norm)], case))
            for (lab, norm), n in sorted(mentions.items(), key=lambda x: (-x[1], x[0]))]


def list_entities(store: Any, label: str | None = None, top: int | None = 50,
                  informative_only: bool = True) -> dict[str, Any]:
    """`ragkiln entities`: the corpus's entities with their mention counts, most frequent first;
    with `informative_only`, those worth a facet (`entity_problem`)."""
    if top is not None and top < 1:
        raise InvalidInput(f"--top must be >= 1, got {top}")
    rows = [r for r in corpus_entity_rows(store, label) if not informative_only or r.problem is None]
    return {
        "label": label,
        "entities": [{"label": r.label, "value": r.value, "count": r.mentions} for r in rows[:top]],
    }


# ---------------------------------------------------------------------------------------------
# Settings-level entry points shared by the CLI and the HTTP routes.


def entity_search(
    settings: Any,
    query: str,
    k: int = 10,
    mode: str = "hybrid",
    entity_specs: Sequence[str] | None = None,
    embedder: str | None = None,
    facet_top: int = 10,
) -> dict[str, Any]:
    """Search the workspace index with entity filters; hits carry entities, facets are added."""
    from indexer.workspace import Workspace

    filters = parse_entity_filters(entity_specs)
    ws = Workspace.existing(settings)
    searcher = ws.searcher(embedder)
    return search_with_entities(searcher, ws.store, query, k=k, mode=mode, filters=filters, facet_top=facet_top)


def corpus_entities(settings: Any, label: str | None = None, top: int | None = 50) -> dict[str, Any]:
    """`ragkiln entities`: entity counts over the active corpus."""
    from indexer.workspace import Workspace

    return list_entities(Workspace.existing(settings).store, label=label, top=top)
