"""The reader's weights artifact (load, validate, round trip), the conditional-logit fit and the
sentence features."""

from __future__ import annotations

import json

import numpy as np
import pytest

from common.errors import ArtifactCorrupt, NotFound
from reader.fit import fit_conditional_logit
from reader.model import DEFAULT_WEIGHTS, LinearModel, ReaderSettings, ReaderWeights, load_weights, save_weights
from reader.sentences import Passage, sentence_features, split_sentences


def test_shipped_weights_load_and_carry_a_manifest():
    w = load_weights()
    assert DEFAULT_WEIGHTS.name == "weights.json"
    assert w.sentence.weights and w.span.weights
    assert w.settings.passages >= 1 and w.settings.sentences >= 1 and w.settings.max_tokens >= 1
    m = w.manifest
    assert "fit half" in m["data"]["dataset"] and m["data"]["questions"] > 1000
    assert m["command"].startswith("HF_HUB_OFFLINE=1") and "bench/reader.py --fit" in m["command"]
    assert m["created"] and m["features"]
    # the features the code makes are the ones the weights know
    assert {"cos", "lex", "rank_recip"} <= set(w.sentence.weights)
    assert "sent_lp" in w.span.weights


def test_round_trip(tmp_path):
    w = ReaderWeights(LinearModel({"a": 1.5}), LinearModel({"b": -2.0, "c": 0.25}), ReaderSettings(3, 2, 8), {"x": 1})
    save_weights(w, tmp_path / "w.json")
    back = load_weights(tmp_path / "w.json")
    assert back.sentence.weights == {"a": 1.5} and back.span.weights == {"b": -2.0, "c": 0.25}
    assert back.settings == ReaderSettings(3, 2, 8) and back.manifest == {"x": 1}


@pytest.mark.parametrize("mutate", [
    lambda d: d.update(kind="something-else"),
    lambda d: d.update(format_version=99),
    lambda d: d.update(span_model={}),
    lambda d: d["span_model"].update(b="not a number"),
    lambda d: d["settings"].update(sentences=0),
    lambda d: d.pop("settings"),
])
def test_invalid_weights_fail_loudly(tmp_path, mutate):
    w = ReaderWeights(LinearModel({"a": 1.0}), LinearModel({"b": 1.0}))
    save_weights(w, tmp_path / "w.json")
    d = json.loads((tmp_path / "w.json").read_text())
    mutate(d)
    (tmp_path / "w.json").write_text(json.dumps(d))
    with pytest.raises(ArtifactCorrupt):
        load_weights(tmp_path / "w.json")


def test_missing_or_unreadable_weights(tmp_path):
    with pytest.raises(NotFound):
        load_weights(tmp_path / "none.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ArtifactCorrupt):
        load_weights(tmp_path / "bad.json")


def test_log_probs_are_a_softmax():
    m = LinearModel({"x": 2.0})
    lp = m.log_probs([{"x": 1.0}, {"x": 0.0}, {"y": 5.0}])
    assert np.isclose(np.exp(lp).sum(), 1.0) and lp[0] > lp[1] == lp[2]
    assert m.log_probs([]) == []


def test_conditional_logit_learns_which_feature_marks_the_answer():
    rng = np.random.default_rng(0)
    groups, targets = [], []
    for _ in range(200):
        n = 5
        right = int(rng.integers(n))
        rows = [{"good": float(i == right) + 0.1 * rng.normal(), "noise": float(rng.normal()), "bias": 1.0}
                for i in range(n)]
        groups.append(rows)
        targets.append([i == right for i in range(n)])
    m = fit_conditional_logit(groups, targets, l2=1e-3, min_count=1)
    assert m.weights["good"] > 2.0 and abs(m.weights.get("noise", 0.0)) < 0.5


def test_sentence_features():
    ps = [Passage("Solar panels turn light into power. Wind farms need wind.", rank=1, score=2.0),
          Passage("Panels were invented in 1954.", rank=2, score=1.0)]
    sents = split_sentences(ps)
    assert [(s.passage, s.index, s.start, s.end) for s in sents] == [(0, 0, 0, 35), (0, 1, 36, 57), (1, 0, 0, 29)]
    assert sents[1].last and not sents[0].last
    f = sentence_features("When were solar panels invented?", sents, ps, [0.2, 0.1, 0.6])
    assert f[2]["cos_top"] == 1.0 and f[2]["cos_gap"] == 0.0 and f[0]["cos_gap"] == pytest.approx(-0.4)
    assert f[0]["rank1"] == 1.0 and f[2]["rank_recip"] == 0.5 and f[2]["score_ratio"] == 0.5
    assert f[2]["lex_top"] == 1.0  # "panels" and "invented"
    assert f[1]["lex"] == 0.0 and f[1]["asked_frac"] == 0.0
