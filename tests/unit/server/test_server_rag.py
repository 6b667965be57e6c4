"""Prompt planning, relevance and citation selection (pure)."""

from __future__ import annotations

import pytest

from common.errors import ContextOverflow
from indexer.types import Chunk, Hit
from server.rag import NO_ANSWER, plan_prompt, select_citations


class WordTokenizer:
    """One token per whitespace word; the special symbols get fixed ids."""

    ctx_open, ctx_close, q_id, a_id = 3, 4, 5, 6

    def encode(self, text: str) -> list[int]:
        return [100 + len(w) for w in text.split()]


def hit(cid: int, text: str, dense: float | None = 0.5, bm25: float | None = None, start: int = 0) -> Hit:
    scores = {k: v for k, v in (("dense", dense), ("bm25", bm25)) if v is not None}
    return Hit(Chunk(cid, f"d{cid}#x:0", f"doc{cid}", 0, start, start + len(text), text, f"Title {cid}"), 0.03,
               {k: 1 for k in scores}, scores)


def test_prompt_follows_the_training_format():
    plan = plan_prompt(WordTokenizer(), ["alpha beta", "gamma"], "why so", n_ctx=100, max_tokens=10, passage_len=50)
    assert plan.ids == [1, 3, 105, 104, 4, 3, 105, 4, 5, 103, 102, 6]
    assert plan.passages == 2 and plan.max_new == 10


def test_prompt_drops_low_ranked_passages_then_shortens_to_fit():
    passages = [" ".join(["w"] * 40), " ".join(["v"] * 40)]
    plan = plan_prompt(WordTokenizer(), passages, "q", n_ctx=40, max_tokens=64, passage_len=40)
    assert plan.passages == 1 and plan.passage_len < 40
    assert len(plan.ids) + 8 <= 40 and plan.max_new == 40 - len(plan.ids)


def test_question_that_cannot_fit_is_a_context_overflow():
    with pytest.raises(ContextOverflow):
        plan_prompt(WordTokenizer(), [], " ".join(["q"] * 60), n_ctx=20, max_tokens=8, passage_len=10)


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
