"""The embedder run planner: pairs and steps from the corpus size and the time budget."""

from __future__ import annotations

import pytest

from trainer.embedder.plan import plan_training, step_seconds


def test_a_small_corpus_trains_on_all_its_pairs():
    p = plan_training(300, batch_size=32, texts_per_pair=6, max_seq_length=160, budget_minutes=14)
    assert (p.pairs, p.steps, p.limited_by) == (300, 10, "corpus")
    assert p.estimated_seconds < 14 * 60


@pytest.mark.parametrize("available", [5_000, 20_000, 200_000])
def test_a_large_corpus_is_cut_to_the_budget_in_whole_batches(available):
    p = plan_training(available, batch_size=32, texts_per_pair=6, max_seq_length=160, budget_minutes=14)
    assert p.limited_by == "budget" and p.pairs % 32 == 0 and p.steps == p.pairs // 32
    assert 13 * 60 < p.estimated_seconds <= 14 * 60  # the budget is spent, not exceeded


def test_the_default_budget_keeps_a_5000_document_corpus_under_15_minutes():
    from common.settings import EmbedderTrainConfig

    cfg = EmbedderTrainConfig()
    # about 1.8 mined pairs per document (inverse cloze + claim), 90% after the dev split
    p = plan_training(int(5000 * 1.8 * 0.9), cfg.batch_size, 2 + cfg.distill_candidates, cfg.max_seq_length,
                      cfg.budget_minutes)
    assert p.estimated_seconds < 15 * 60 and p.steps >= 40


def test_a_bigger_budget_buys_more_steps_and_max_pairs_caps_it():
    small = plan_training(50_000, 32, 6, 160, budget_minutes=10)
    big = plan_training(50_000, 32, 6, 160, budget_minutes=40)
    assert big.steps > 3 * small.steps
    capped = plan_training(50_000, 32, 6, 160, budget_minutes=40, max_pairs=640)
    assert (capped.pairs, capped.steps, capped.limited_by) == (640, 20, "max_pairs")
    assert plan_training(50_000, 32, 6, 160, budget_minutes=None).limited_by == "corpus"


def test_step_cost_follows_texts_length_precision_and_dropout():
    base = step_seconds(32, 6, 160)
    assert step_seconds(32, 3, 160) == pytest.approx(base / 2)
    assert step_seconds(32, 6, 80) == pytest.approx(base / 2)
    assert step_seconds(32, 6, 160, bf16=True) < base < step_seconds(32, 6, 160, dropout=True)


def test_a_tiny_budget_still_plans_one_batch_and_the_plan_describes_itself():
    p = plan_training(10_000, 32, 6, 160, budget_minutes=0.1)
    assert p.pairs == 32 and p.steps == 1
    assert "32 pairs of 10000" in p.describe() and "raise --budget-minutes" in p.describe()
    assert "raise" not in plan_training(10_000, 32, 6, 160, budget_minutes=14).describe()


def test_a_slower_machine_gets_fewer_steps_in_the_same_budget_and_the_plan_says_so():
    fast = plan_training(50_000, 32, 6, 160, budget_minutes=14)
    slow = plan_training(50_000, 32, 6, 160, budget_minutes=14, slowdown=3.0)
    assert slow.steps < fast.steps / 2.5 and slow.estimated_seconds <= 14 * 60
    assert "3.0x" in slow.describe() and "on 2 cores" in fast.describe()


def test_measure_slowdown_compares_a_timed_training_pass_with_the_calibration():
    import time

    from trainer.embedder.plan import BF16_FACTOR, SECONDS_PER_TEXT, measure_slowdown

    def step_at(per_text, length=160):
        def step(texts):
            time.sleep(per_text * len(texts))
            return length
        return step

    twice = SECONDS_PER_TEXT * 2  # twice the calibration machine's time per 160-token text
    assert measure_slowdown(step_at(twice), ["x"] * 8, 160) == pytest.approx(2.0, rel=0.25)
    # in bf16 the reference is the calibration's bf16 time: the same wall time is a slower machine
    assert measure_slowdown(step_at(twice * BF16_FACTOR), ["x"] * 8, 160, bf16=True) == pytest.approx(2.0, rel=0.25)
    # texts shorter than max_seq_length ran at their padded length: scaled up to it
    assert measure_slowdown(step_at(twice / 2, length=80), ["x"] * 8, 160) == pytest.approx(2.0, rel=0.25)
    assert measure_slowdown(step_at(twice), ["x"], 160) == 1.0  # nothing to time: the calibration


def test_the_step_timer_runs_a_forward_and_backward_pass_of_the_torch_model(tiny_model_dir, monkeypatch):
    import torch

    from trainer.embedder.train import step_timer

    backward_calls = []
    real_backward = torch.Tensor.backward

    def counting_backward(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        backward_calls.append(1)
        return real_backward(self, *args, **kwargs)

    monkeypatch.setattr(torch.Tensor, "backward", counting_backward)
    step = step_timer(str(tiny_model_dir), 32, bf16=False)
    texts = ["mars is red because of iron oxide dust on its surface"] * 6
    assert 2 <= step(texts) <= 32  # the padded length, cut at max_seq_length
    assert backward_calls == [1]  # a training pass, not a forward pass alone
