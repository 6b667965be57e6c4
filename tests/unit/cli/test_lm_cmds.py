"""`ragkiln train lm`'s summary (pure rendering of the trainer's result)."""

from __future__ import annotations

from cli.lm_cmds import _render_train


def test_the_summary_says_who_answers_after_qa_tuning():
    base = {"out": "/ws/models/lm-tiny-qa", "final_train_loss": 2.1}
    assert "held-out answers" not in _render_train(base)
    worse = {**base, "heldout_answers": {"questions": 40, "model_f1": 0.05, "reader_f1": 0.41, "model_wins": False}}
    line = _render_train(worse).splitlines()[-1]
    assert "40 questions" in line and "0.050" in line and "0.410" in line and line.endswith("the reader answers for it")
    better = {**base, "heldout_answers": {"questions": 40, "model_f1": 0.5, "reader_f1": 0.41, "model_wins": True}}
    assert _render_train(better).endswith("it may answer in its own words")
