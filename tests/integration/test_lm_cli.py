"""`train lm`, `eval lm`, `generate`, `train lm --qa` through the CLI on a real ingested workspace."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.main import app
from trainer.lm.checkpoint import load_model

sys.path.insert(0, str(Path(__file__).parent))
from lm_support import TOPICS, write_topics  # noqa: E402

ENV = {
    "HF_HUB_OFFLINE": "1", "RAGKILN_LM__VOCAB_SIZE": "400", "RAGKILN_LM__TARGET_LEN": "32",
    "RAGKILN_LM__NEIGHBOUR_LEN": "24", "RAGKILN_LM__BATCH_SIZE": "4", "RAGKILN_LM__EVAL_EVERY": "3",
    "RAGKILN_LM__CKPT_EVERY": "3", "RAGKILN_LM__HELDOUT_FRACTION": "0.3", "RAGKILN_LM__SYNTHETIC_PER_CHUNK": "1",
    "RAGKILN_LM__QA_PASSAGE_LEN": "48",
}


def cli(*args: str, code: int = 0) -> dict:
    res = CliRunner().invoke(app, [*args, "--json"] if code == 0 else list(args), env=ENV)
    assert res.exit_code == code, res.output
    return json.loads(res.stdout) if code == 0 else {"stderr": res.output}


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("lm_cli")
    cli("--workspace", str(root / "ws"), "ingest", str(write_topics(root / "docs")), "--no-ner")
    return root / "ws"


def test_train_eval_generate_and_qa(ws: Path, tmp_path: Path) -> None:
    out = tmp_path / "rag"
    r = cli("-w", str(ws), "train", "lm", "--preset", "tiny", "--steps", "3", "--out", str(out))
    assert r["out"] == str(out) and r["heldout_loss"] > 0
    _, _, manifest = load_model(out)
    held = set(manifest["training"]["heldout_doc_ids"])
    assert manifest["training"]["retrieval"] and held and len(held) < len(TOPICS)

    ev = cli("-w", str(ws), "eval", "lm", "--model", str(out), "--heldout")
    assert ev["tokens"] > 0 and ev["ppl_no_context"] > 1 and ev["ppl_with_context"] > 1

    plain = tmp_path / "plain"  # the build's LM check, by hand
    cli("-w", str(ws), "train", "lm", "--preset", "tiny", "--steps", "3", "--no-retrieval", "--out", str(plain),
        "--tokenizer-from", str(out))
    check = cli("-w", str(ws), "eval", "lm", "--model", str(out), "--against-plain", str(plain))
    assert check["tokens"] == ev["tokens"] and check["keep"] == ("retrieval" if check["ratio"] < 1 else "plain")

    free = cli("generate", "--model", str(out), "The Moon", "--temperature", "0", "--max-tokens", "24")
    assert free["finish_reason"] in ("length", "stop") and free["prompt_tokens"] > 1
    text = free["text"]
    assert len(text) >= 6, free
    stop = text[3:5]  # greedy decoding is deterministic: the same text, cut before the stop string
    cut = cli("generate", "--model", str(out), "The Moon", "--temperature", "0", "--max-tokens", "24",
              "--stop", "never-there", "--stop", stop)
    assert cut["finish_reason"] == "stop" and cut["text"] == text[: text.find(stop)]

    ctx_prompt = f"<ctx> {TOPICS['piano']} </ctx><q> Where was the first piano built? <a>"
    ext = cli("generate", "--model", str(out), ctx_prompt, "--temperature", "0", "--max-tokens", "8", "--extractive")
    assert ext["text"].strip() and ext["text"].strip() in TOPICS["piano"]  # a copied span, whatever the model
    best = cli("generate", "--model", str(out), ctx_prompt, "--temperature", "0", "--max-tokens", "8", "--extractive",
               "--search", "best")
    assert best["text"].strip() and best["text"].strip() in TOPICS["piano"] and best["finish_reason"] == "stop"

    qa = tmp_path / "qa.jsonl"
    qa.write_text("\n".join(json.dumps(r) for r in [
        {"question": "Where was the first piano built?", "answer": "Italy"},
        {"question": "What orbits Earth?", "answer": "The Moon", "context": TOPICS["moon"]},
    ]) + "\n")
    tuned = tmp_path / "qa-model"
    r = cli("-w", str(ws), "train", "lm", "--qa", str(qa), "--init", str(out), "--steps", "2", "--out", str(tuned))
    _, _, m2 = load_model(tuned)
    assert m2["training"]["qa"]["examples"] >= 1 and m2["prompt_format"] == manifest["prompt_format"]


def test_errors_are_one_line_with_exit_codes(ws: Path, tmp_path: Path) -> None:
    assert "does not exist" in cli("generate", "--model", str(tmp_path / "nope"), "hi", code=3)["stderr"]
    assert cli("-w", str(ws), "train", "lm", "--preset", "huge", code=2)
    assert "does not exist" in cli("-w", str(ws), "train", "lm", "--no-retrieval", "--steps", "1", "--out",
                                   str(tmp_path / "p"), "--tokenizer-from", str(tmp_path / "nope"), code=3)["stderr"]
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "notes.txt").write_text("keep me")
    assert "not an LM checkpoint" in cli("-w", str(ws), "train", "lm", "--out", str(precious), code=9)["stderr"]
    assert (precious / "notes.txt").read_text() == "keep me"
    bad = tmp_path / "bad.jsonl"
    bad.write_text("{oops\n")
    assert cli("-w", str(ws), "train", "lm", "--qa", str(bad), "--init", str(tmp_path / "nope"), code=3)
