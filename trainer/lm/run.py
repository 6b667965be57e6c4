"""A training run directory: prepared once (tokenizer, memmapped data, run.json), then trained by
one process or by `torchrun` ranks. `python -m trainer.lm.run RUN_DIR [--resume]` is the DDP entry:

    torchrun --standalone --nproc_per_node 2 -m trainer.lm.run RUN_DIR

run.json holds everything a rank needs: model args, train config, output directory, optional init
checkpoint (QA fine-tuning) and metadata for the manifest (data spec, held-out documents...).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from common.artifacts import atomic_write_text
from common.errors import InvalidInput, NotFound
from common.jsonlog import setup_logging
from common.runs import RUN_FILE
from trainer.ddp import torchrun
from trainer.lm.checkpoint import load_model, save_checkpoint
from trainer.lm.data import LmDataset
from trainer.lm.init import induction_init
from trainer.lm.model import ModelArgs, Transformer
from trainer.lm.tokenizer import Tokenizer
from trainer.lm.train import TrainConfig, rank_world, train

log = logging.getLogger(__name__)


def write_run(run_dir: Path, *, out: Path, model_args: ModelArgs, cfg: TrainConfig, meta: dict[str, Any],
              init: Path | None = None) -> None:
    spec = {"out": str(out), "model_args": model_args.to_dict(), "train": asdict(cfg), "meta": meta,
            "init": str(init) if init else None}
    atomic_write_text(Path(run_dir) / RUN_FILE, json.dumps(spec, indent=2, default=str))


def read_run(run_dir: Path) -> dict[str, Any]:
    path = Path(run_dir) / RUN_FILE
    if not path.exists():
        raise NotFound(f"{run_dir} is not a prepared LM run (no {RUN_FILE})")
    return json.loads(path.read_text(encoding="utf-8"))


def run_training(run_dir: Path, resume: bool = False, stop_after: int | None = None) -> dict[str, Any]:
    """Train the prepared run (in this process, or as one torchrun rank) and save the final model.

    With `stop_after` below the configured steps only the resumable checkpoint is written.
    """
    run_dir = Path(run_dir)
    spec = read_run(run_dir)
    tokenizer = Tokenizer.load(run_dir / "tokenizer.model")
    if spec["init"]:
        model, _, _ = load_model(Path(spec["init"]))
        model.train()
    else:
        torch.manual_seed(spec["train"]["seed"])
        model = Transformer(ModelArgs.from_dict(spec["model_args"]))
        if spec["meta"].get("weight_init") == "induction":
            induction_init(model, seed=spec["train"]["seed"])
    cfg = TrainConfig(**spec["train"])
    train_ds = LmDataset(run_dir / "data" / "train")
    held = LmDataset(run_dir / "data" / "heldout") if (run_dir / "data" / "heldout" / "meta.json").exists() else None
    summary = train(model, tokenizer, train_ds, held, cfg, run_dir, resume=resume, meta=spec["meta"],
                    stop_after=stop_after)
    rank, world = rank_world()
    finished = stop_after is None or stop_after >= cfg.steps
    if rank == 0 and finished:
        save_checkpoint(
            Path(spec["out"]), model, tokenizer,
            training={**spec["meta"], "config": spec["train"], "world_size": world, "init": spec["init"]},
            metrics=summary, step=cfg.steps,
            extra_files=[run_dir / "loss.png", run_dir / "train.jsonl"],
        )
    if world > 1:
        dist.barrier()
    return {**summary, "out": spec["out"], "run_dir": str(run_dir)}


def launch_ddp(run_dir: Path, nproc: int, resume: bool = False) -> dict[str, Any]:
    """Run `run_training` under torchrun with `nproc` gloo ranks; returns rank 0's summary."""
    proc = torchrun("trainer.lm.run", run_dir, nproc, resume, stdout=subprocess.PIPE)
    if proc.returncode != 0:
        raise InvalidInput(f"distributed training failed (exit {proc.returncode}); see the log above")
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if not lines:
        raise InvalidInput("distributed training printed no summary")
    return json.loads(lines[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description="Train a prepared LM run (DDP entry for torchrun).")
    ap.add_argument("run_dir", type=Path)
    ap.add_argument("--resume", action="store_true")
    a = ap.parse_args()
    setup_logging("INFO")
    world = int(os.environ.get("WORLD_SIZE", "1"))  # entry point: torchrun's environment
    if world > 1:
        dist.init_process_group("gloo")
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // world))
    try:
        summary = run_training(a.run_dir, resume=a.resume)
        if rank_world()[0] == 0:
            print(json.dumps(summary, default=str), flush=True)
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


if __name__ == "__main__":
    main()
