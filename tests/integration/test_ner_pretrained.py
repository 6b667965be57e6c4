"""The default pretrained pipeline: only NER runs, entities come out, OntoNotes labels map to CoNLL."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ner.pipeline import load_pipeline, resolve_model_name

try:
    DEFAULT = resolve_model_name("auto")
except Exception:  # noqa: BLE001 - no English pipeline installed: skip this module
    pytest.skip("no default spaCy English pipeline installed", allow_module_level=True)

CONLL = """-DOCSTART- -X- -X- O

Angela NNP B-NP B-PER
Merkel NNP I-NP I-PER
visited VBD B-VP O
Paris NNP B-NP B-LOC
on IN B-PP O
Monday NNP B-NP O
. . O O

Google NNP B-NP B-ORG
opened VBD B-VP O
an DT B-NP O
office NN I-NP O
in IN B-PP O
London NNP B-NP B-LOC
. . O O
"""


@pytest.fixture(scope="module")
def nlp():  # type: ignore[no-untyped-def]
    return load_pipeline("auto")


def test_only_ner_components_run(nlp) -> None:  # type: ignore[no-untyped-def]
    assert "ner" in nlp.pipe_names
    assert not {"parser", "tagger", "lemmatizer", "attribute_ruler", "senter"} & set(nlp.pipe_names)


def test_enricher_finds_people_and_places(nlp) -> None:  # type: ignore[no-untyped-def]
    from ner.enrich import SpacyEnricher

    (ents,) = SpacyEnricher(nlp)(["Angela Merkel met Emmanuel Macron in Paris on Monday."])
    labels = {e.norm: e.label for e in ents}
    assert labels.get("paris") == "GPE"
    assert labels.get("angela merkel") == "PERSON"


def test_eval_maps_ontonotes_to_conll(tmp_path: Path) -> None:
    from cli.main import app

    data = tmp_path / "mini.conll"
    data.write_text(CONLL)
    res = CliRunner().invoke(app, ["ner", "eval", "--data", str(data), "--json"], env={"HF_HUB_OFFLINE": "1"})
    assert res.exit_code == 0, res.output
    r = json.loads(res.stdout)
    assert r["model"] == DEFAULT
    assert r["label_map"]["PERSON"] == "PER" and r["label_map"]["DATE"] is None
    assert set(r["per_label"]) <= {"PER", "LOC", "ORG", "MISC"}  # DATE ("Monday") was dropped
    assert r["overall"]["gold"] == 4 and r["overall"]["f1"] >= 0.5
