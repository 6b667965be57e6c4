"""Chat models' prompts and `[n]` citations (pure)."""

from __future__ import annotations

from indexer.types import Chunk, Hit
from server.chat_prompt import SYSTEM_PROMPT, claims, find_markers, marker_citations, rag_messages


def _hit(i: int, text: str, start: int = 100) -> Hit:
    return Hit(chunk=Chunk(id=i, key=f"doc{i}#0", doc_id=f"doc{i}", ord=0, start=start, end=start + len(text),
                           text=text, title=f"Doc {i}"), score=1.0 / i)


PASSAGES = [
    _hit(1, "The trial enrolled 43,000 volunteers. It ran in six countries."),
    _hit(2, "Coffee grows in the highlands of Ethiopia. Farmers pick it by hand."),
    _hit(3, "Solar panels convert light into electricity."),
]


def test_markers_and_claims():
    assert [m.numbers for m in find_markers("a [1] b [2, 3] c [4;5] d [x] [12]")] == [(1,), (2, 3), (4, 5), (12,)]
    answer = "The trial enrolled 43,000 volunteers [1]. Coffee is picked by hand. [2] Nothing cited here."
    assert claims(answer) == [("The trial enrolled 43,000 volunteers.", (1,)), ("Coffee is picked by hand.", (2,))]


def test_citations_resolve_markers_to_passage_sentences_with_document_offsets():
    answer = "It enrolled 43,000 volunteers [1]. Farmers pick coffee by hand [2][7]. Panels are cheap."
    cites = marker_citations(answer, PASSAGES)
    assert [(c.doc_id, c.rank, c.quote) for c in cites] == [
        ("doc1", 1, "The trial enrolled 43,000 volunteers."), ("doc2", 2, "Farmers pick it by hand.")]
    for c, hit in zip(cites, PASSAGES):
        assert hit.chunk.text[c.start - hit.chunk.start : c.end - hit.chunk.start] == c.quote
    assert all(c.match == "answer" for c in cites)
    assert marker_citations("No markers at all.", PASSAGES) == []  # an unreferenced claim is not cited
    assert marker_citations("Out of range [4] [0].", PASSAGES) == []
    whole = marker_citations("Unrelated words [3].", PASSAGES)[0]  # no shared word: the whole passage
    assert whole.quote == PASSAGES[2].chunk.text


def test_rag_messages_number_the_passages_in_one_system_message():
    msgs = rag_messages("Who?", [("T1", "first"), ("", "second")], [("system", "Be brief."), ("user", "Who?")])
    assert msgs[0]["role"] == "system" and msgs[0]["content"].startswith(SYSTEM_PROMPT)
    assert "[1] T1\nfirst" in msgs[0]["content"] and "[2] second" in msgs[0]["content"]
    assert msgs[0]["content"].endswith("Be brief.") and msgs[1:] == [{"role": "user", "content": "Who?"}]
    assert rag_messages("Q", [])[-1] == {"role": "user", "content": "Q"}
