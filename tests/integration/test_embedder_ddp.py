"""Two-process DDP (torchrun, gloo on CPU) trains the tiny embedder and rank 0 saves it."""

from __future__ import annotations

import json

import pytest
import torch
from torch.nn import functional as F

from common.settings import load_settings
from indexer import service
from indexer.embedder import load_embedder
from tests.unit.trainer.embedder.tiny_model import build_tiny_model, write_beir
from trainer.embedder.losses import MnrlDistillLoss
from trainer.embedder.train import launch_ddp, prepare_run, run_training


def test_two_process_ddp_trains_and_saves(tmp_path):
    model = build_tiny_model(tmp_path / "base")
    beir = write_beir(tmp_path / "beir")
    s = load_settings({"home": tmp_path / "ws", "ner": {"enabled": False},
                       "indexer": {"embedder": str(model), "chunk_tokens": 64, "chunk_overlap": 8},
                       "embedder_train": {"batch_size": 8, "mini_batch_size": 4, "epochs": 2, "max_seq_length": 64,
                                          "dev_fraction": 0.2, "dev_distractors": 10, "lr": 1e-3, "logging_steps": 1,
                                          "save_steps": 100,
                                          # the fixture has no claim sentences; every pair it has, unbudgeted
                                          "sources": "title,ict", "budget_minutes": None, "loss": "cached_mnrl"}})
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


def _rank_loss(rank: int, port: int, q, pos, cands, teacher, out) -> None:  # type: ignore[no-untyped-def]
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        half = slice(rank * 2, rank * 2 + 2)
        loss = MnrlDistillLoss(torch.nn.Identity(), gather_across_devices=True)
        out[rank] = loss.loss_from_embeddings(q[half], pos[half], cands[half], teacher[half]).item()
    finally:
        dist.destroy_process_group()


def test_gathered_loss_over_two_ranks_equals_the_whole_batch_in_one_process():
    """Under DDP each rank must see the other's positives as negatives, as MNRL's own gather does."""
    import socket

    import torch.multiprocessing as mp

    torch.manual_seed(2)
    q, pos, cands, teacher = _unit_vecs(4, 8), _unit_vecs(4, 8), _unit_vecs(4, 3, 8), torch.rand(4, 3)
    whole = MnrlDistillLoss(torch.nn.Identity()).loss_from_embeddings(q, pos, cands, teacher).item()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = mp.Manager().dict()
    mp.spawn(_rank_loss, args=(port, q, pos, cands, teacher, out), nprocs=2, join=True)
    assert (out[0] + out[1]) / 2 == pytest.approx(whole, abs=1e-5)
    local = [MnrlDistillLoss(torch.nn.Identity()).loss_from_embeddings(q[i:i + 2], pos[i:i + 2], cands[i:i + 2],
                                                                      teacher[i:i + 2]).item() for i in (0, 2)]
    assert sum(local) / 2 != pytest.approx(whole, abs=1e-3)  # without the gather the figure differs


def _unit_vecs(*shape: int) -> torch.Tensor:
    return F.normalize(torch.randn(*shape), dim=-1)
