"""Near-duplicate hits: the same passage cut a little differently overlaps; parallel or merely related text does not."""

from __future__ import annotations

from indexer.near_dup import duplicate_of, overlap, trigrams

PASSAGE = ("Documentation tests are run by rustdoc --test. Each code block in the documentation is compiled as its "
           "own crate and run, so examples stay correct as the library changes.")


def test_the_same_passage_cut_a_little_differently_is_a_duplicate():
    a = trigrams(PASSAGE)
    assert overlap(a, trigrams(PASSAGE.upper())) == 1.0  # case does not matter
    shifted = trigrams(PASSAGE + " It needs nothing more.")  # a chunk cut four words later
    assert 0.8 <= overlap(a, shifted) < 1.0
    assert duplicate_of(shifted, [trigrams("something else entirely here"), a], 0.8) == 1


def test_a_short_text_inside_a_long_one_and_related_text_are_not():
    assert overlap(trigrams("Each code block in the documentation"), trigrams(PASSAGE)) < 0.3
    grp = "This module provides access to the Unix group database. It is available on all Unix versions."
    pwd = "This module provides access to the Unix user account and password database. It is available on all Unix versions."
    assert overlap(trigrams(grp), trigrams(pwd)) < 0.8
    assert duplicate_of(trigrams(grp), [trigrams(pwd)], 0.8) is None


def test_a_threshold_of_zero_turns_folding_off_and_empty_texts_never_match():
    a = trigrams(PASSAGE)
    assert duplicate_of(a, [a], 0.0) is None and duplicate_of(a, [a], 1.0) == 0
    assert overlap(trigrams(""), a) == 0.0 and overlap(trigrams("two words"), trigrams("two words")) == 1.0


def test_a_slot_shows_the_copy_from_the_shortest_document_at_the_groups_rank():
    from types import SimpleNamespace

    from indexer.search import Searcher
    from indexer.types import Chunk, Hit

    def hit(cid: int, doc: str, score: float) -> Hit:
        return Hit(Chunk(cid, f"k{cid}", doc, 0, 0, 10, PASSAGE, doc), score, {"bm25": cid}, {"bm25": score})

    class Store:  # document length by chunk id: print.html is the whole book
        def document_lengths(self, ids):
            return {i: {1: 138_000, 2: 9_000, 3: 9_000, 4: 500}[i] for i in ids}

    book, chapter, mirror, other = hit(1, "print.html", 0.9), hit(2, "ch.html", 0.8), hit(3, "copy/ch.html", 0.7), \
        hit(4, "other.html", 0.6)
    out = Searcher._represent(SimpleNamespace(store=Store()), [[book, chapter, mirror], [other]])  # type: ignore[arg-type]
    assert [h.chunk.doc_id for h in out] == ["ch.html", "other.html"]
    assert out[0].score == 0.9 and out[0].ranks == {"bm25": 2}  # the group's rank score, the chunk's own ranks
    assert out[0].also_in == ("print.html", "copy/ch.html") and out[1] is other
