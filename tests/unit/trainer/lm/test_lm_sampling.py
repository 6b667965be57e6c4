import pytest
import torch

from common.errors import InvalidInput
from trainer.lm.sampling import SamplingParams, _stop_at, filter_logits, span_continuations


def test_top_k_keeps_k_best():
    logits = torch.tensor([1.0, 5.0, 3.0, 4.0, 2.0])
    out = filter_logits(logits, 1.0, 2, 1.0)
    assert torch.isfinite(out).tolist() == [False, True, False, True, False]


def test_top_p_keeps_smallest_nucleus():
    probs = torch.tensor([0.5, 0.3, 0.15, 0.05])
    out = filter_logits(probs.log(), 1.0, 0, 0.7)
    assert torch.isfinite(out).tolist() == [True, True, False, False]
    assert torch.isfinite(filter_logits(probs.log(), 1.0, 0, 0.01)).sum() == 1  # best token always kept


def test_temperature_sharpens():
    logits = torch.tensor([1.0, 2.0])
    cold = torch.softmax(filter_logits(logits, 0.1, 0, 1.0), -1)
    assert cold[1] > 0.99


def test_stop_strings_pick_earliest():
    assert _stop_at("abc. def\n", (".", "\n")) == 3
    assert _stop_at("abc", ("x",)) is None


def test_params_validation():
    for bad in (dict(max_tokens=0), dict(temperature=-1), dict(top_p=0.0), dict(top_k=-1)):
        with pytest.raises(InvalidInput):
            SamplingParams(**bad).validate()


def test_span_continuations_only_copy():
    src = [10, 11, 12, 10, 13]
    assert span_continuations(src, [], eos_id=2) == {10, 11, 12, 13}
    assert span_continuations(src, [10], eos_id=2) == {11, 13, 2}
    assert span_continuations(src, [10, 11], eos_id=2) == {12, 2}
    assert span_continuations(src, [12, 10, 13], eos_id=2) == {2}
