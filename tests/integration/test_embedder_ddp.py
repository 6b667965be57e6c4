"""Two-process DDP (torchrun, gloo on CPU) trains the tiny embedder and rank 0 saves it."""

from __future__ import annotations

import json

from common.settings import load_settings
from indexer import service
from indexer.embedder import load_embedder
from tests.unit.trainer.embedder.tiny_model import build_tiny_model, write_beir
from trainer.embedder.train import launch_ddp, prepare_run, run_training


def test_two_process_ddp_trains_and_saves(tmp_path):
    model = build_tiny_model(tmp_path / "base")
    beir = write_beir(tmp_path / "beir")
    s = load_settings({"home": tmp_path / "ws", "ner": {"enabled": False},
                       "indexer": {"embedder": str(model), "chunk_tokens": 64, "chunk_overlap": 8},
                       "embedder_train": {"batch_size": 8, "mini_batch_size": 4, "epochs": 2, "max_seq_length": 64,
                                          "dev_fraction": 0.2, "dev_distractors": 10, "lr": 1e-3, "logging_steps": 1,
                                          "save_steps": 100}})
    service.ingest(s, [beir / "corpus.jsonl"], progress=False)
    spec = prepare_run(s, tmp_path / "ddp", tmp_path / "out-ddp", progress=False)
    n = spec["data"]["train_pairs"]
    ddp = launch_ddp(tmp_path / "ddp", nproc=2)
    assert ddp["world_size"] == 2
    # each rank takes batch_size / 2 pairs a step; the last incomplete batch is dropped
    assert ddp["steps"] == 2 * (n // 8)
    losses = [h["loss"] for h in ddp["history"] if "loss" in h]
    assert losses and all(x == x and x > 0 for x in losses)
    saved = load_embedder(str(tmp_path / "ddp" / "final"))
    assert saved.id != load_embedder(str(model)).id  # the weights moved
    single = run_training(tmp_path / "ddp", progress=False)  # the same frozen data trains in one process too
    assert single["world_size"] == 1
    assert json.loads((tmp_path / "ddp" / "run.json").read_text())["data"]["train_pairs"] == n
