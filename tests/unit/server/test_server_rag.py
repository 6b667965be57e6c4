"""Relevance and citation selection (pure)."""

from __future__ import annotations

from indexer.types import Chunk, Hit
from reader.answer import NO_ANSWER
from server.rag import select_citations


def hit(cid: int, text: str, dense: float | None = 0.5, bm25: float | None = None, start: int = 0) -> Hit:
    scores = {k: v for k, v in (("dense", dense), ("bm25", bm25)) if v is not None}
    return Hit(Chunk(cid, f"d{cid}#x:0", f"doc{cid}", 0, start, start + len(text), text, f"Title {cid}"), 0.03,
               {k: 1 for k in scores}, scores)


def test_citation_quotes_the_sentence_holding_the_answer_with_document_offsets():
    text = "The trial was large. It enrolled 43,000 volunteers in Germany. Results came later."
    h = hit(7, text, start=100)
    [c] = select_citations("43,000 volunteers", [h], "how many volunteers?")
    assert c.match == "answer" and c.quote == "It enrolled 43,000 volunteers in Germany."
    assert (c.start, c.end) == (100 + text.index("It enrolled"), 100 + text.index(" Results"))
    assert c.doc_id == "doc7" and c.rank == 1


def test_citation_falls_back_to_the_sentence_closest_to_the_question():
    h = hit(1, "Bees make honey. Coffee grows in Colombia at altitude.")
    [c] = select_citations("zzz qqq", [h], "where does coffee grow?")
    assert c.match == "context" and c.quote == "Coffee grows in Colombia at altitude."


def test_only_supporting_passages_are_cited():
    a, b = hit(1, "Paris is the capital of France."), hit(2, "Bananas are yellow.")
    cites = select_citations("Paris", [b, a], "capital of France")
    assert [(c.chunk_id, c.rank) for c in cites] == [(1, 2)]


def test_no_passages_no_citations():
    assert select_citations("anything", [], "q") == []
    assert "could not find" in NO_ANSWER
