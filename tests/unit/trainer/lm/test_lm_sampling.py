from dataclasses import replace

import pytest
import torch

from common.errors import InvalidInput
from common.sampling import span_candidates, span_continuations
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


def test_span_candidates_follow_the_decoding_rules():
    src, question = [10, 11, 12, 10, 13], [10, 11]
    assert span_candidates(src, 2) == {(10,): 0, (10, 11): 0, (11,): 1, (11, 12): 1, (12,): 2, (12, 10): 2,
                                       (10, 13): 3, (13,): 4}  # equal runs are one answer, at their first start
    assert set(span_candidates(src, 3, avoid=question)) == {(10, 11, 12), (11, 12), (11, 12, 10), (12,), (12, 10),
                                                            (12, 10, 13), (10, 13), (13,)}  # never the question alone
    assert span_candidates(src, 5, starts=[1, 3], ends=[3]) == {(11, 12): 1, (11, 12, 10, 13): 1, (10, 13): 3}  # or to the end
    assert span_candidates(src, 5, starts=[]) == {}
    # every candidate is a span greedy decoding could also produce, and it could end there
    for span in span_candidates(src, 5, avoid=question, starts=[0, 2, 3], ends=[2, 4]):
        for k in range(len(span)):
            assert span[k] in span_continuations(src, list(span[:k]), 2, question, [0, 2, 3], [2, 4])
        assert 2 in span_continuations(src, list(span), 2, question, [0, 2, 3], [2, 4])


def test_span_search_scores_each_span_whole(tiny_args, tokenizer):
    from trainer.lm.model import Transformer
    from trainer.lm.sampling import best_span, generate, span_scores

    torch.manual_seed(0)
    model = Transformer(tiny_args).eval()
    eos = tokenizer.eos_id
    prompt = [tokenizer.bos_id, *tokenizer.encode("Where does the Nile flow?")]
    source = tuple(tokenizer.encode("The Nile flows north into the Mediterranean Sea."))
    spans = span_candidates(source, 4, starts=[0, 2, 5])
    got = span_scores(model, prompt, source, spans, eos, batch=2)  # several batches
    with torch.no_grad():
        for span in spans:  # one forward pass per span, no padding: the definition
            logp = torch.log_softmax(model(torch.tensor([prompt + list(span) + [eos]]))[0][0], -1)
            want = sum(float(logp[len(prompt) - 1 + k, t]) for k, t in enumerate([*span, eos]))
            assert got[span] == pytest.approx(want, abs=1e-4)
    params = SamplingParams(max_tokens=4, temperature=0.0, extract_from=source, extract_starts=(0, 2, 5),
                            extract_search="best")
    best = best_span(model, prompt, params, eos)
    assert tuple(best) == max(got, key=lambda s: got[s] / (len(s) + 1) ** 1.5)  # the default alpha
    raw = best_span(model, prompt, replace(params, extract_alpha=0.0), eos)
    assert tuple(raw) == max(got, key=got.get)
    g = generate(model, tokenizer, prompt, params)
    assert g.tokens == best and g.finish_reason == "stop"
    with pytest.raises(InvalidInput, match="extract_search"):
        SamplingParams(extract_search="beam").validate()
    with pytest.raises(InvalidInput, match="extract_alpha"):
        replace(params, extract_alpha=-1.0).validate()
    with pytest.raises(InvalidInput, match="temperature 0"):
        replace(params, temperature=0.7).validate()
