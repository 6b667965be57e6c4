from __future__ import annotations

import pytest

from ner.enrich import PipelineSpec, SpacyEnricher, normalize_entity, part_size


@pytest.mark.parametrize(
    ("raw", "norm"),
    [
        ("Pfizer", "pfizer"),
        ("The  World\nHealth Organization", "world health organization"),
        ("the Pfizer Inc.'s", "pfizer inc"),
        ("an Apple", "apple"),
        ("“Aspirin”", "aspirin"),
        ("U.S.", "u.s"),
        ("The", "the"),  # an article alone stays
        ("ＩＢＭ", "ibm"),  # NFKC folds full-width letters
    ],
)
def test_normalize_entity(raw: str, norm: str) -> None:
    assert normalize_entity(raw) == norm


def test_enrich_blank_pipeline_with_ruler(ruler_nlp) -> None:  # type: ignore[no-untyped-def]
    enricher = SpacyEnricher(ruler_nlp, batch_size=2)
    texts = [
        "Pfizer sells aspirin.",
        "No entities here.",
        "The World Health Organization studied TNF alpha and ibuprofen.",
    ]
    out = enricher(texts)
    assert len(out) == 3 and out[1] == []
    got = [(e.text, e.label, e.norm, e.start, e.end) for e in out[0]]
    assert got == [("Pfizer", "ORG", "pfizer", 0, 6), ("aspirin", "DRUG", "aspirin", 13, 20)]
    for text, ents in zip(texts, out, strict=True):
        for e in ents:
            assert text[e.start : e.end] == e.text  # chunk-relative offsets
            assert (e.doc_start, e.doc_end) == (e.start, e.end)
    assert {e.label for e in out[2]} == {"ORG", "GENE", "DRUG"}
    assert [e.norm for e in out[2] if e.label == "ORG"] == ["world health organization"]
    assert enricher([]) == []


def test_phrase_attr_lower_makes_gazetteer_case_insensitive(patterns_file) -> None:  # type: ignore[no-untyped-def]
    exact = SpacyEnricher(spec=PipelineSpec("blank:en", str(patterns_file)))
    folded = SpacyEnricher(spec=PipelineSpec("blank:en", str(patterns_file), "LOWER"))
    assert exact(["ASPIRIN works"]) == [[]]
    assert [e.text for e in folded(["ASPIRIN works"])[0]] == ["ASPIRIN"]


def test_small_calls_stay_in_process(ruler_nlp) -> None:  # type: ignore[no-untyped-def]
    e = SpacyEnricher(ruler_nlp, n_process=2, min_texts_per_process=32)
    assert e.processes_for(10) == 1
    assert e.processes_for(64) == 2
    assert e.processes_for(10_000) == 2
    assert SpacyEnricher(ruler_nlp, n_process=1).processes_for(10_000) == 1


@pytest.mark.parametrize("n", [1, 5, 38, 64, 128, 166, 256, 257, 1000])
def test_parts_are_whole_rounds_of_about_equal_size(n: int) -> None:
    step = part_size(n, 2, 64)
    sizes = [min(step, n - i) for i in range(0, n, step)]
    assert step <= 64 and sum(sizes) == n
    assert max(sizes) - min(sizes) <= max(1, len(sizes) - 1)  # only the last part may fall short, by rounding
    if n >= 128:
        assert len(sizes) % 2 == 0  # no round in which one of the two workers has nothing to do
    assert part_size(166, 2, 64) == 42 and part_size(256, 2, 64) == 64


def test_enricher_needs_a_pipeline() -> None:
    with pytest.raises(ValueError):
        SpacyEnricher()
