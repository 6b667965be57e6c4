from __future__ import annotations

from collections.abc import Iterable, Sequence

import pytest

from common.errors import InvalidInput
from indexer.types import Chunk, Entity, Hit
from ner.filters import (
    CaseStats,
    EntityFilter,
    allowed_chunk_ids,
    corpus_entity_rows,
    entity_facets,
    entity_problem,
    informative_entity,
    list_entities,
    names_entity,
    parse_entity_filter,
    parse_entity_filters,
    search_with_entities,
)


def ent(label: str, norm: str, text: str | None = None) -> Entity:
    """An entity whose mention is written as names are: "US", "Pfizer" (or `text` as given)."""
    text = text if text is not None else (norm.upper() if len(norm) <= 3 else norm.title())
    return Entity(text, label, norm, 0, len(text), 0, len(text))


class FakeStore:
    """In-memory stand-in for the DocStore's entity table (test-only fake)."""

    def __init__(self, ents: dict[int, list[Entity]], texts: dict[int, str] | None = None) -> None:
        self.ents = ents
        self.texts = texts or {}

    def entity_norms(self, label: str, containing: str = "") -> list[str]:
        return sorted({e.norm for es in self.ents.values() for e in es if e.label == label and containing in e.norm})

    def chunk_ids_with_entity(self, label: str, norms: Sequence[str] | None = None) -> set[int]:
        return {c for c, es in self.ents.items()
                if any(e.label == label and (norms is None or e.norm in norms) for e in es)}

    def entities_for(self, chunk_ids: Iterable[int]) -> dict[int, list[Entity]]:
        return {c: self.ents[c] for c in chunk_ids if self.ents.get(c)}

    def active_chunk_ids(self) -> list[int]:
        return sorted(self.ents)

    def iter_chunks(self) -> Iterable[Chunk]:
        for c, text in sorted(self.texts.items()):
            yield Chunk(c, f"d#{c}", f"d{c}", 0, 0, len(text), text)

    def entity_counts(self, label: str | None = None, top: int | None = None) -> list[tuple[str, str, int]]:
        from collections import Counter

        n = Counter((e.label, e.norm) for es in self.ents.values() for e in es if label in (None, e.label))
        return [(lab, v, c) for (lab, v), c in n.most_common(top)]


class FakeSearcher:
    """Ranks chunk ids in a fixed order, honouring allowed_ids like the real Searcher."""

    def __init__(self, order: list[int], texts: dict[int, str] | None = None) -> None:
        self.order = order
        self.texts = texts or {}
        self.calls: list[set[int] | None] = []

    def search(self, query: str, k: int = 10, mode: str = "hybrid", allowed_ids: set[int] | None = None) -> list[Hit]:
        self.calls.append(allowed_ids)
        ids = [i for i in self.order if allowed_ids is None or i in allowed_ids][:k]
        return [Hit(Chunk(i, f"d#{i}", f"d{i}", 0, 0, 1, self.texts.get(i, "t")), 1.0 / (r + 1))
                for r, i in enumerate(ids)]


STORE = FakeStore(
    {
        1: [ent("ORG", "pfizer"), ent("DRUG", "aspirin")],
        2: [ent("ORG", "moderna")],
        3: [ent("ORG", "pfizer"), ent("ORG", "pfizer"), ent("GPE", "us")],
        4: [],
        5: [ent("DRUG", "aspirin")],
    }
)


def test_parse_filters() -> None:
    assert parse_entity_filter("ORG") == EntityFilter("ORG")
    assert parse_entity_filter(" ORG:The  Pfizer ") == EntityFilter("ORG", "pfizer")
    assert str(parse_entity_filter("ORG:pfizer")) == "ORG:pfizer"
    assert parse_entity_filters(None) == []
    for bad in ["", ":pfizer", "ORG:", "OR G"]:
        with pytest.raises(InvalidInput):
            parse_entity_filter(bad)


def test_allowed_ids_and_semantics() -> None:
    assert allowed_chunk_ids(STORE, []) is None
    assert allowed_chunk_ids(STORE, [EntityFilter("ORG")]) == {1, 2, 3}
    assert allowed_chunk_ids(STORE, [EntityFilter("ORG", "pfizer")]) == {1, 3}
    assert allowed_chunk_ids(STORE, [EntityFilter("ORG", "pfizer"), EntityFilter("DRUG")]) == {1}
    assert allowed_chunk_ids(STORE, [EntityFilter("GPE"), EntityFilter("DRUG")]) == set()


@pytest.mark.parametrize("value, norm, names", [
    ("acme", "acme", True),
    ("acme", "acme corporation", True),
    ("lopez", "maria lopez", True),
    ("maria lopez", "dr maria lopez jr", True),
    ("u.s", "u.s. army", True),
    ("acm", "acme corporation", False),
    ("corporation acme", "acme corporation", False),
    ("lopez maria", "maria lopez", False),
])
def test_a_value_names_an_entity_by_a_run_of_its_whole_words(value: str, norm: str, names: bool) -> None:
    assert names_entity(value, norm) is names


def test_a_filter_value_matches_longer_names_that_contain_it() -> None:
    store = FakeStore({1: [ent("ORG", "acme corporation")], 2: [ent("ORG", "acme")], 3: [ent("ORG", "acmex")],
                       4: [ent("PERSON", "acme")]})
    assert allowed_chunk_ids(store, [parse_entity_filter("ORG:Acme")]) == {1, 2}
    assert allowed_chunk_ids(store, [parse_entity_filter("ORG:acme corporation")]) == {1}
    assert allowed_chunk_ids(store, [parse_entity_filter("ORG:corp")]) == set()


def test_filtered_search_returns_k_hits_where_post_filter_would_not() -> None:
    searcher = FakeSearcher([4, 2, 5, 1, 3])
    r = search_with_entities(searcher, STORE, "q", k=2, filters=[EntityFilter("ORG", "pfizer")])
    assert [h.chunk.id for h in r["hits"]] == [1, 3]
    post = [h for h in searcher.search("q", k=2) if h.chunk.id in {1, 3}]
    assert post == []  # a post-filter of the unfiltered top 2 finds nothing
    assert r["allowed_chunks"] == 2 and r["filters"] == ["ORG:pfizer"]
    assert [e.norm for e in r["hits"][0].entities] == ["pfizer", "aspirin"]


def test_no_match_means_no_search() -> None:
    searcher = FakeSearcher([1, 2])
    r = search_with_entities(searcher, STORE, "q", k=3, filters=[EntityFilter("PERSON")])
    assert r["hits"] == [] and searcher.calls == []


def test_facets_count_hits_not_mentions() -> None:
    searcher = FakeSearcher([1, 2, 3, 4, 5])
    r = search_with_entities(searcher, STORE, "q", k=5)
    assert r["facets"]["ORG"] == {
        "count": 3,
        "values": [{"value": "pfizer", "count": 2}, {"value": "moderna", "count": 1}],
    }
    assert r["facets"]["DRUG"]["count"] == 2
    assert list(r["facets"]) == ["ORG", "DRUG", "GPE"]  # most frequent label first
    assert entity_facets(r["hits"], top=1)["ORG"]["values"] == [{"value": "pfizer", "count": 2}]


def test_list_entities() -> None:
    out = list_entities(STORE, label="ORG", top=1)
    assert out["entities"] == [{"label": "ORG", "value": "pfizer", "count": 3}]
    with pytest.raises(InvalidInput):
        list_entities(STORE, top=0)


# ---- which entities make a facet ---------------------------------------------------------------
@pytest.mark.parametrize("label,mentions,problem", [
    ("ORG", ["Python Software Foundation"], None),
    ("PERSON", ["Martin v. Löwis"], None),  # a dot between a letter and a space is no code
    ("GPE", ["U.S."], None),
    ("ORG", ["XML-RPC"], None),
    ("PERSON", ["C++"], None),
    ("DRUG", ["aspirin"], None),  # a gazetteer/trained label: lowercase is normal
    ("CARDINAL", ["two"], "value"),
    ("DATE", ["October 07, 2026"], "value"),
    ("ORG", ["3.11"], "no letters"),
    ("ORG", ["C"], "one character"),
    ("PERSON", ["parser.parse_args"], "code"),
    ("NORP", ["init__.py"], "code"),
    ("PERSON", ["meth:`get"], "code"),
    ("LOC", ["measure(text"], "code"),
    ("ORG", ["Keyword-Only Arguments\n\n4.8.3.4"], "glitch"),
    ("ORG", ["--verbose"], "glitch"),
    ("ORG", ["api"], "lowercase"),
    ("PERSON", ["asyncio", "Asyncio", "asyncio"], "lowercase"),  # most mentions decide
    ("PERSON", ["Asyncio", "Asyncio", "asyncio"], None),
])
def test_entity_problem_shapes(label: str, mentions: list[str], problem: str | None) -> None:
    assert entity_problem(label, mentions) == problem
    assert informative_entity(label, mentions) is (problem is None)


def test_case_stats_tell_common_words_from_names() -> None:
    case = CaseStats(["Open the files. Files are read with open(); the data structures hold data.",
                      "Java and Sphinx ship a file format; XML files are parsed by the xml module.",
                      "A TypeError is raised when the type of an error is wrong; see type and error."])
    assert case.lowercase_share("files") == 2 / 3 and case.lowercase_share("java") == 0.0
    assert case.lowercase_share("unseen") is None
    assert entity_problem("PERSON", ["Files"], case) == "common words"
    assert entity_problem("ORG", ["Data Structures"], case) == "common words"
    assert entity_problem("PERSON", ["Java"], case) is None
    assert entity_problem("ORG", ["XML"], case) is None  # an acronym keeps its capitals
    assert entity_problem("ORG", ["TypeError"], case) == "code"  # capitalised common words in one token
    assert entity_problem("PERSON", ["Files"]) is None  # without casing evidence: kept


def test_facets_and_listing_leave_junk_out_but_filters_still_accept_it() -> None:
    store = FakeStore(
        {1: [ent("ORG", "pfizer"), ent("ORG", "api", "api"), ent("CARDINAL", "2", "2")],
         2: [ent("PERSON", "parser.parse_args", "parser.parse_args"), ent("ORG", "pfizer")],
         3: [ent("PERSON", "files", "Files")]},
        texts={1: "Pfizer and the api", 2: "Pfizer: files and more files", 3: "Files"},
    )
    r = search_with_entities(FakeSearcher([1, 2, 3], store.texts), store, "q", k=3)
    assert r["facets"] == {"ORG": {"count": 2, "values": [{"value": "pfizer", "count": 2}]}}
    everything = entity_facets(r["hits"], informative_only=False)
    assert set(everything) == {"ORG", "CARDINAL", "PERSON"}
    assert list_entities(store)["entities"] == [{"label": "ORG", "value": "pfizer", "count": 2}]
    assert len(list_entities(store, informative_only=False)["entities"]) == 5
    rows = {(row.label, row.value): row for row in corpus_entity_rows(store)}
    assert rows[("PERSON", "files")].problem == "common words" and rows[("ORG", "pfizer")].chunks == 2
    assert rows[("PERSON", "parser.parse_args")].problem == "code"
    assert allowed_chunk_ids(store, [EntityFilter("ORG", "api")]) == {1}
