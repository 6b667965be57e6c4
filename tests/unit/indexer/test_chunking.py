import re

import pytest

from indexer.chunking import (MIN_SENTENCE_WORDS, bm25_texts, chunk_spans, reading_windows, sentence_spans,
                              sentence_texts)
from indexer.types import Chunk


def words(text):
    """Whitespace tokens as (starts, ends): a stand-in tokenizer with known counts."""
    spans = [(m.start(), m.end()) for m in re.finditer(r"\S+", text)]
    return [s for s, _ in spans], [e for _, e in spans]


def test_sentence_spans_split_and_trim():
    text = "  First one. Second one!  Third?\n\nNew para without end"
    spans = sentence_spans(text)
    assert [text[s:e] for s, e in spans] == ["First one.", "Second one!", "Third?", "New para without end"]


@pytest.mark.parametrize("text, sentences", [
    ("It was Lyndon B. Johnson. He signed.", ["It was Lyndon B. Johnson.", "He signed."]),
    ("Running back C. J. Anderson ran. Then.", ["Running back C. J. Anderson ran.", "Then."]),
    ("By W. E. B. Du Bois. Later.", ["By W. E. B. Du Bois.", "Later."]),
    ("J. F. D. Shrewsbury wrote it. Yes.", ["J. F. D. Shrewsbury wrote it.", "Yes."]),
    ("Wear hats in zone B. Gloves too.", ["Wear hats in zone B.", "Gloves too."]),  # not a name: a sentence end
    ("Take vitamin D. It helps.", ["Take vitamin D.", "It helps."]),
    # a Latin abbreviation introduces what follows, whatever its case (CMake: "... generators (e.g. Makefile ...")
    ("Build type on generators (e.g. Makefile Generators or Ninja). Typical values.",
     ["Build type on generators (e.g. Makefile Generators or Ninja).", "Typical values."]),
    ("Smokers vs. Non-smokers differ. I.e. They do.", ["Smokers vs. Non-smokers differ.", "I.e. They do."]),
    ("As before, cf. Table 2. Then.", ["As before, cf. Table 2.", "Then."]),
    ("It is a live.e. Next one.", ["It is a live.e.", "Next one."]),  # inside a word: not the abbreviation
    # a piece opening lower-case goes on from the one before
    ("As Smith et al. found in 2010. Then.", ["As Smith et al. found in 2010.", "Then."]),
    ('Cotton (Gossypium spp.) genomic DNA. Next.', ["Cotton (Gossypium spp.) genomic DNA.", "Next."]),
])
def test_sentence_spans_go_on_across_initials_and_abbreviations(text, sentences):
    assert [text[s:e] for s, e in sentence_spans(text)] == sentences


def test_sentence_spans_never_rejoin_across_a_blank_line_and_stay_linear():
    text = "One here, e.g.\n\nsecond starts low. Lyndon B.\n\nJohnson."
    assert [text[s:e] for s, e in sentence_spans(text)] == ["One here, e.g.", "second starts low.", "Lyndon B.",
                                                            "Johnson."]
    run = "A. " * 20000  # one long run of initials: rejoined into sentences cut at the length limit
    spans = sentence_spans(run)
    assert run[spans[0][0]:spans[-1][1]] == run.strip() and all(e - s <= 2000 for s, e in spans)


def test_chunks_respect_budget_and_sentence_boundaries():
    text = " ".join(f"Sentence number {i} has five." for i in range(20))  # 5 tokens each
    starts, ends = words(text)
    chunks = chunk_spans(sentence_spans(text), starts, ends, max_tokens=12, overlap=0)
    assert all(c.n_tokens <= 12 for c in chunks)
    for c in chunks:
        piece = text[c.start:c.end]
        assert piece.startswith("Sentence") and piece.endswith("five.")
    # Without overlap the chunks tile the text in order.
    assert [c.ord for c in chunks] == list(range(len(chunks)))
    assert all(a.end < b.start for a, b in zip(chunks, chunks[1:]))
    assert sum(c.n_tokens for c in chunks) == len(starts)


def test_overlap_repeats_trailing_sentences():
    text = " ".join(f"S{i} a b c d." for i in range(10))  # 5 tokens per sentence
    starts, ends = words(text)
    chunks = chunk_spans(sentence_spans(text), starts, ends, max_tokens=15, overlap=5)
    assert len(chunks) > 1
    for a, b in zip(chunks, chunks[1:]):
        assert b.start < a.end  # shared text
        assert text[b.start:a.end].strip().endswith("d.")
    assert chunks[-1].end == len(text)


def test_long_sentence_is_cut_at_token_boundaries_with_offsets():
    text = " ".join(f"w{i}" for i in range(50))  # one 50-token sentence, no punctuation
    starts, ends = words(text)
    chunks = chunk_spans(sentence_spans(text), starts, ends, max_tokens=20, overlap=4)
    assert all(c.n_tokens <= 20 for c in chunks)
    assert chunks[0].start == 0 and chunks[-1].end == len(text)
    for c in chunks:
        assert not text[c.start].isspace() and not text[c.end - 1].isspace()
    covered = set()
    for c in chunks:
        covered.update(range(c.start, c.end))
    assert all(i in covered for i in range(len(text)) if not text[i].isspace())


def test_offsets_point_into_source():
    text = "Alpha beta.\n\nGamma delta epsilon. Zeta."
    starts, ends = words(text)
    for c in chunk_spans(sentence_spans(text), starts, ends, max_tokens=3, overlap=0):
        assert text[c.start:c.end] == text[c.start:c.end].strip()
        assert c.end <= len(text)


def test_bad_arguments():
    with pytest.raises(ValueError):
        chunk_spans([(0, 1)], [0], [1], max_tokens=4, overlap=4)
    assert chunk_spans([], [], [], max_tokens=4, overlap=0) == []


def _chunk(cid, doc, ord_, text, start, title="T"):
    return Chunk(id=cid, key=f"{doc}:{ord_}", doc_id=doc, ord=ord_, start=start, end=start + len(text),
                 text=text, title=title)


def test_bm25_texts_add_neighbours_once_and_stay_inside_the_document():
    doc = "alpha beta. gamma delta. epsilon zeta."
    a = _chunk(1, "d", 0, doc[0:17], 0)    # "alpha beta. gamma"
    b = _chunk(2, "d", 1, doc[12:30], 12)  # overlaps a by "gamma"
    c = _chunk(3, "d", 2, doc[25:], 25)
    other = _chunk(9, "e", 0, "unrelated words", 0, title="")
    out = bm25_texts([c, other, a, b], context=1)  # order of input does not matter
    assert out[2] == "T\n" + doc  # both neighbours, the shared "gamma" counted once
    assert out[1] == "T\n" + doc[:30]
    assert out[3] == "T\n" + doc[12:]
    assert out[9] == "unrelated words"  # never words from another document
    assert bm25_texts([a, b, c], context=0) == {1: "T\n" + a.text, 2: "T\n" + b.text, 3: "T\n" + c.text}


def test_bm25_texts_bridge_gaps_with_a_space():
    a = _chunk(1, "d", 0, "one two", 0, title="")
    b = _chunk(2, "d", 1, "three", 10, title="")
    assert bm25_texts([a, b], context=1)[1] == "one two three"


def test_reading_windows_widen_hits_and_merge_a_documents_touching_windows():
    # a's hits at 3 and 5 touch once widened by one chunk; 9 joins them through 7; b stays apart
    hits = [("a", 3), ("b", 0), ("a", 5), ("a", 9), ("a", 7)]
    assert reading_windows(hits, 1) == [("a", 2, 10, 0), ("b", 0, 1, 1)]
    # without context only adjacent chunks merge (a sentence cut by their boundary is read whole)
    assert reading_windows([("a", 3), ("a", 4)], 0) == [("a", 3, 4, 0)]
    assert reading_windows([("a", 5), ("a", 3)], 0) == [("a", 5, 5, 0), ("a", 3, 3, 1)]
    # windows are ranked by their best hit, and start at the document's first chunk at the earliest
    assert reading_windows([("b", 1), ("a", 0)], 2) == [("b", 0, 3, 0), ("a", 0, 2, 1)]


def test_sentence_texts_are_a_chunks_longer_sentences_with_its_title():
    long1 = "The survey found three new moons orbiting the gas giant last year."
    long2 = "Each of them was named after a figure from the old myths of the sea."
    assert sentence_texts("Moons", long1) == []  # one sentence: the chunk's own vector covers it
    got = sentence_texts("Moons", f"{long1} Short one here. {long2}")
    assert got == [f"Moons\n{long1}", f"Moons\n{long2}"]  # "Short one here." has too few words
    assert all(len(t.split("\n", 1)[1].split()) >= MIN_SENTENCE_WORDS for t in got)
    assert sentence_texts("", f"{long1}\n\n{long2}") == [long1, long2]
