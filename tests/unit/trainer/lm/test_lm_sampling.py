import pytest
import torch

from common.errors import InvalidInput
from common.sampling import span_continuations
from trainer.lm.sampling import SamplingParams, _stop_at, filter_logits


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


def test_span_continuations_never_stop_inside_the_question():
    src, question = [10, 11, 12, 10, 13], [10, 11]
    assert span_continuations(src, [10], eos_id=2, avoid=question) == {11, 13}  # only question words yet: go on
    assert span_continuations(src, [10, 11], eos_id=2, avoid=question) == {12}
    assert span_continuations(src, [10, 11, 12], eos_id=2, avoid=question) == {10, 2}  # left the question
    assert span_continuations(src, [10, 13], eos_id=2, avoid=question) == {2}
    assert span_continuations(src, [13], eos_id=2, avoid=[13]) == {2}  # cannot grow: it may stop


def test_span_continuations_start_and_stop_only_at_the_given_positions():
    src = [10, 11, 12, 10, 13]
    assert span_continuations(src, [], eos_id=2, starts=[1, 3]) == {11, 10}
    assert span_continuations(src, [10], eos_id=2, starts=[3]) == {13, 2}  # only the copy at 3 counts
    assert span_continuations(src, [10], eos_id=2, ends=[2]) == {11, 13}  # 0..1 may not stop before 1 ...
    assert span_continuations(src, [10, 11], eos_id=2, ends=[2]) == {12, 2}  # ... 0..2 may
    assert span_continuations(src, [12, 10, 13], eos_id=2, ends=[1]) == {2}  # cannot grow: it may stop
    assert span_continuations(src, [11], eos_id=2, starts=[3]) == {2}  # no copy from an allowed start: only EOS


class _AlwaysEos(torch.nn.Module):
    """A model whose every next token is EOS: what an answer-tuned LM does on a plain-text prompt."""

    class args:
        max_seq_len = 32

    def forward(self, ids):  # (1, T) -> ((1, T, V), None)
        logits = torch.zeros(1, ids.shape[1], 8)
        logits[..., 2] = 10.0
        return logits, None


class _Tok:
    bos_id, eos_id = 1, 2

    def encode(self, text):
        return [3, 4]

    def decode(self, ids):
        return " ".join(map(str, ids))


def test_ignore_eos_generates_exactly_max_tokens():
    from trainer.lm.sampling import generate

    stops = generate(_AlwaysEos(), _Tok(), "x", SamplingParams(max_tokens=5, temperature=0.0))
    assert stops.tokens == [] and stops.finish_reason == "stop"
    timed = generate(_AlwaysEos(), _Tok(), "x", SamplingParams(max_tokens=5, temperature=0.0, ignore_eos=True))
    assert timed.tokens == [2] * 5 and timed.finish_reason == "length"
    with pytest.raises(InvalidInput, match="extractive"):
        SamplingParams(ignore_eos=True, extract_from=(3,)).validate()
