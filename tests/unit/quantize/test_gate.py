"""The generation quality gate and the repetition penalty (pure)."""

from __future__ import annotations

import numpy as np
import pytest

from common.errors import InvalidInput
from common.sampling import PENALTY_LAST_N, SamplingParams, penalize_repeats
from quantize.gate import gate_model, generation_gate, recorded_ppl


def test_gate_passes_at_most_a_tenth_of_the_vocabulary():
    assert generation_gate(40.0, 400)[0] and generation_gate(12.5, 32_000)[0]
    ok, why = generation_gate(130.6, 400)
    assert not ok and "130.6" in why and "40" in why
    assert not generation_gate(None, 400)[0] and "no held-out perplexity" in generation_gate(None, 400)[1]
    assert not generation_gate(10.0, None)[0]


def test_the_served_files_verified_perplexity_decides_over_the_training_one():
    manifest = {"metrics": {"heldout_ppl": 38.7}, "model_args": {"vocab_size": 400}}
    verify = {"torch": {"ppl": 129.9}, "types": {"q8_0": {"ppl": 130.6}, "f32": {"ppl": 129.9}}}
    assert recorded_ppl(manifest, verify, "q8_0") == (130.6, "quantize verify (q8_0)")
    assert recorded_ppl(manifest, verify, "q4_0") == (129.9, "quantize verify (torch)")
    assert recorded_ppl(manifest, None, "q8_0") == (38.7, "training (held-out rows)")
    assert recorded_ppl({}, None, "q8_0") == (None, "none")
    assert not gate_model(manifest, verify, "q8_0")[0]  # the demo's tiny LM: extractive only
    assert gate_model(manifest, None, "q8_0")[0]
    assert not gate_model({}, None, "q8_0")[0]  # never verified: never run free
    assert gate_model(None, None, None)[0]  # a registered chat model is trusted
    assert gate_model(None, None, None, override=False) == (False, "server.generative sets it to answer extractively")
    assert gate_model(manifest, verify, "q8_0", override=True)[0]


def test_the_build_report_warns_by_the_same_rule():
    from pipeline.report_summary import warnings

    stages = {"evaluate": {"outputs": {"perplexity": {"qa_lm": {"ppl_no_context": 90.0, "ppl_with_context": 45.0}}}}}
    assert any("too weak to generate" in w for w in warnings(stages, {"qa_lm": 400}))
    assert not warnings(stages, {"qa_lm": 500})  # 45 <= 50: passes the gate, no warning


def test_repeat_penalty_is_llama_cpps_rule():
    logits = np.array([2.0, -1.0, 0.5, 3.0], dtype=np.float32)
    out = penalize_repeats(logits, [0, 1, 1], 2.0)
    assert out.tolist() == [1.0, -2.0, 0.5, 3.0]  # positive divided, negative multiplied, once per distinct token
    assert penalize_repeats(logits, [0], 1.0).tolist() == logits.tolist()
    old = list(range(1, 4)) + [9] * PENALTY_LAST_N  # token 1..3 fell out of the window
    assert penalize_repeats(np.ones(10, dtype=np.float32), old, 2.0)[1] == 1.0
    assert logits.tolist() == [2.0, -1.0, 0.5, 3.0]  # pure


def test_repeat_penalty_bounds():
    with pytest.raises(InvalidInput):
        SamplingParams(repeat_penalty=0.9).validate()
    assert SamplingParams().repeat_penalty == 1.0  # off unless asked: verify's greedy parity is untouched
