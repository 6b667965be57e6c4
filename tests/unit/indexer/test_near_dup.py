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
