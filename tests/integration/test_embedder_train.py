"""Embedder training end to end on a tiny random BERT built in the fixture: mine, train, save, reindex."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from common.errors import InvalidInput, ManifestMismatch, ModelUnavailable, TooLittleData
from common.settings import load_settings
from indexer import service
from indexer.chunking import index_text
from indexer.embedder import load_embedder
from indexer.workspace import Workspace
from tests.unit.trainer.embedder.tiny_model import build_tiny_model, write_beir
from trainer.embedder.pairs import pairs_from_jsonl
from trainer.embedder.train import train_embedder

ROOT = Path(__file__).resolve().parents[2]
TRAIN = {"batch_size": 8, "mini_batch_size": 4, "epochs": 4, "max_seq_length": 64, "dev_fraction": 0.2,
         "dev_distractors": 10, "lr": 1e-3, "logging_steps": 1, "save_steps": 3, "hard_negatives": 1,
         "precision": "fp32",
         # the MNRL recipe these tests were written for (the default is hybrid distillation, tested below)
         "loss": "cached_mnrl", "sources": "title,ict", "base_weight": 0.0, "dropout": None, "budget_minutes": None}


def make_settings(home: Path, model: Path, **train) -> object:
    return load_settings({"home": home, "ner": {"enabled": False},
                          "indexer": {"embedder": str(model), "chunk_tokens": 64, "chunk_overlap": 8},
                          "embedder_train": {**TRAIN, **train}})


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("emb")
    model = build_tiny_model(root / "base")
    beir = write_beir(root / "beir")
    home = root / "ws"
    service.ingest(make_settings(home, model), [beir / "corpus.jsonl"], progress=False)
    return {"model": model, "beir": beir, "home": home}


@pytest.fixture
def ws(tiny, tmp_path):
    home = tmp_path / "ws"
    shutil.copytree(tiny["home"], home)
    return home


def test_training_lowers_loss_and_writes_a_complete_artifact(tiny, ws, tmp_path):
    s = make_settings(ws, tiny["model"], fill_per_chunk=4)
    out = tmp_path / "tuned"
    rep = train_embedder(s, out=out, progress=False)
    losses = [r["loss"] for r in rep["loss_curve"]]
    assert len(losses) >= 6
    assert sum(losses[-2:]) / 2 < sum(losses[:2]) / 2  # a few steps lower the loss
    assert rep["metrics"]["dev_after"]["ndcg@10"] >= 0 and "ndcg@10" in rep["metrics"]["dev_before"]

    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["kind"] == "embedder" and manifest["name"] == "tuned"
    assert manifest["base"]["id"] == load_embedder(str(tiny["model"])).id
    assert manifest["loss"]["name"] == "CachedMultipleNegativesRankingLoss"
    assert manifest["hyperparameters"]["lr"] == 1e-3 and manifest["data"]["train_pairs"] > 0
    assert set(manifest["data"]["train_by_source"]) == {"title", "ict"}
    assert (out / "curves.png").stat().st_size > 1000 and (out / "report.json").exists()
    emb = load_embedder(str(out))
    assert emb.name == "tuned" and emb.id != manifest["base"]["id"]
    assert emb.max_tokens == 128  # the saved model keeps the base length, not the training length
    from indexer.service import chunker_id

    base = load_embedder(str(tiny["model"]))
    assert chunker_id(emb, 64, 8) == chunker_id(base, 64, 8)  # same tokenizer: reindex reuses the chunks

    # What was trained on: no dev document, no self-negative.
    run = ws / "runs" / "embedder-tuned"
    train = pairs_from_jsonl((run / "train.jsonl").read_text())
    dev = json.loads((run / "dev.json").read_text())
    store = Workspace.open(s).store
    dev_docs = set(dev["doc_ids"])
    assert dev_docs and not dev_docs & {p.doc_id for p in train}
    assert not set(dev["queries"].values()) & {p.query for p in train}
    data = json.loads((run / "run.json").read_text())["data"]
    # the unbudgeted run is limited by the corpus: further sentences of the training chunks fill it
    assert 0 < data["fill_pairs"] < data["train_pairs"]
    served = json.loads((run / "run.json").read_text())["probe"]  # the gate judges search as the index serves it
    assert served["fusion"] == {"fusion": s.indexer.fusion, "rrf_k": s.indexer.rrf_k, "candidates": s.indexer.candidates}
    assert served["mode"] == "hybrid" and served["dense_weight"] == s.indexer.dense_weight
    for key, text in dev["corpus"].items():  # distractors never come from a dev document
        if key.startswith("c"):
            assert store.get_chunks([int(key[1:])])[int(key[1:])].doc_id not in dev_docs
    from indexer.chunking import index_text

    own = {}
    for c in store.iter_chunks():
        own.setdefault(c.doc_id, set()).add(index_text(c.title, c.text))
    for p in train:
        assert len(p.negatives) == 1
        assert p.negatives[0] not in own[p.doc_id]  # never a chunk of the positive's own document


def test_hybrid_distillation_trains_on_teacher_scored_candidates(tiny, ws, tmp_path):
    s = make_settings(ws, tiny["model"], loss="distill", distill_candidates=3, negative_depth=20, dropout=0.0,
                      negative_max_sim=1.0,  # a random tiny BERT puts every text near every other
                      distill_positive=True, precision="bf16")
    out = tmp_path / "distilled"
    rep = train_embedder(s, out=out, progress=False)
    losses = [r["loss"] for r in rep["loss_curve"]]
    assert len(losses) >= 4 and sum(losses[-2:]) / 2 < sum(losses[:2]) / 2
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["loss"]["name"].endswith("hybrid listwise KL distillation")
    assert manifest["loss"]["candidates"] == 3 and manifest["data"]["negatives_per_pair"] == 3
    assert manifest["loss"]["positive_distilled"] is True and rep["training"]["precision"] == "bf16"
    train = pairs_from_jsonl((ws / "runs" / "embedder-distilled" / "train.jsonl").read_text())
    store = Workspace.open(s).store
    own_doc = {index_text(c.title, c.text): c.doc_id for c in store.iter_chunks()}
    for p in train:
        assert len(p.negatives) == len(p.teacher) == 3 and all(0.0 <= t <= 1.0 for t in p.teacher)
        assert all(own_doc[n] != p.doc_id for n in p.negatives)  # never the positive's own document
        assert len({own_doc[n] for n in p.negatives}) == 3  # one candidate per document
    assert any(p.teacher[0] > p.teacher[-1] for p in train)  # graded, not constant
    # Dropout was off while training, but the saved model keeps the base's configuration.
    base_cfg = json.loads((tiny["model"] / "config.json").read_text())
    assert json.loads((out / "config.json").read_text())["attention_probs_dropout_prob"] == \
        base_cfg["attention_probs_dropout_prob"] > 0


def test_residual_training_carries_bm25_offsets_into_the_loss(tiny, ws, tmp_path):
    s = make_settings(ws, tiny["model"], loss="distill", distill_candidates=3, negative_depth=20, dropout=0.0,
                      negative_max_sim=1.0, bm25_residual=True)
    out = tmp_path / "residual"
    rep = train_embedder(s, out=out, progress=False)
    losses = [r["loss"] for r in rep["loss_curve"]]
    assert len(losses) >= 4 and sum(losses[-2:]) / 2 < sum(losses[:2]) / 2
    assert json.loads((out / "manifest.json").read_text())["loss"]["bm25_residual"] is True
    train = pairs_from_jsonl((ws / "runs" / "embedder-residual" / "train.jsonl").read_text())
    assert all(len(p.bm25) == 4 and all(o >= 0.0 for o in p.bm25) for p in train)
    assert any(o > 0.0 for p in train for o in p.bm25)  # BM25 lifts some candidates


def test_base_weight_saves_the_average_of_the_trained_and_starting_weights(tiny, ws, tmp_path):
    from safetensors.torch import load_file
    from transformers.trainer_utils import get_last_checkpoint

    s = make_settings(ws, tiny["model"], base_weight=0.5, epochs=2)
    out = tmp_path / "averaged"
    rep = train_embedder(s, out=out, progress=False)
    assert {"dev_after", "dev_after_unaveraged"} <= set(rep["metrics"])
    tuned = load_file(Path(get_last_checkpoint(str(ws / "runs" / "embedder-averaged" / "checkpoints"))) / "model.safetensors")
    start, saved = load_file(tiny["model"] / "model.safetensors"), load_file(out / "model.safetensors")
    name = next(k for k in saved if k.endswith("query.weight"))
    assert not torch.allclose(tuned[name], start[name])  # training moved it
    assert torch.allclose(saved[name], (tuned[name] + start[name]) / 2, atol=1e-6)


def test_resume_continues_from_the_last_checkpoint(tiny, ws, tmp_path):
    s = make_settings(ws, tiny["model"], epochs=2)
    out = tmp_path / "tuned"
    first = train_embedder(s, out=out, progress=False)
    steps = first["training"]["steps"]
    again = train_embedder(s, out=out, resume=True, progress=False)
    assert again["training"]["resumed_from"].endswith(f"checkpoint-{steps}")
    assert again["training"]["steps"] == steps
    with pytest.raises(InvalidInput, match="--out"):
        train_embedder(s, resume=True, progress=False)


def test_a_build_continues_only_the_run_prepared_under_its_inputs(tiny, ws, tmp_path):
    s = make_settings(ws, tiny["model"], epochs=2)
    out = tmp_path / "tuned"
    first = train_embedder(s, out=out, progress=False, token="inputs-1")
    steps = first["training"]["steps"]
    again = train_embedder(s, out=out, progress=False, token="inputs-1")  # the build re-run, same inputs
    assert again["training"]["resumed_from"].endswith(f"checkpoint-{steps}")
    fresh = train_embedder(s, out=out, progress=False, token="inputs-2")  # the corpus or the config changed
    assert fresh["training"]["resumed_from"] is None and fresh["training"]["steps"] == steps


def test_reindex_with_the_new_embedder_switches_and_mismatch_is_refused(tiny, ws, tmp_path):
    s = make_settings(ws, tiny["model"], epochs=1)
    out = tmp_path / "tuned"
    train_embedder(s, out=out, progress=False)
    w = Workspace.open(s)
    old_gen = w.active_index_name()
    old_ids = set(w.store.active_chunk_ids().tolist())
    base_id = w.searcher().embedder.id
    # A failing reindex (not a model directory) leaves the old index active and searchable.
    with pytest.raises(ModelUnavailable):
        service.reindex(s, embedder=str(tmp_path), progress=False)
    assert Workspace.open(s).active_index_name() == old_gen

    rep = service.reindex(s, embedder=str(out), progress=False)
    w = Workspace.open(s)
    assert w.active_index_name() != old_gen and Path(rep.index_dir).name == w.active_index_name()
    assert w.searcher().embedder.id == load_embedder(str(out)).id != base_id
    assert set(w.store.active_chunk_ids().tolist()) == old_ids  # chunks reused, only re-embedded
    assert service.search(s, "owls hunt at night", k=3, mode="dense")
    with pytest.raises(ManifestMismatch):  # querying with another embedder than the index's
        w.searcher(str(tiny["model"]))
    # Training again into the model the index searches with is refused before any work: the index keeps searching.
    assert w.served_model_dirs() == {out.resolve()}
    stamp = (out / "model.safetensors").stat().st_mtime_ns
    with pytest.raises(InvalidInput, match="the active index searches with"):
        train_embedder(s, out=out, progress=False)
    assert (out / "model.safetensors").stat().st_mtime_ns == stamp
    assert service.search(s, "owls hunt at night", k=3, mode="dense")
    # Trained again (a rebuild), the new model starts from the base the served one was adapted from, not on top
    # of it, and is judged against the one serving.
    again = train_embedder(s, out=tmp_path / "again", progress=False)
    assert again["base"]["id"] == base_id
    spec = json.loads((ws / "runs" / "embedder-again" / "run.json").read_text())
    assert spec["serving"]["path"] == str(out.resolve()) and spec["base"]["path"] == str(tiny["model"].resolve())
    assert spec["serving"]["adapted"] and again["serving"]["adapted"]  # the report labels the comparison by it
    # The model directory changes under the index, in this same process: refused, never silently served
    # (the process's loaded copy of the old weights is not reused).
    trained_id = load_embedder(str(out)).id
    shutil.copy2(tiny["model"] / "model.safetensors", out / "model.safetensors")
    assert load_embedder(str(out)).id != trained_id
    with pytest.raises(ManifestMismatch):
        Workspace.open(s).searcher()


def test_labelled_beir_train_and_eval_beir(tiny, ws, tmp_path):
    s = make_settings(ws, tiny["model"], epochs=1)
    rep = train_embedder(s, out=tmp_path / "sup", beir_train=tiny["beir"], eval_beir=tiny["beir"], progress=False)
    assert rep["data"]["train_by_source"] == {"beir-train": rep["data"]["train_pairs"]}
    assert set(rep["metrics"]["beir_after"]) == {"bm25", "dense", "hybrid"}
    assert rep["metrics"]["beir_before"]["bm25"] == rep["metrics"]["beir_after"]["bm25"]
    assert "select" not in rep["metrics"]  # its train split was trained on: nothing left to choose on


def test_an_unsupervised_run_is_judged_on_the_train_split_and_reports_test(tiny, ws, tmp_path):
    s = make_settings(ws, tiny["model"], epochs=1)
    rep = train_embedder(s, out=tmp_path / "unsup", eval_beir=tiny["beir"], progress=False)
    sel = rep["metrics"]["select"]
    assert sel["split"] == "train" and set(sel["after"]) == {"bm25", "dense", "hybrid"}
    assert set(rep["metrics"]["beir_after"]) == {"bm25", "dense", "hybrid"}  # test, for the record


def test_a_build_does_not_train_a_model_its_gate_could_not_judge(tiny, ws, tmp_path):
    s = make_settings(ws, tiny["model"], epochs=1)
    with pytest.raises(TooLittleData, match=r"this corpus gives \d+ probe queries that BM25 alone misses"):
        train_embedder(s, out=tmp_path / "skipped", progress=False, judge_first=True)
    assert not (tmp_path / "skipped").exists()
    # a labelled split decides instead of the probe, so the run trains
    rep = train_embedder(s, out=tmp_path / "judged", eval_beir=tiny["beir"], progress=False, judge_first=True)
    assert rep["metrics"]["select"]["split"] == "train" and (tmp_path / "judged" / "manifest.json").exists()


def test_cli_train_embedder_json_and_errors(tiny, ws, tmp_path):
    env_cfg = ["-w", str(ws)]
    import os

    env = {**os.environ, "RAGKILN_INDEXER__EMBEDDER": str(tiny["model"]), "RAGKILN_EMBEDDER_TRAIN__BATCH_SIZE": "8",
           "RAGKILN_EMBEDDER_TRAIN__MINI_BATCH_SIZE": "4", "RAGKILN_EMBEDDER_TRAIN__MAX_SEQ_LENGTH": "64",
           "RAGKILN_EMBEDDER_TRAIN__DEV_DISTRACTORS": "10", "RAGKILN_EMBEDDER_TRAIN__DEV_FRACTION": "0.2",
           "RAGKILN_EMBEDDER_TRAIN__NEGATIVE_MAX_SIM": "1.0"}  # a random tiny BERT puts every text near every other
    cmd = [sys.executable, "-m", "cli", *env_cfg, "train", "embedder", "--epochs", "1",
           "--out", str(tmp_path / "cli-model"), "--json"]
    r = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    obj = json.loads(r.stdout)
    assert obj["out"] == str(tmp_path / "cli-model") and (tmp_path / "cli-model" / "manifest.json").exists()
    assert "plan: " in r.stderr and obj["plan"]["steps"] >= 1  # the plan is printed before training
    assert obj["metrics"]["probe"]["replace"] in (True, False)  # the default recipe, with the label-free probe
    bad = subprocess.run(cmd[:-1] + ["--beir-train", str(tmp_path / "nope"), "--json"], cwd=ROOT, env=env,
                         capture_output=True, text=True)
    assert bad.returncode == 3 and bad.stdout == ""
    assert bad.stderr.strip().splitlines()[-1].startswith("ragkiln: error: --beir-train")
    bad = subprocess.run(cmd[:-1] + ["--beir-train", str(tiny["beir"]), "--sources", "ict", "--hard-negatives", "99"],
                         cwd=ROOT, env=env, capture_output=True, text=True)
    assert bad.returncode == 2 and "hard_negatives" in bad.stderr
