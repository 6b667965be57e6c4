"""`ragkiln quantize`, `quantize verify`, `generate --gguf` end to end on a tiny checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

pytest.importorskip("llama_cpp")

from cli.main import app  # noqa: E402
from trainer.lm.checkpoint import save_checkpoint  # noqa: E402
from trainer.lm.model import ModelArgs, Transformer  # noqa: E402
from trainer.lm.tokenizer import train_tokenizer  # noqa: E402

TEXT = [
    "Solar panels convert sunlight into electricity using photovoltaic cells made of silicon.",
    "The river flooded the valley after three days of heavy rain in early April.",
    "Engineers tested the bridge with loads of 40 tonnes before it opened to traffic.",
    "A library lends books, music and films to anyone with a membership card.",
]


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    tok = train_tokenizer(TEXT * 10, vocab_size=360)
    torch.manual_seed(1)
    args = ModelArgs(dim=64, n_layers=1, n_heads=2, n_kv_heads=1, vocab_size=tok.vocab_size, hidden_dim=96,
                     max_seq_len=64)
    out = tmp_path_factory.mktemp("cli") / "lm"
    save_checkpoint(out, Transformer(args), tok)
    return out


def _run(args: list[str], tmp_path: Path, **env: str):
    base = {"RAGKILN_QUANTIZE__VERIFY_PROMPTS": "3", "RAGKILN_QUANTIZE__VERIFY_GEN_TOKENS": "8",
            "RAGKILN_QUANTIZE__VERIFY_ROWS": "4", "HF_HUB_OFFLINE": "1", **env}
    return CliRunner().invoke(app, ["--workspace", str(tmp_path / "ws"), *args], env=base)


def test_quantize_writes_the_requested_types(ckpt, tmp_path):
    r = _run(["quantize", "--model", str(ckpt), "--types", "f32,q8_0", "--out", str(tmp_path / "g"), "--json"],
             tmp_path)
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert [f["type"] for f in out["files"]] == ["f32", "q8_0"]
    assert (tmp_path / "g" / "model-q8_0.gguf").is_file() and (tmp_path / "g" / "manifest.json").is_file()


def test_unknown_type_is_a_one_line_error(ckpt, tmp_path):
    r = _run(["quantize", "--model", str(ckpt), "--types", "q3_xs"], tmp_path)
    assert r.exit_code == 2
    assert "unknown GGUF type" in r.output and not (tmp_path / "ws" / "gguf").exists()


def test_missing_model_dir_is_not_found(tmp_path):
    r = _run(["quantize", "--model", str(tmp_path / "nope")], tmp_path)
    assert r.exit_code == 3, r.output


def test_verify_json_shape(ckpt, tmp_path):
    held = tmp_path / "held.txt"
    held.write_text("\n\n".join(TEXT), encoding="utf-8")
    r = _run(["quantize", "verify", "--model", str(ckpt), "--types", "q8_0,q4_k_m", "--text", str(held), "--json"],
             tmp_path)
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["tokenizer_match"] == 1.0 and out["prompt_format_match"] == 1.0
    assert out["f32_max_abs_diff"] < 1e-3 and out["greedy_f32_identical"] is True
    assert set(out["types"]) == {"f32", "q8_0", "q4_k_m"}
    for v in out["types"].values():
        for key in ("ppl", "ppl_delta_pct", "kl", "top1", "size_bytes", "gen_tok_s", "gen_speedup_vs_torch",
                    "pp_tok_s", "pp_speedup_vs_torch"):
            assert v[key] is not None, key
        assert v["gen_tokens_total"] > 0 and v["gen_tok_s"] > 0  # timed past EOS
    assert out["types"]["q8_0"]["size_bytes"] < out["types"]["f32"]["size_bytes"]
    assert out["types"]["f32"]["kl"] < 1e-6 and out["types"]["f32"]["top1"] == 1.0


def test_generate_gguf_and_context_overflow(ckpt, tmp_path):
    r = _run(["quantize", "--model", str(ckpt), "--types", "q8_0", "--out", str(tmp_path / "g")], tmp_path)
    assert r.exit_code == 0, r.output
    gguf = str(tmp_path / "g" / "model-q8_0.gguf")
    r = _run(["generate", "--gguf", gguf, "--max-tokens", "5", "--temperature", "0", "--json", "Solar panels"],
             tmp_path)
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["tokens"] <= 5 and out["prompt_tokens"] >= 2
    r = _run(["generate", "--gguf", gguf, " ".join(TEXT * 3)], tmp_path)
    assert r.exit_code == 7 and "context" in r.output
    r = _run(["generate", "--gguf", gguf, "--extractive", "Solar panels"], tmp_path)
    assert r.exit_code == 2 and "<ctx>" in r.output  # no passages to copy from
    r = _run(["generate", "--gguf", gguf, "--extractive", "--temperature", "0", "--json",
              "<ctx>Solar panels convert sunlight</ctx><q>What do panels convert?<a>"], tmp_path)
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout.strip().splitlines()[-1])["text"].strip() in "Solar panels convert sunlight"
    r = _run(["generate", "--gguf", gguf, "--extractive", "--search", "best", "--temperature", "0", "--json",
              "<ctx>Solar panels convert sunlight</ctx><q>What do panels convert?<a>"], tmp_path)
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout.strip().splitlines()[-1])["text"].strip() in "Solar panels convert sunlight"
    r = _run(["generate", "--gguf", gguf, "--search", "best", "--temperature", "0", "Solar panels"], tmp_path)
    assert r.exit_code == 2 and "--extractive" in r.output
    r = _run(["generate", "--gguf", gguf, "--extractive", "--search", "best", "<ctx>Solar</ctx><q>What?<a>"], tmp_path)
    assert r.exit_code == 2 and "temperature 0" in r.output  # the default temperature samples
