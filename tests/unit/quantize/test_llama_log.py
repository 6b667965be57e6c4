"""llama.cpp's log lines reach Python logging at ggml's real levels, one record per line (quantize.llama_log)."""

from __future__ import annotations

import logging

from quantize.llama_log import _Lines


def test_errors_are_errors_and_warnings_are_debug(caplog) -> None:
    lines = _Lines()
    with caplog.at_level(logging.DEBUG, logger="llama.cpp"):
        lines.feed(3, "llama_context: n_ctx_seq (512) > n_ctx_train (384)\n")  # GGML_LOG_LEVEL_WARN
        lines.feed(4, "llama_model_load: error loading model\n")  # GGML_LOG_LEVEL_ERROR
    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [
        (logging.DEBUG, "llama_context: n_ctx_seq (512) > n_ctx_train (384)"),
        (logging.ERROR, "llama_model_load: error loading model")]


def test_a_line_in_pieces_is_one_record_at_its_first_level(caplog) -> None:
    lines = _Lines()
    with caplog.at_level(logging.DEBUG, logger="llama.cpp"):
        lines.feed(4, "failed to open ")
        lines.feed(5, "model.gguf")  # GGML_LOG_LEVEL_CONT
        lines.feed(5, "\n")
        lines.feed(2, "\n")  # an empty line is no record
    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [(logging.ERROR, "failed to open model.gguf")]
