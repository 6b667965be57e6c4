"""WiSE-FT weight averaging: the ends of the interpolation and refused mismatches."""

from __future__ import annotations

import pytest
import torch

from common.errors import InvalidInput
from trainer.embedder.merge import interpolate


def states() -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(0)
    start = {"w": torch.randn(3, 4, generator=g), "ids": torch.arange(4)}
    tuned = {"w": torch.randn(3, 4, generator=g), "ids": torch.arange(4) + 1}
    return start, tuned


def test_ends_and_midpoint():
    start, tuned = states()
    assert torch.equal(interpolate(start, tuned, 0.0)["w"], tuned["w"])
    assert torch.allclose(interpolate(start, tuned, 1.0)["w"], start["w"])
    mid = interpolate(start, tuned, 0.25)
    assert torch.allclose(mid["w"], 0.75 * tuned["w"] + 0.25 * start["w"])
    assert torch.equal(mid["ids"], tuned["ids"])  # integer buffers are the trained model's


def test_mismatched_models_are_refused():
    start, tuned = states()
    with pytest.raises(InvalidInput, match="cannot average w"):
        interpolate({"w": torch.zeros(4, 3)}, tuned, 0.5)
    with pytest.raises(InvalidInput, match="no such tensor"):
        interpolate({}, tuned, 0.5)
    with pytest.raises(InvalidInput, match=r"\[0, 1\]"):
        interpolate(start, tuned, 1.5)
