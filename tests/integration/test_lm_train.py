"""LM training end to end on a tiny corpus: loss goes down, exact resume, checkpoint round trip."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from common.errors import ArtifactCorrupt, ManifestMismatch
from common.settings import LmConfig
from trainer.lm.checkpoint import load_model
from trainer.lm.run import read_run, run_training
from trainer.lm.service import prepare_lm_run

TEXTS = [
    "The river carries silt to the delta every spring, and farmers plant rice on the new soil.",
    "A compiler turns source code into machine code; the optimiser removes work that is never used.",
    "Bees collect nectar from flowers and store it as honey in wax cells inside the hive.",
    "The telescope gathers faint light from distant galaxies so astronomers can measure their speed.",
    "Bread rises because yeast ferments sugar and releases carbon dioxide into the dough.",
    "Glaciers move slowly downhill, carving valleys and leaving piles of rock called moraines.",
    "A violin has four strings tuned in fifths, and the bow is strung with horse hair.",
    "Copper conducts electricity well, which is why most household wiring is made from it.",
]


@dataclass(frozen=True)
class Chunk:
    doc_id: str
    text: str


def chunks() -> list[Chunk]:
    return [Chunk(f"doc{i}", (t + " ") * 3) for i, t in enumerate(TEXTS)]


def neighbours(chunk: Chunk) -> list[str]:
    return [c.text for c in chunks() if c.doc_id != chunk.doc_id][:2]


CFG = LmConfig(preset="tiny", vocab_size=400, steps=12, batch_size=8, warmup=2, lr=5e-3, target_len=32,
               n_neighbours=2, neighbour_len=24, eval_every=6, eval_rows=16, ckpt_every=6, heldout_fraction=0.25,
               init="normal")  # the default induction init starts above ln V (test_induction_init_run...)


def prepare(tmp: Path, cfg: LmConfig = CFG, retrieval: bool = True) -> Path:
    run = tmp / "run"
    prepare_lm_run(run, tmp / "model", chunks(), cfg, neighbours if retrieval else None)
    return run


def test_training_lowers_loss_and_writes_a_loadable_checkpoint(tmp_path):
    run = prepare(tmp_path)
    summary = run_training(run)
    hist = [json.loads(l) for l in (run / "train.jsonl").read_text().splitlines()]
    losses = [h["loss"] for h in hist if h["event"] == "step"]
    assert len(losses) == 12 and losses[-1] < losses[0] - 0.5
    assert abs(losses[0] - math.log(read_run(run)["model_args"]["vocab_size"])) < 0.3  # init ~ ln V
    assert summary["heldout_loss"] is not None and summary["mfu"] > 0 and summary["tokens_per_s"] > 0
    model, tok, manifest = load_model(tmp_path / "model")
    assert manifest["training"]["retrieval"] is True and manifest["prompt_format"].startswith("<s><ctx>")
    assert manifest["training"]["heldout_doc_ids"] and manifest["step"] == 12
    assert (tmp_path / "model" / "loss.png").stat().st_size > 1000
    x = torch.tensor([[1] + tok.encode("Bees collect nectar")])
    ref, _ = model(x)
    again, _, _ = load_model(tmp_path / "model")
    assert torch.equal(again(x)[0], ref)


def test_induction_init_run_is_recorded_and_trains(tmp_path):
    cfg = CFG.model_copy(update={"init": "induction", "steps": 4, "eval_every": 4, "ckpt_every": 4})
    run = prepare(tmp_path, cfg)
    spec = read_run(run)
    assert spec["meta"]["weight_init"] == "induction" and spec["model_args"]["rope_theta"] == 1e6
    summary = run_training(run)
    hist = [json.loads(l) for l in (run / "train.jsonl").read_text().splitlines()]
    first = next(h["loss"] for h in hist if h["event"] == "step")
    assert first > math.log(spec["model_args"]["vocab_size"]) + 0.5  # not the ln V of a normal init
    _, _, manifest = load_model(tmp_path / "model")
    assert manifest["training"]["weight_init"] == "induction" and manifest["model_args"]["rope_theta"] == 1e6
    assert summary["heldout_loss"] is not None


def test_micro_batches_take_the_same_steps_as_one_batch(tmp_path):
    cfg = CFG.model_copy(update={"bf16": False, "steps": 3, "eval_every": 3, "ckpt_every": 3})
    one = prepare(tmp_path / "a", cfg)
    four = prepare(tmp_path / "b", cfg.model_copy(update={"grad_accum": 4}))  # rows regrouped by length
    run_training(one)
    run_training(four)
    la, lb = ([json.loads(l)["loss"] for l in (r / "train.jsonl").read_text().splitlines()
               if json.loads(l)["event"] == "step"] for r in (one, four))
    assert len(la) == 3 and la == pytest.approx(lb, abs=1e-4)


def test_resume_matches_uninterrupted_run(tmp_path):
    full = prepare(tmp_path / "a")
    run_training(full)
    part = prepare(tmp_path / "b")
    run_training(part, stop_after=6)  # a session that ends after the step-6 checkpoint
    assert not (tmp_path / "b" / "model").exists()
    run_training(part, resume=True)
    a = [json.loads(l) for l in (full / "train.jsonl").read_text().splitlines()]
    b = [json.loads(l) for l in (part / "train.jsonl").read_text().splitlines()]
    la = [r["loss"] for r in a if r["event"] == "step"]
    lb = [r["loss"] for r in b if r["event"] == "step"]
    assert len(lb) == 12 and lb == la
    ma, _, _ = load_model(tmp_path / "a" / "model")
    mb, _, _ = load_model(tmp_path / "b" / "model")
    for (k, v), (_, w) in zip(ma.state_dict().items(), mb.state_dict().items()):
        assert torch.equal(v, w), k


def test_damaged_checkpoints_fail_loudly(tmp_path):
    run = prepare(tmp_path, CFG.model_copy(update=dict(steps=2, eval_every=2, ckpt_every=2)))
    run_training(run)
    model_dir = tmp_path / "model"
    manifest = json.loads((model_dir / "manifest.json").read_text())
    (model_dir / "model.pt").write_bytes(b"garbage")
    with pytest.raises(ArtifactCorrupt):
        load_model(model_dir)
    manifest["kind"] = "index"
    (model_dir / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ManifestMismatch):
        load_model(model_dir)
