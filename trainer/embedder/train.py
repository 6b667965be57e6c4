"""Contrastive fine-tuning of the workspace's embedder with the sentence-transformers trainer.

Three steps, each restartable: `prepare_run` mines pairs and hard negatives into a run folder (the
data is frozen there so a resumed or distributed run sees exactly the same examples), `run_training`
trains from it (single process or one torchrun rank, gloo on CPU), and `finalize_run` evaluates and
writes the model as a sentence-transformers directory with a manifest, a JSON report and a PNG.

Loss: MultipleNegativesRankingLoss (in-batch + hard negatives; Henderson et al. 2017), by default
its cached variant (GradCache; Gao et al. 2021) so large effective batches fit in CPU memory, with
no-duplicates batching so a text never appears twice in a batch as a false negative.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import random
import shutil
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from common.artifacts import atomic_artifact_dir, atomic_write_text, make_manifest, manifest_if_any
from common.console import is_terminal
from common.errors import InvalidInput, NotFound, TooLittleData
from common.runs import prepared_under, stamp_run
from common.settings import EmbedderTrainConfig, Settings
from indexer.backends import remove_exports_of
from indexer.beir_eval import selection_split
from indexer.chunking import index_text
from indexer.embedder import model_id, resolve_precision
from indexer.types import Chunk
from indexer.workspace import Workspace
from trainer.embedder import pairs as P
from trainer.embedder.negatives import mine_hard_negatives, mine_teacher_candidates
from trainer.embedder.gate import MIN_QUERIES, Probe, build_probe, count_bm25_misses, run_probe, served_mode
from trainer.embedder.plan import TrainPlan, measure_slowdown, plan_training

log = logging.getLogger(__name__)

KIND = "embedder"
FORMAT_VERSION = 1
LOSS_NAMES = {"cached_mnrl": "CachedMultipleNegativesRankingLoss", "mnrl": "MultipleNegativesRankingLoss",
              "distill": "MultipleNegativesRankingLoss + hybrid listwise KL distillation"}


# ---- 1. data -------------------------------------------------------------------------------------
def build_pairs(ws: Workspace, cfg: EmbedderTrainConfig, pairs_file: Path | None, beir_train: Path | None
                ) -> tuple[list[P.Pair], list[str]]:
    """Labelled pairs when given, mined pairs when not (or also, with mine_with_labels)."""
    labelled: list[P.Pair] = []
    used: list[str] = []
    if pairs_file is not None:
        labelled += P.read_pairs_jsonl(Path(pairs_file))
        used.append(f"pairs:{pairs_file}")
    if beir_train is not None:
        labelled += P.read_beir_train(Path(beir_train), "train")
        used.append(f"beir-train:{beir_train}")
    mined: list[P.Pair] = []
    if not labelled or cfg.mine_with_labels:
        sources = _sources(cfg)
        bad = [s for s in sources if s not in P.SOURCES]
        if bad or not sources:
            raise InvalidInput(f"unknown pair source {bad[0] if bad else '(none)'}; choose from {', '.join(P.SOURCES)}")
        chunks = list(ws.store.iter_chunks())
        rng = random.Random(cfg.seed)
        if "title" in sources:
            mined += P.title_pairs(chunks)
        mined += _sentence_pairs(chunks, rng, sources, cfg.ict_per_chunk)
        if "entity" in sources:
            ents = ws.store.entities_for([c.id for c in chunks])
            if any(ents.values()):
                mined += P.entity_pairs(chunks, ents, rng, P.entity_doc_freq(ents))
        used.append("mined:" + ",".join(sources))
    pairs = P.dedup(labelled + mined)
    if len({p.doc_id for p in pairs}) < 2:
        raise TooLittleData("need pairs from at least two documents to hold out a dev split; ingest more documents "
                            "or give labelled pairs")
    return pairs, used


def _sources(cfg: EmbedderTrainConfig) -> list[str]:
    return [s.strip() for s in cfg.sources.split(",") if s.strip()]


def _sentence_pairs(chunks: list[Chunk], rng: random.Random, sources: list[str], per_chunk: int) -> list[P.Pair]:
    """The sources that pair a sentence of a chunk with the rest of it (inverse cloze, claims)."""
    out: list[P.Pair] = []
    if "ict" in sources:
        out += P.ict_pairs(chunks, rng, per_chunk=per_chunk)
    if "claim" in sources:
        out += P.claim_pairs(chunks, rng, per_chunk=per_chunk)
    return out


def fill_pairs(ws: Workspace, cfg: EmbedderTrainConfig, train: list[P.Pair], dev: list[P.Pair]) -> list[P.Pair]:
    """Further sentences of the training documents' chunks as further pairs (marked `fill`), for a corpus too
    small to spend the budget on one sentence a chunk; none from dev documents, none repeating a dev query."""
    docs = {p.doc_id for p in train}
    chunks = [c for c in ws.store.iter_chunks() if c.doc_id in docs]
    rng = random.Random(cfg.seed + 17)  # apart from the first pairs' draw, which stays as it was
    more = _sentence_pairs(chunks, rng, _sources(cfg), cfg.fill_per_chunk)
    dev_queries = {P._norm(p.query) for p in dev}
    n = len(train)
    kept = P.dedup(train + [replace(p, fill=True) for p in more if P._norm(p.query) not in dev_queries])
    return kept[n:]


def _dev_set(dev: list[P.Pair], ws: Workspace, cfg: EmbedderTrainConfig) -> dict[str, Any]:
    """Dev queries against their positives plus distractor chunks from other documents."""
    queries: dict[str, str] = {}
    corpus: dict[str, str] = {}
    relevant: dict[str, list[str]] = {}
    qid_of: dict[str, str] = {}
    pid_of: dict[str, str] = {}
    for p in dev:
        q = qid_of.setdefault(P._norm(p.query), f"q{len(qid_of)}")
        d = pid_of.setdefault(P._norm(p.positive), f"p{len(pid_of)}")
        queries[q], corpus[d] = p.query, p.positive
        relevant.setdefault(q, [])
        if d not in relevant[q]:
            relevant[q].append(d)
    dev_docs = {p.doc_id for p in dev}
    ids = [int(i) for i in ws.store.active_chunk_ids()]
    random.Random(cfg.seed + 1).shuffle(ids)
    chunks = ws.store.get_chunks(ids[: cfg.dev_distractors * 2])
    n = 0
    for cid in ids[: cfg.dev_distractors * 2]:
        c = chunks.get(cid)
        if c is None or c.doc_id in dev_docs or n >= cfg.dev_distractors:
            continue
        corpus[f"c{cid}"] = index_text(c.title, c.text)
        n += 1
    return {"queries": queries, "corpus": corpus, "relevant": relevant, "doc_ids": sorted(dev_docs)}


def _probe(ws: Workspace, cfg: EmbedderTrainConfig, held_out: set[str], bm25_context: int) -> Probe:
    """The label-free gate's probe: held-out documents' chunks and distractors (trainer/embedder/gate.py)."""
    ids = [int(i) for i in ws.store.active_chunk_ids()]
    random.Random(cfg.seed + 2).shuffle(ids)
    others = [c for c in ws.store.get_chunks(ids[: cfg.dev_distractors * 2]).values() if c.doc_id not in held_out]
    held = [c for c in ws.store.iter_chunks() if c.doc_id in held_out]
    return build_probe(held, held_out, others[: cfg.dev_distractors], cfg.seed, bm25_context=bm25_context)


def is_adapted(model_dir: str | Path | None) -> bool:
    """Whether a model directory holds an embedder we trained (a build's or `train embedder`'s)."""
    return (manifest_if_any(model_dir) or {}).get("kind") == KIND


def training_base(serving: dict[str, Any]) -> dict[str, Any]:
    """The model training starts from: the one serving, or, when that is an adapted model (its manifest names the
    model it was trained from, unchanged since), that model. The recipe's steps were chosen for one run from a
    base; a rebuild that trained on top of the last adaptation ran it again on the same corpus, and
    over-adaptation is what the label-free gate judges worst (docs/benchmarks.md)."""
    current = serving
    for _ in range(8):  # a chain of adaptations made before this rule
        manifest = manifest_if_any(current["path"])
        if manifest is None:
            return current
        base = manifest.get("base") if manifest.get("kind") == KIND else None
        if not isinstance(base, dict) or not base.get("path") or not Path(base["path"]).is_dir():
            return current
        if model_id(Path(base["path"])) != base.get("id"):
            return current  # retrained since: no longer the model this one was adapted from
        current = {"name": base.get("name"), "id": base["id"], "path": base["path"],
                   "max_seq_length": current["max_seq_length"]}
    return current


def check_inputs(pairs_file: Path | None, beir_train: Path | None, eval_beir: Path | None) -> None:
    """Fail on a missing input before any model is loaded."""
    if pairs_file is not None and not Path(pairs_file).is_file():
        raise NotFound(f"pairs file {pairs_file} does not exist")
    for flag, d, need in (("--beir-train", beir_train, ("corpus.jsonl", "queries.jsonl", "qrels/train.tsv")),
                          ("--eval-beir", eval_beir, ("corpus.jsonl", "queries.jsonl", "qrels/test.tsv"))):
        for f in need if d is not None else ():
            if not (Path(d) / f).is_file():
                raise NotFound(f"{flag} {d} has no {f}")


def step_timer(model_path: str, max_seq_length: int, bf16: bool):  # type: ignore[no-untyped-def]
    """One forward and backward pass of the torch model training starts from (never the index's int8 export),
    in the training precision; returns the padded length it ran at. For the planner's `measure_slowdown`."""
    import torch
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(model_path, device="cpu", local_files_only=True)
    model.max_seq_length = max_seq_length

    def step(texts: list[str]) -> int:
        features = model.preprocess(texts) if hasattr(model, "preprocess") else model.tokenize(texts)
        model.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            out = model(features)["sentence_embedding"]  # (n, dim)
        out.float().square().sum().backward()
        return int(features["input_ids"].shape[1])

    return step


def plan_run(cfg: EmbedderTrainConfig, available_pairs: int, dev_texts: int = 1000, slowdown: float = 1.0) -> TrainPlan:
    """The run's size: the config's recipe on as many pairs as the corpus, max_pairs and the budget allow."""
    texts = 2 + (cfg.distill_candidates if cfg.loss == "distill" else cfg.hard_negatives)
    return plan_training(available_pairs, cfg.batch_size, texts, cfg.max_seq_length, cfg.budget_minutes,
                         max_pairs=cfg.max_pairs, epochs=cfg.epochs, dev_texts=dev_texts,
                         bf16=resolve_precision(cfg.precision) == "bf16", dropout=(cfg.dropout is None or cfg.dropout > 0),
                         slowdown=slowdown)


def prepare_run(settings: Settings, run_dir: Path, out: Path, pairs_file: Path | None = None,
                beir_train: Path | None = None, eval_beir: Path | None = None, progress: bool = True,
                on_plan=None, judge_first: bool = False) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    """Mine pairs and hard negatives from the workspace index into `run_dir` (train/dev data + spec).

    The plan (pairs, steps, estimated minutes) is logged, and given to `on_plan`, before the index
    searches that mining costs. With `judge_first` (the build) and no labelled split to decide, a corpus
    whose label-free probe cannot judge an adapted model (too few queries BM25 misses) is not trained on:
    TooLittleData, since its model could never be served."""
    cfg = settings.embedder_train
    check_inputs(pairs_file, beir_train, eval_beir)
    ws = Workspace.open(settings)
    searcher = ws.searcher()  # NotFound when nothing is ingested
    t0 = time.perf_counter()
    pairs, used = build_pairs(ws, cfg, pairs_file, beir_train)
    train, dev = P.split_by_document(pairs, cfg.dev_fraction, cfg.seed, max_dev=cfg.max_dev_pairs)
    if not train or not dev:
        raise TooLittleData(f"{len(pairs)} pairs are too few to split into train and dev")
    probe = _probe(ws, cfg, {p.doc_id for p in dev}, settings.indexer.bm25_context_chunks)
    if judge_first and (eval_beir is None or selection_split(eval_beir, beir_train) is None):
        misses = count_bm25_misses(probe, served_mode(settings.indexer)["bm25"])
        if misses < MIN_QUERIES:
            raise TooLittleData(
                f"this corpus gives {misses} probe queries that BM25 alone misses, and without labels the build needs "
                f"{MIN_QUERIES} to judge an adapted embedder; `ragkiln train embedder` trains one anyway")
    emb = searcher.embedder
    # an int8 index's embedder is an export: its torch model is the one serving
    serving = {"name": emb.name, "id": getattr(emb, "base_id", emb.id), "path": getattr(emb, "base_path", emb.path),
               "max_seq_length": emb.max_tokens}
    serving["adapted"] = is_adapted(serving["path"])
    base = training_base(serving)
    sample = [p.positive for p in random.Random(cfg.seed).sample(train, min(32, len(train)))]
    bf16 = resolve_precision(cfg.precision) == "bf16"
    slowdown = measure_slowdown(step_timer(base["path"], cfg.max_seq_length, bf16), sample,
                                cfg.max_seq_length, bf16)
    dev_texts = min(len(dev), cfg.max_dev_pairs) + cfg.dev_distractors
    plan = plan_run(cfg, len(train), dev_texts=dev_texts, slowdown=slowdown)
    mined = any(u.startswith("mined:") for u in used)
    if plan.limited_by == "corpus" and mined and cfg.fill_per_chunk > cfg.ict_per_chunk:
        more = fill_pairs(ws, cfg, train, dev)
        if more:
            train = train + more
            plan = plan_run(cfg, len(train), dev_texts=dev_texts, slowdown=slowdown)
    log.info("%s", plan.describe())
    if on_plan is not None:
        on_plan(plan)
    if cfg.hard_share == 0:
        train = P.cap_pairs(train, plan.pairs, random.Random(cfg.seed))
    else:  # rank every candidate first, then keep the hardest (costs one search per candidate)
        train = P.cap_pairs(train, cfg.max_candidates, random.Random(cfg.seed))
    if cfg.loss == "distill":
        train = mine_teacher_candidates(train, searcher, cfg.distill_candidates, depth=cfg.negative_depth,
                                        max_sim=cfg.negative_max_sim, dense_weight=cfg.teacher_dense_weight,
                                        seed=cfg.seed, progress=progress, max_pairs=plan.pairs,
                                        residual_weight=settings.indexer.dense_weight if cfg.bm25_residual else None)
    else:
        train = mine_hard_negatives(train, searcher, cfg.hard_negatives, depth=cfg.negative_depth,
                                    max_sim=cfg.negative_max_sim, skip_top=cfg.negative_skip_top, seed=cfg.seed,
                                    progress=progress, max_pairs=plan.pairs, hard_share=cfg.hard_share)
    if not train:
        need = (f"{cfg.distill_candidates} teacher candidates" if cfg.loss == "distill"
                else f"{cfg.hard_negatives} hard negatives")
        raise TooLittleData(f"no training pair kept after mining negatives: no query found {need} in the index "
                            "(a corpus this small: lower them, or use loss cached_mnrl)")
    if run_dir.exists():
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True)
    atomic_write_text(run_dir / "train.jsonl", P.pairs_to_jsonl(train))
    dev_set = _dev_set(dev, ws, cfg)
    atomic_write_text(run_dir / "dev.json", json.dumps(dev_set))
    atomic_write_text(run_dir / "probe.json", json.dumps(asdict(probe)))
    spec = {
        "base": base,  # trained from
        "serving": serving,  # compared against: the probe and the labelled split decide whether the new one replaces it
        "config": cfg.model_dump(),
        "out": str(out),
        "eval_beir": str(eval_beir) if eval_beir else None,
        "beir_train": str(Path(beir_train).resolve()) if beir_train else None,  # its labels never decide
        "data": {"sources": used, "pairs_total": len(pairs), "train_pairs": len(train), "dev_pairs": len(dev),
                 "fill_pairs": sum(p.fill for p in train),
                 "train_by_source": P.source_counts(train), "dev_by_source": P.source_counts(dev),
                 "dev_documents": len({p.doc_id for p in dev}),
                 "negatives_per_pair": cfg.distill_candidates if cfg.loss == "distill" else cfg.hard_negatives,
                 "index": searcher.name},
        "plan": plan.to_dict(),
        "prepare_seconds": round(time.perf_counter() - t0, 2),
        # the label-free gate judges in the mode search serves, fused as the index fuses
        "probe": served_mode(settings.indexer),
    }
    atomic_write_text(run_dir / "run.json", json.dumps(spec, indent=2))
    return spec


# ---- 2. training (one process or one torchrun rank) ----------------------------------------------
def _evaluator(dev: dict[str, Any], batch_size: int):  # type: ignore[no-untyped-def]
    from sentence_transformers.evaluation import InformationRetrievalEvaluator

    return InformationRetrievalEvaluator(
        dev["queries"], dev["corpus"], {q: set(v) for q, v in dev["relevant"].items()}, name="dev",
        ndcg_at_k=[10], mrr_at_k=[10], accuracy_at_k=[1, 10], precision_recall_at_k=[10, 100], map_at_k=[100],
        batch_size=batch_size, write_csv=False, show_progress_bar=False, score_functions=None,
    )


def _dev_metrics(scores: dict[str, float]) -> dict[str, float]:
    out = {}
    for k, v in scores.items():
        for key in ("ndcg@10", "recall@100", "mrr@10", "accuracy@1"):
            if k.endswith("cosine_" + key):
                out[key] = round(float(v), 4)
    return out


def set_dropout(model: Any, p: float) -> int:
    """Every dropout layer's probability for this run; the saved config keeps the base's values."""
    import torch

    layers = [m for m in model.modules() if isinstance(m, torch.nn.Dropout)]
    for m in layers:
        m.p = p
    return len(layers)


def run_training(run_dir: Path, resume: bool = False, progress: bool = True) -> dict[str, Any]:
    """Train from a prepared run folder; rank 0 writes the trained model to run_dir/final."""
    import torch
    from datasets import Dataset
    from sentence_transformers import SentenceTransformer, SentenceTransformerTrainer, SentenceTransformerTrainingArguments
    from sentence_transformers.base.sampler import BatchSamplers
    from sentence_transformers.sentence_transformer.losses import (CachedMultipleNegativesRankingLoss,
                                                                   MultipleNegativesRankingLoss)
    from transformers.trainer_utils import get_last_checkpoint

    from trainer.embedder.losses import MnrlDistillLoss

    spec = json.loads((run_dir / "run.json").read_text())
    cfg = EmbedderTrainConfig.model_validate(spec["config"])
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    if world > 1:
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // world))
    rows = P.pairs_from_jsonl((run_dir / "train.jsonl").read_text())
    columns: dict[str, list[Any]] = {"anchor": [p.query for p in rows], "positive": [p.positive for p in rows]}
    for j in range(len(rows[0].negatives) if rows else 0):
        columns[f"negative_{j + 1}"] = [p.negatives[j] for p in rows]
    if cfg.loss == "distill":
        # the loss's labels: teacher score per negative (then BM25's offsets, residual training)
        columns["label"] = [list(p.teacher) + (list(p.bm25) if cfg.bm25_residual else []) for p in rows]
    train_ds = Dataset.from_dict(columns)
    dev = json.loads((run_dir / "dev.json").read_text())

    model = SentenceTransformer(spec["base"]["path"], device="cpu", local_files_only=True)
    model.max_seq_length = cfg.max_seq_length
    if cfg.dropout is not None:
        set_dropout(model, cfg.dropout)
    if cfg.loss == "cached_mnrl":
        loss = CachedMultipleNegativesRankingLoss(model, mini_batch_size=cfg.mini_batch_size,
                                                  gather_across_devices=world > 1)
    elif cfg.loss == "distill":
        loss = MnrlDistillLoss(model, teacher_temperature=cfg.distill_temperature, weight=cfg.distill_weight,
                               gather_across_devices=world > 1, include_positive=cfg.distill_positive,
                               residual=cfg.bm25_residual)
    else:
        loss = MultipleNegativesRankingLoss(model, gather_across_devices=world > 1)
    evaluator = _evaluator(dev, batch_size=64)
    precision = resolve_precision(cfg.precision)
    per_device = max(1, cfg.batch_size // world)
    args = SentenceTransformerTrainingArguments(
        output_dir=str(run_dir / "checkpoints"),
        num_train_epochs=cfg.epochs,
        per_device_train_batch_size=per_device,
        per_device_eval_batch_size=64,
        learning_rate=cfg.lr,
        warmup_steps=float(cfg.warmup_ratio),  # a float < 1 is a ratio of the total steps (transformers v5)
        weight_decay=cfg.weight_decay,
        seed=cfg.seed,
        data_seed=cfg.seed,
        batch_sampler=BatchSamplers.NO_DUPLICATES,
        logging_steps=cfg.logging_steps,
        eval_strategy="steps" if cfg.eval_steps else "epoch",
        eval_steps=cfg.eval_steps or None,
        save_strategy="steps",
        save_steps=cfg.save_steps,
        save_total_limit=2,
        report_to="none",
        use_cpu=True,
        bf16=precision == "bf16",  # CPU autocast through accelerate
        ddp_backend="gloo" if world > 1 else None,
        dataloader_drop_last=world > 1,
        disable_tqdm=not progress or rank != 0 or not is_terminal(),  # a log file gets the logged metrics instead
        save_only_model=False,
    )
    before = _dev_metrics(evaluator(model)) if rank == 0 else {}
    trainer = SentenceTransformerTrainer(model=model, args=args, train_dataset=train_ds, loss=loss, evaluator=evaluator)
    last = get_last_checkpoint(str(run_dir / "checkpoints")) if resume and (run_dir / "checkpoints").is_dir() else None
    if resume and last is None:
        log.warning("no checkpoint in %s; training from the start", run_dir / "checkpoints")
    t0 = time.perf_counter()
    result = trainer.train(resume_from_checkpoint=last)
    seconds = time.perf_counter() - t0
    summary: dict[str, Any] = {}
    if trainer.is_world_process_zero():
        last_eval = [h for h in trainer.state.log_history if "eval_dev_cosine_ndcg@10" in h]
        if last_eval and last_eval[-1]["step"] == result.global_step:  # the epoch-end evaluation is the final one
            after = _dev_metrics({k[len("eval_"):]: v for k, v in last_eval[-1].items() if k.startswith("eval_dev")})
        else:
            after = _dev_metrics(evaluator(model))
        tuned_after = None
        if cfg.base_weight > 0:
            from trainer.embedder.merge import interpolate

            start = SentenceTransformer(spec["base"]["path"], device="cpu", local_files_only=True)
            model.load_state_dict(interpolate(start.state_dict(), model.state_dict(), cfg.base_weight))
            tuned_after, after = after, _dev_metrics(evaluator(model))
        model.max_seq_length = spec["base"]["max_seq_length"]  # the index chunks to the base model's length
        final = run_dir / "final"
        if final.exists():
            shutil.rmtree(final)
        model.save(str(final))
        # The tokenizer is not trained: keep the base's files byte-identical, so the index's chunker id
        # (a hash of them) stays the same and a reindex reuses the stored chunks.
        for name in ("tokenizer.json", "vocab.txt"):
            if (Path(spec["base"]["path"]) / name).is_file() and (final / name).is_file():
                shutil.copy2(Path(spec["base"]["path"]) / name, final / name)
        done_steps = result.global_step
        summary = {
            "dev_before": before, "dev_after": after, "dev_after_unaveraged": tuned_after, "train_seconds": round(seconds, 2),
            "steps": done_steps, "world_size": world, "resumed_from": last, "precision": precision,
            "train_loss": round(float(result.training_loss), 5),
            "pairs_per_second": round(len(rows) * cfg.epochs / seconds, 2) if not last and seconds > 0 else None,
            "history": trainer.state.log_history,
        }
        atomic_write_text(run_dir / "summary.json", json.dumps(summary, indent=2, default=str))
    return summary


def launch_ddp(run_dir: Path, nproc: int, resume: bool = False) -> dict[str, Any]:
    """Run `run_training` under torchrun with `nproc` gloo ranks; returns rank 0's summary."""
    from trainer.ddp import torchrun

    proc = torchrun("trainer.embedder.train", run_dir, nproc, resume, stdout=sys.stderr)
    if proc.returncode != 0 or not (run_dir / "summary.json").exists():
        raise InvalidInput(f"distributed embedder training failed (exit {proc.returncode}); see the log above")
    return json.loads((run_dir / "summary.json").read_text())


# ---- 3. evaluation, report and the model artifact ------------------------------------------------
def _serving(spec: dict[str, Any]) -> dict[str, Any]:
    """The model a new one must beat: the one the index searched with (runs from before it was recorded: the base)."""
    return spec.get("serving") or spec["base"]


def finalize_run(run_dir: Path, summary: dict[str, Any], eval_beir_fn=None) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    """Write the model directory atomically (with its manifest), report.json and curves.png."""
    spec = json.loads((run_dir / "run.json").read_text())
    out = Path(spec["out"])
    cfg = spec["config"]
    metrics: dict[str, Any] = {"dev_before": summary["dev_before"], "dev_after": summary["dev_after"]}
    if summary.get("dev_after_unaveraged"):
        metrics["dev_after_unaveraged"] = summary["dev_after_unaveraged"]
    if (run_dir / "probe.json").is_file():  # the label-free gate: queries unlike the training pairs
        probe = Probe(**json.loads((run_dir / "probe.json").read_text()))
        metrics["probe"] = run_probe(probe, _serving(spec)["path"], str(run_dir / "final"), **spec.get("probe", {}))
    if spec.get("eval_beir") and eval_beir_fn is not None:
        beir = Path(spec["eval_beir"])
        select = selection_split(beir, Path(spec["beir_train"]) if spec.get("beir_train") else None)
        splits = ("test",) if select is None else (select, "test")
        before = eval_beir_fn(_serving(spec)["path"], beir, splits)
        after = eval_beir_fn(str(run_dir / "final"), beir, splits)
        metrics["beir_before"], metrics["beir_after"] = before["test"], after["test"]  # reported, never chooses
        if select is not None:  # the labelled split `ragkiln build` decides on (docs/methodology.md)
            metrics["select"] = {"split": select, "before": before[select], "after": after[select]}
    history = summary.get("history", [])
    before, after = summary["dev_before"].get("ndcg@10"), summary["dev_after"].get("ndcg@10")
    improved = before is not None and after is not None and after > before
    # The dev pairs are the trained kind of query, measured misleading as a judge (docs/benchmarks.md): they
    # are reported, and the call to serve the model is pipeline.decisions.embedder_call's (labels, else the probe).
    log.info("the trainer's dev pairs: nDCG@10 %s -> %s", before, after)
    report = {
        "improved_on_dev": improved,
        "out": str(out), "base": spec["base"], "serving": _serving(spec), "data": spec["data"], "metrics": metrics,
        "training": {k: summary[k] for k in ("train_seconds", "steps", "world_size", "train_loss", "pairs_per_second",
                                             "resumed_from", "precision")},
        "prepare_seconds": spec["prepare_seconds"],
        "plan": spec.get("plan"),
        "loss_curve": [{"step": h["step"], "loss": h["loss"]} for h in history if "loss" in h],
        "dev_curve": [{"step": h["step"], "ndcg@10": h["eval_dev_cosine_ndcg@10"]} for h in history
                      if "eval_dev_cosine_ndcg@10" in h],
    }
    manifest = make_manifest(
        KIND, FORMAT_VERSION, name=out.name, base=spec["base"], data=spec["data"],
        loss={"name": LOSS_NAMES[cfg["loss"]], "scale": 20.0, "similarity": "cosine",
              "mini_batch_size": cfg["mini_batch_size"], "batch_sampler": "no_duplicates",
              **({"teacher": "hybrid: convex combination of min-max BM25 and dense scores",
                  "teacher_dense_weight": cfg["teacher_dense_weight"], "candidates": cfg["distill_candidates"],
                  "teacher_temperature": cfg["distill_temperature"], "distill_weight": cfg["distill_weight"],
                  "positive_distilled": cfg["distill_positive"], "bm25_residual": cfg.get("bm25_residual", False)}
                 if cfg["loss"] == "distill" else {})},
        hyperparameters=cfg, metrics=metrics, training=report["training"],
    )
    with atomic_artifact_dir(out, manifest) as tmp:
        for p in (run_dir / "final").iterdir():
            (shutil.copytree if p.is_dir() else shutil.copy2)(p, tmp / p.name)
        (tmp / "report.json").write_text(json.dumps(report, indent=2, default=str))
        plot_curves(report, tmp / "curves.png")
    shutil.copy2(out / "report.json", run_dir / "report.json")
    return report


def plot_curves(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(1, 2, figsize=(10, 3.5))
    lc = report["loss_curve"]
    ax[0].plot([r["step"] for r in lc], [r["loss"] for r in lc], marker=".")
    ax[0].set(title="training loss", xlabel="step", ylabel="loss")
    dc = [{"step": 0, "ndcg@10": report["metrics"]["dev_before"].get("ndcg@10", 0.0)}] + report["dev_curve"]
    ax[1].plot([r["step"] for r in dc], [r["ndcg@10"] for r in dc], marker="o")
    ax[1].set(title="dev nDCG@10", xlabel="step")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def train_embedder(settings: Settings, out: Path | None = None, pairs_file: Path | None = None,
                   beir_train: Path | None = None, eval_beir: Path | None = None, resume: bool = False,
                   progress: bool = True, on_plan=None, token: str | None = None, judge_first: bool = False,
                   ) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    """The whole `ragkiln train embedder`: prepare (or resume), plan, train, evaluate, save (`judge_first`:
    `prepare_run`'s).

    `token` names the inputs (the build's stage hash): a run prepared under the same token is continued
    from its last checkpoint, with the pairs and plan it already has."""
    if resume and out is None:
        raise InvalidInput("--resume needs the --out of the run to continue")
    check_inputs(pairs_file, beir_train, eval_beir)
    ws = Workspace.open(settings)
    out = Path(out) if out is not None else ws.models / f"embedder-{time.strftime('%Y%m%d-%H%M%S')}"
    if out.expanduser().resolve() in ws.served_model_dirs():
        raise InvalidInput(f"{out} holds the embedder the active index searches with; training into it would leave "
                           "the index unable to search until a reindex: give another --out")
    for gone in remove_exports_of(ws.models, out):
        log.info("removed %s: an export of the model %s replaces", gone.name, out)
    run_dir = ws.home / "runs" / f"embedder-{out.name}"
    # The HF trainer prints its logs on stdout; stdout belongs to the front end (one JSON object).
    with contextlib.redirect_stdout(sys.stderr):
        resume = resume or (token is not None and prepared_under(run_dir, token))
        if resume and (run_dir / "run.json").exists():
            log.info("resuming %s", run_dir)
        else:
            prepare_run(settings, run_dir, out, pairs_file, beir_train, eval_beir, progress, on_plan=on_plan,
                        judge_first=judge_first)
            if token is not None:
                stamp_run(run_dir, token)
        nproc = settings.embedder_train.nproc
        summary = launch_ddp(run_dir, nproc, resume) if nproc > 1 else run_training(run_dir, resume, progress)
        from trainer.embedder.evaluate import beir_metrics

        return finalize_run(run_dir, summary, functools.partial(beir_metrics, settings))


def main() -> None:
    import argparse

    from common.jsonlog import setup_logging

    ap = argparse.ArgumentParser(description="Train a prepared embedder run (the torchrun entry).")
    ap.add_argument("run_dir", type=Path)
    ap.add_argument("--resume", action="store_true")
    a = ap.parse_args()
    setup_logging("INFO")
    run_training(a.run_dir, resume=a.resume)


if __name__ == "__main__":
    main()
