from __future__ import annotations

import json
from pathlib import Path

import pytest

from common.errors import InvalidInput, NotFound
from ner.evaluate import (
    ONTONOTES_TO_CONLL,
    default_label_map,
    format_scores,
    map_labels,
    prf,
    read_label_map,
    score_spans,
)


def test_score_spans_hand_computed() -> None:
    gold = [{(0, 5, "PER"), (10, 15, "LOC")}, {(0, 3, "ORG"), (4, 9, "PER")}]
    pred = [
        {(0, 5, "PER"), (10, 15, "ORG")},  # 1 correct, 1 wrong label
        {(0, 3, "ORG"), (4, 8, "PER"), (20, 25, "MISC")},  # 1 correct, 1 wrong boundary, 1 spurious
    ]
    r = score_spans(gold, pred)
    # correct 2, predicted 5, gold 4 -> P 0.4, R 0.5, F1 = 2*0.4*0.5/0.9
    o = r["overall"]
    assert (o["correct"], o["predicted"], o["gold"]) == (2, 5, 4)
    assert o["precision"] == pytest.approx(0.4)
    assert o["recall"] == pytest.approx(0.5)
    assert o["f1"] == pytest.approx(0.4 / 0.9)
    per = r["per_label"]
    assert per["PER"]["precision"] == pytest.approx(0.5) and per["PER"]["recall"] == pytest.approx(0.5)
    assert per["ORG"]["precision"] == pytest.approx(0.5) and per["ORG"]["recall"] == pytest.approx(1.0)
    assert per["LOC"]["f1"] == 0.0 and per["LOC"]["gold"] == 1
    assert per["MISC"]["predicted"] == 1 and per["MISC"]["gold"] == 0


def test_perfect_and_empty() -> None:
    g = [{(0, 1, "X")}]
    assert score_spans(g, g)["overall"]["f1"] == 1.0
    assert score_spans([set()], [set()])["overall"] == prf(0, 0, 0)
    with pytest.raises(InvalidInput):
        score_spans(g, [])


def test_duplicates_count_once() -> None:
    r = score_spans([[(0, 1, "X"), (0, 1, "X")]], [[(0, 1, "X")]])
    assert r["overall"]["gold"] == 1 and r["overall"]["f1"] == 1.0


def test_map_labels_drops_none_and_keeps_unknown() -> None:
    spans = [(0, 1, "PERSON"), (2, 3, "GPE"), (4, 5, "CARDINAL"), (6, 7, "DRUG")]
    assert map_labels(spans, ONTONOTES_TO_CONLL) == [(0, 1, "PER"), (2, 3, "LOC"), (6, 7, "DRUG")]
    assert map_labels(spans, None) == spans


def test_default_map_only_for_ontonotes_models_on_other_data() -> None:
    assert default_label_map(["PERSON", "GPE", "ORG"], ["PER", "LOC"]) == ONTONOTES_TO_CONLL
    assert default_label_map(["PER", "LOC"], ["PER", "LOC"]) is None
    assert default_label_map(["PERSON", "GPE"], ["PERSON"]) is None


def test_read_label_map(tmp_path: Path) -> None:
    p = tmp_path / "m.json"
    p.write_text(json.dumps({"PERSON": "PER", "DATE": None}), encoding="utf-8")
    assert read_label_map(p) == {"PERSON": "PER", "DATE": None}
    p.write_text(json.dumps({"PERSON": 3}), encoding="utf-8")
    with pytest.raises(InvalidInput):
        read_label_map(p)
    with pytest.raises(NotFound):
        read_label_map(tmp_path / "none.json")


def test_format_scores_lists_labels() -> None:
    text = format_scores({**score_spans([{(0, 1, "PER")}], [{(0, 1, "PER")}]), "n_texts": 1})
    assert "overall" in text and "PER" in text and "1.0000" in text
