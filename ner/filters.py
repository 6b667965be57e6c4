"""Entity filters and facets for search.

`--entity ORG` keeps chunks with at least one ORG entity, `--entity ORG:pfizer` those with an ORG
whose normalised form is "pfizer"; several filters combine with AND. The filters become a set of
allowed chunk ids (from the docstore's entity table) that the Searcher applies inside both
retrievers, so a filtered query still returns k hits when k matching chunks exist, unlike a
post-filter of the unfiltered top k. Facets count, among the hits, how many carry each label and
each (label, value).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
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

    def chunk_ids_with_entity(self, label: str, norm: str | None = None) -> set[int]: ...

    def entities_for(self, chunk_ids: Iterable[int]) -> dict[int, list[Entity]]: ...


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


def allowed_chunk_ids(store: EntityStore, filters: Sequence[EntityFilter]) -> set[int] | None:
    """Chunk ids matching every filter (AND); None when there is no filter (search everything)."""
    if not filters:
        return None
    allowed: set[int] | None = None
    # Most selective first keeps the intersections small.
    sets = sorted((store.chunk_ids_with_entity(f.label, f.norm) for f in filters), key=len)
    for ids in sets:
        allowed = set(ids) if allowed is None else allowed & ids
        if not allowed:
            break
    return allowed or set()


def entity_facets(
    hits: Sequence[Hit], entities: Mapping[int, Sequence[Entity]] | None = None, top: int = 10
) -> dict[str, dict[str, Any]]:
    """{label: {"count": hits with the label, "values": [{"value": norm, "count": hits}, ...]}}.

    Entities come from `entities` (chunk id -> entities) or, when absent, from the hits themselves.
    Each hit counts once per label and once per value, however often the entity repeats in it.
    """
    per_label: Counter[str] = Counter()
    per_value: dict[str, Counter[str]] = {}
    for hit in hits:
        ents = entities.get(hit.chunk.id, ()) if entities is not None else hit.entities
        labels = {e.label for e in ents}
        per_label.update(labels)
        for label, norm in {(e.label, e.norm) for e in ents}:
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
    from dataclasses import replace

    return replace(hit, entities=tuple(ents))


def list_entities(store: Any, label: str | None = None, top: int | None = 50) -> dict[str, Any]:
    """`ragkiln entities`: the corpus's entities with their chunk counts, most frequent first."""
    if top is not None and top < 1:
        raise InvalidInput(f"--top must be >= 1, got {top}")
    rows = store.entity_counts(label=label, top=top)
    return {
        "label": label,
        "entities": [{"label": lab, "value": norm, "count": int(c)} for lab, norm, c in rows],
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
    ws = Workspace.open(settings)
    searcher = ws.searcher(embedder)
    return search_with_entities(searcher, ws.store, query, k=k, mode=mode, filters=filters, facet_top=facet_top)


def corpus_entities(settings: Any, label: str | None = None, top: int | None = 50) -> dict[str, Any]:
    """`ragkiln entities`: entity counts over the active corpus."""
    from indexer.workspace import Workspace

    return list_entities(Workspace.open(settings).store, label=label, top=top)
