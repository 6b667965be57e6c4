"""How the served model's prompts read passages: its QA tuning's choices, else the settings."""

from __future__ import annotations

from common.settings import load_settings
from server.state import prompt_reading


def test_prompts_read_passages_as_the_model_was_tuned(tmp_path):
    settings = load_settings({"home": tmp_path, "lm": {"qa_passage_len": 200, "qa_context_sentences": 3}})
    tuned = {"training": {"qa": {"passage_len": 96, "context_sentences": 1}}}
    assert prompt_reading(tuned, settings) == (1, 96, 1)
    whole = {"training": {"qa": {"passage_len": 96, "context_sentences": 0}}}  # tuned on whole passages
    assert prompt_reading(whole, settings) == (1, 96, 0)
    assert prompt_reading({}, settings) == (1, 200, 3)  # no QA tuning recorded: the settings
    more = load_settings({"home": tmp_path, "server": {"answer_passages": 3}})
    assert prompt_reading(tuned, more)[0] == 3
