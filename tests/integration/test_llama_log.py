"""Opening a model whose trained context llama.cpp pads (384 tokens) prints nothing on stderr: llama.cpp's
warning goes to the `llama.cpp` logger at debug (quantize.llama_log), and the runtime keeps the trained length."""

from __future__ import annotations

import logging

import pytest

pytest.importorskip("llama_cpp")

from quantize.runtime import LlamaCppGenerator  # noqa: E402


def test_a_padded_context_is_no_warning_on_stderr(tmp_path, capfd, caplog) -> None:
    import torch

    from quantize.export import export_model
    from quantize.types import parse_types
    from trainer.lm.checkpoint import save_checkpoint
    from trainer.lm.model import ModelArgs, Transformer
    from trainer.lm.tokenizer import train_tokenizer

    tok = train_tokenizer(["Quantization stores weights in fewer bits, one scale per block."] * 40, vocab_size=300)
    torch.manual_seed(0)
    args = ModelArgs(dim=32, n_layers=1, n_heads=2, n_kv_heads=1, vocab_size=tok.vocab_size, hidden_dim=64,
                     max_seq_len=384)
    save_checkpoint(tmp_path / "lm", Transformer(args), tok)
    gguf = export_model(tmp_path / "lm", tmp_path / "gguf", parse_types("f32"), threads=1).path_of("f32")
    capfd.readouterr()
    with caplog.at_level(logging.DEBUG, logger="llama.cpp"):
        gen = LlamaCppGenerator(gguf, threads=1)
        gen.close()
    assert gen.n_ctx == 384
    assert "n_ctx_train" not in capfd.readouterr().err
    assert any("n_ctx_train" in r.getMessage() and r.levelno == logging.DEBUG for r in caplog.records)
