"""NER once per document region, entities handed back to overlapping chunks; the numpy gemm switch."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ner.enrich import PipelineSpec, SpacyEnricher, region_plan

PATTERNS = [{"label": "ORG", "pattern": "Pfizer"}, {"label": "DRUG", "pattern": "aspirin"},
            {"label": "ORG", "pattern": [{"LOWER": "world"}, {"LOWER": "health"}, {"LOWER": "organization"}]}]


@pytest.fixture
def enricher(tmp_path: Path) -> SpacyEnricher:
    p = tmp_path / "p.jsonl"
    p.write_text("\n".join(json.dumps(x) for x in PATTERNS) + "\n")
    return SpacyEnricher(spec=PipelineSpec("blank:en", str(p)), batch_size=4)


def test_region_plan_merges_overlaps_and_caps_length() -> None:
    assert region_plan([(0, 10), (8, 20), (20, 25), (30, 40)], 100) == [(0, 25), (30, 40)]
    assert region_plan([(0, 10), (8, 20), (18, 30)], 20) == [(0, 20), (18, 30)]  # cut at a chunk start
    assert region_plan([(0, 50)], 20) == [(0, 50)]  # one long chunk is its own region
    assert region_plan([], 20) == []


def test_documents_give_each_chunk_its_whole_entities(enricher: SpacyEnricher) -> None:
    text = "Pfizer sells aspirin. The World Health Organization met Pfizer again."
    who = text.index("World")
    spans = [(0, who + 5), (13, len(text)), (who + 6, len(text))]  # overlapping; the 1st cuts "World ..."
    (per_chunk,) = enricher.enrich_documents([(text, spans)])
    assert len(per_chunk) == 3
    for (s, e), ents in zip(spans, per_chunk, strict=True):
        for ent in ents:
            assert text[s:e][ent.start:ent.end] == ent.text == text[ent.doc_start:ent.doc_end]
            assert s <= ent.doc_start and ent.doc_end <= e
    assert [x.text for x in per_chunk[0]] == ["Pfizer", "aspirin"]  # the cut-off organisation is not here
    assert [x.text for x in per_chunk[1]] == ["aspirin", "World Health Organization", "Pfizer"]
    assert [x.text for x in per_chunk[2]] == ["Pfizer"]
    # An entity wholly inside a chunk is found as it is when the chunk is enriched alone.
    alone = enricher.enrich([text[s:e] for s, e in spans])
    assert [(x.text, x.start) for x in alone[1]] == [(x.text, x.start) for x in per_chunk[1]]


def test_documents_cut_into_capped_regions_keep_each_entity_once(enricher: SpacyEnricher) -> None:
    text = " ".join(f"Pfizer made batch {i} of aspirin." for i in range(40))
    bounds = [(i, min(i + 120, len(text))) for i in range(0, len(text), 100)]
    (per_chunk,) = enricher.enrich_documents([(text, bounds)], max_region_chars=300)
    for (s, _e), ents in zip(bounds, per_chunk, strict=True):
        assert len({(x.doc_start, x.label) for x in ents}) == len(ents)
        assert all(text[s + x.start:s + x.end] == x.text for x in ents)
    whole = {(x.doc_start, x.doc_end) for ents in per_chunk for x in ents}
    assert len(whole) == 80  # every Pfizer and aspirin of the text, none twice, none lost at region cuts


def test_enrich_documents_with_no_chunks(enricher: SpacyEnricher) -> None:
    assert enricher.enrich_documents([("Pfizer", [])]) == [[]]
    assert enricher.enrich_documents([]) == []


def test_numpy_gemm_switch_changes_ops_not_entities() -> None:
    from ner.pipeline import load_pipeline, resolve_model_name

    try:
        resolve_model_name("auto")
    except Exception:  # noqa: BLE001
        pytest.skip("no pretrained English pipeline installed")
    fast, blis = load_pipeline("auto", gemm="numpy"), load_pipeline("auto", gemm="blis")
    assert all(not n.ops.use_blis for n in fast.get_pipe("ner").model.walk())
    assert all(n.ops.use_blis for n in blis.get_pipe("ner").model.walk())
    texts = ["Apple hired Tim Cook in California on Monday.", "The WHO met in Geneva with Pfizer and Moderna."] * 3
    ents = [[(e.start_char, e.end_char, e.label_) for e in d.ents] for d in fast.pipe(texts)]
    assert ents == [[(e.start_char, e.end_char, e.label_) for e in d.ents] for d in blis.pipe(texts)]
    assert any(ents)
    with pytest.raises(ValueError, match="gemm"):
        load_pipeline("blank:en", gemm="mkl")  # type: ignore[arg-type]
