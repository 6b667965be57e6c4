"""Two-process DDP (torchrun, gloo) on the tiny preset matches a single-process run of the same batches."""

from __future__ import annotations

import json
from dataclasses import dataclass

import torch

from common.settings import LmConfig
from trainer.lm.checkpoint import load_model
from trainer.lm.run import launch_ddp, run_training
from trainer.lm.service import prepare_lm_run

TEXTS = [
    "Rain falls on the hills and runs into streams that join the river near the old mill.",
    "The library lends books for three weeks, and late returns pay a small fine at the desk.",
    "Solar panels turn sunlight into electricity; an inverter changes it to alternating current.",
    "Owls hunt at night, locating mice by sound with ears set at different heights.",
    "A sourdough starter is flour and water colonised by wild yeast and lactic bacteria.",
    "Chess openings such as the Sicilian Defence have been studied for centuries.",
]


@dataclass(frozen=True)
class Chunk:
    doc_id: str
    text: str


def test_two_process_ddp_matches_single_process(tmp_path):
    chunks = [Chunk(f"d{i}", (t + " ") * 4) for i, t in enumerate(TEXTS)]
    cfg = LmConfig(preset="tiny", vocab_size=400, steps=4, batch_size=8, grad_accum=2, warmup=1, target_len=32,
                   n_neighbours=1, neighbour_len=16, eval_every=4, eval_rows=8, ckpt_every=4, heldout_fraction=0.2,
                   bf16=False)  # fp32: bf16 rounding differs with the per-rank batch shapes

    def neighbours(c):
        return [o.text for o in chunks if o.doc_id != c.doc_id][:1]

    for name in ("single", "ddp"):
        prepare_lm_run(tmp_path / name / "run", tmp_path / name / "model", chunks, cfg, neighbours)
    single = run_training(tmp_path / "single" / "run")
    ddp = launch_ddp(tmp_path / "ddp" / "run", nproc=2)
    _, _, manifest = load_model(tmp_path / "ddp" / "model")
    assert manifest["training"]["world_size"] == 2

    def losses(name):
        rows = (tmp_path / name / "run" / "train.jsonl").read_text().splitlines()
        return [json.loads(r)["loss"] for r in rows if json.loads(r)["event"] == "step"]

    a, b = losses("single"), losses("ddp")
    assert len(a) == len(b) == 4
    assert max(abs(x - y) for x, y in zip(a, b)) < 1e-3
    assert abs(single["heldout_loss"] - ddp["heldout_loss"]) < 1e-3
    ma, _, _ = load_model(tmp_path / "single" / "model")
    mb, _, _ = load_model(tmp_path / "ddp" / "model")
    # Adam moves a weight whose gradient is only rounding noise by up to lr (3e-3) a step whatever the noise's
    # size, so single weights may differ by a fraction of that; a rank training on other data or missing the
    # all-reduce moves them all (measured: max 2.6e-4, mean 3e-7).
    diffs = {k: (v - mb.state_dict()[k]).abs() for k, v in ma.state_dict().items()}
    assert all(float(d.max()) < 1e-3 for d in diffs.values()), {k: float(d.max()) for k, d in diffs.items()}
    assert sum(float(d.sum()) for d in diffs.values()) / sum(d.numel() for d in diffs.values()) < 2e-6
