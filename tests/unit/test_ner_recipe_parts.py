"""The held-out split and the corpus vectors behind the `ragkiln ner train` default recipe."""

from __future__ import annotations

import numpy as np
import pytest

from common.errors import InvalidInput
from ner.split import split_held_out
from ner.train import TrainOptions, choose_start, config_for
from ner.vectors import ppmi_svd_vectors


def test_split_is_by_blocks_seeded_and_complete() -> None:
    items = list(range(1000))
    fit, dev = split_held_out(items, 0.1, seed=0, block=50)
    assert sorted(fit + dev) == items
    assert len(dev) == 100
    assert all(i // 50 == dev[0] // 50 for i in dev[:50])  # whole blocks move together
    assert split_held_out(items, 0.1, seed=0, block=50) == (fit, dev)
    assert split_held_out(items, 0.1, seed=1, block=50)[1] != dev


def test_split_refuses_too_little_data() -> None:
    with pytest.raises(InvalidInput, match="too few"):
        split_held_out(list(range(10)), 0.1, block=50)
    with pytest.raises(InvalidInput):
        split_held_out(list(range(100)), 1.5)


def test_ppmi_vectors_put_words_of_one_kind_together() -> None:
    rng = np.random.default_rng(0)
    cities, days = ["paris", "london", "berlin", "rome"], ["monday", "friday", "sunday", "tuesday"]
    filler = [f"w{i}" for i in range(30)]
    sents = []
    for _ in range(600):
        sents.append(["flights", "to", str(rng.choice(cities)), "from", str(rng.choice(filler))])
        sents.append(["on", str(rng.choice(days)), "morning", "the", str(rng.choice(filler))])
    words, m = ppmi_svd_vectors(sents, dim=8, window=2, min_count=2)
    assert m.shape == (len(words), 8)
    assert np.allclose(np.linalg.norm(m, axis=1), 1.0, atol=1e-4)
    v = {w: m[words.index(w)] for w in cities + days}
    within = np.mean([v[a] @ v[b] for a in cities for b in cities if a != b])
    across = np.mean([v[a] @ v[b] for a in cities for b in days])
    assert within > across + 0.3


def test_static_vectors_only_from_scratch() -> None:
    assert "include_static_vectors = true" in config_for(TrainOptions(base=None, preset="wide", static_vectors=True))
    assert "include_static_vectors = false" in config_for(TrainOptions(base=None))
    with pytest.raises(InvalidInput, match="from-scratch"):
        TrainOptions(static_vectors=True)  # the default base keeps its own tok2vec


def test_default_start_is_the_stock_pipeline_and_presets_mean_scratch() -> None:
    assert choose_start(None, None, False) == ("auto", "efficiency")
    assert choose_start(None, "chars", False) == (None, "chars")
    assert choose_start(None, None, True) == (None, "efficiency")
    assert choose_start("none", "wide", True) == (None, "wide")
    assert choose_start("/models/x", None, False) == ("/models/x", "efficiency")
    with pytest.raises(InvalidInput, match="from-scratch"):
        choose_start("auto", "chars", False)
    assert TrainOptions().base == "auto"
