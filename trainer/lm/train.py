"""The LM training loop: AdamW, warmup + cosine, clipping, accumulation, DDP, checkpoints, exact resume.

Exact resume works because nothing stateful drives the data: the rows of optimizer step s are drawn
from a generator seeded by (seed, s), and the LR is a pure function of s. A checkpoint therefore
needs only the weights, the AdamW moments, the step and the loss history.

Under `torchrun` (gloo on CPU) every rank draws the same global batch and takes its own slice; each
micro-batch loss is a sum over target tokens divided by the global batch's token count times the
world size, so DDP's gradient averaging yields exactly the token-mean gradient of one process.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP
from tqdm import tqdm

from common.console import bar_interval
from common.errors import InvalidInput
from common.jsonlog import JsonlLog
from trainer.lm.checkpoint import load_train_state, save_checkpoint
from trainer.lm.data import LmDataset
from trainer.lm.flops import measure_matmul_peak, mfu
from trainer.lm.model import Transformer
from trainer.lm.schedule import lr_at
from trainer.lm.tokenizer import Tokenizer

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainConfig:
    steps: int = 600  # optimizer steps
    batch_size: int = 16  # sequences per optimizer step, over all ranks and micro-batches
    grad_accum: int = 1  # micro-batches per step on each rank
    lr: float = 3e-3
    min_lr: float = 3e-4
    warmup: int = 30
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.95
    grad_clip: float = 1.0
    context_mix: float = 1.0  # share of rows that get their context prefix (retrieval datasets)
    context_loss: bool = False  # also score the neighbour tokens of rows trained with context (LmDataset.batch)
    eval_every: int = 100
    eval_rows: int = 256
    ckpt_every: int = 100
    seed: int = 1337
    bf16: bool = False
    progress: bool = True

    def validate(self) -> "TrainConfig":
        if self.steps < 1 or self.batch_size < 1 or self.grad_accum < 1:
            raise InvalidInput("steps, batch_size and grad_accum must be >= 1")
        if not 0.0 <= self.context_mix <= 1.0:
            raise InvalidInput(f"context_mix must be in [0, 1], got {self.context_mix}")
        return self


def rank_world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def step_batch(n_rows: int, batch_size: int, step: int, seed: int, context_mix: float) -> tuple[np.ndarray, np.ndarray]:
    """Row indices and context flags of optimizer step `step` (identical on every rank and run)."""
    rng = np.random.default_rng([seed, step])
    idx = rng.choice(n_rows, size=batch_size, replace=n_rows < batch_size)
    ctx = rng.random(batch_size) < context_mix
    return idx, ctx


def micro_batches(idx: np.ndarray, ctx: np.ndarray, lens: np.ndarray, k: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """A rank's rows of one step as `k` micro-batches of similar length. Each micro-batch is padded to its
    longest row, so grouping by length saves the padding of mixed-length rows (QA rows run from 40 to
    400 tokens); the step's gradient is the same sum over its target tokens however the rows are split.
    `lens` is LmDataset.lens: (N, 2) target and prefix lengths; the prefix counts where `ctx` is set."""
    length = lens[idx, 0] + np.where(ctx, lens[idx, 1], 0)
    order = np.argsort(length, kind="stable")
    return [(idx[part], ctx[part]) for part in np.array_split(order, k)]


@torch.no_grad()
def heldout_loss(
    model: torch.nn.Module, ds: LmDataset, with_context: bool, rows: int | None = None, batch_size: int = 16,
    bf16: bool = False,
) -> dict[str, float]:
    """Mean target-token cross-entropy and perplexity over the first `rows` held-out rows (all ranks)."""
    rank, world = rank_world()
    n = len(ds) if rows is None else min(rows, len(ds))
    was_training = model.training
    model.eval()
    total, count = torch.zeros((), dtype=torch.float64), torch.zeros((), dtype=torch.float64)
    mine = list(range(rank, n, world))
    for s in range(0, len(mine), batch_size):
        x, y, mask = ds.batch(mine[s : s + batch_size], with_context)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            _, loss = model(x, y, mask)
        k = float((mask & (y >= 0)).sum())
        total += float(loss) * k
        count += k
    if world > 1:
        both = torch.stack([total, count])
        dist.all_reduce(both)
        total, count = both[0], both[1]
    model.train(was_training)
    mean = float(total / count.clamp_min(1))
    return {"loss": mean, "ppl": math.exp(min(mean, 50.0)), "tokens": int(count)}


def train(
    model: Transformer,
    tokenizer: Tokenizer,
    train_ds: LmDataset,
    heldout_ds: LmDataset | None,
    cfg: TrainConfig,
    run_dir: Path,
    *,
    resume: bool = False,
    meta: dict[str, Any] | None = None,
    stop_after: int | None = None,
) -> dict[str, Any]:
    """Train in place; writes run_dir/{checkpoint/, train.jsonl, loss.png}. Returns the run summary.

    `stop_after` ends this invocation after that many optimizer steps (a time-boxed session; the
    schedule still spans `cfg.steps`, and `resume=True` continues from the last checkpoint).
    """
    cfg.validate()
    rank, world = rank_world()
    run_dir = Path(run_dir)
    ckpt_dir = run_dir / "checkpoint"
    with_ctx = train_ds.has_context
    torch.manual_seed(cfg.seed)
    opt = _optimizer(model, cfg)
    start, history = 0, {"train": [], "heldout": []}
    if resume and (ckpt_dir / "manifest.json").exists():
        state = load_train_state(ckpt_dir)
        if state is not None:
            model.load_state_dict(torch.load(ckpt_dir / "model.pt", map_location="cpu", weights_only=True))
            opt.load_state_dict(state["optimizer"])
            start, history = state["step"], state["history"]
            log.info("resuming from step %d", start)
    net: torch.nn.Module = DDP(model) if world > 1 else model
    training_meta = {**(meta or {}), "config": asdict(cfg), "world_size": world}
    jlog = JsonlLog(run_dir / "train.jsonl") if rank == 0 else None
    per_rank = cfg.batch_size // world
    if per_rank * world != cfg.batch_size or per_rank < cfg.grad_accum:
        raise InvalidInput(f"batch_size {cfg.batch_size} must split over {world} ranks x {cfg.grad_accum} micro-batches")
    bar = tqdm(total=cfg.steps, initial=start, disable=not (cfg.progress and rank == 0), desc="train lm", unit="step",
               mininterval=bar_interval())
    tokens_seen, scored_seen, t_train = 0, 0.0, 0.0
    model.train()
    end = cfg.steps if stop_after is None else min(cfg.steps, stop_after)
    for step in range(start, end):
        t0 = time.perf_counter()
        lr = lr_at(step, lr=cfg.lr, min_lr=cfg.min_lr, warmup=cfg.warmup, total=cfg.steps)
        for g in opt.param_groups:
            g["lr"] = lr
        idx, ctx = step_batch(len(train_ds), cfg.batch_size, step, cfg.seed, cfg.context_mix if with_ctx else 0.0)
        global_tokens = train_ds.loss_tokens(idx, ctx, cfg.context_loss)
        my_idx, my_ctx = idx[rank::world], ctx[rank::world]
        step_loss = torch.zeros((), dtype=torch.float64)
        for m, (rows, row_ctx) in enumerate(micro_batches(my_idx, my_ctx, train_ds.lens, cfg.grad_accum)):
            x, y, mask = train_ds.batch(rows.tolist(), row_ctx.tolist(), cfg.context_loss)
            n_tok = float((mask & (y >= 0)).sum())
            sync = m == cfg.grad_accum - 1
            with _no_sync(net, sync), torch.autocast("cpu", dtype=torch.bfloat16, enabled=cfg.bf16):
                _, loss = net(x, y, mask)
                scaled = loss * (n_tok * world / global_tokens)
            scaled.backward()
            step_loss += float(loss.detach()) * n_tok / global_tokens
            tokens_seen += x.numel()
            scored_seen += n_tok
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        opt.zero_grad(set_to_none=True)
        if world > 1:
            dist.all_reduce(step_loss)
        t_train += time.perf_counter() - t0
        history["train"].append([step + 1, float(step_loss)])
        if jlog:
            jlog.write("step", step=step + 1, loss=float(step_loss), lr=lr, grad_norm=float(grad_norm))
        bar.set_postfix(loss=f"{float(step_loss):.3f}", lr=f"{lr:.2e}")
        bar.update(1)
        done = step + 1
        if heldout_ds is not None and (done % cfg.eval_every == 0 or done == cfg.steps):
            ev = heldout_loss(model, heldout_ds, with_ctx, cfg.eval_rows, bf16=cfg.bf16)
            history["heldout"].append([done, ev["loss"]])
            if jlog:
                jlog.write("heldout", step=done, **ev)
        if done % cfg.ckpt_every == 0 or done == cfg.steps:
            if rank == 0:
                _plot(history, run_dir / "loss.png")
                save_checkpoint(
                    ckpt_dir, model, tokenizer, training=training_meta, step=done,
                    train_state={"optimizer": opt.state_dict(), "step": done, "history": history},
                )
            if world > 1:
                dist.barrier()
    bar.close()
    summary = _summary(model, cfg, history, tokens_seen, scored_seen, t_train, world, steps_run=max(0, end - start))
    if start:
        summary["resumed_from_step"] = start  # the speed figures cover only the steps run since
    if jlog:
        jlog.write("summary", **summary)
        jlog.close()
    return summary


def _optimizer(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.AdamW:
    """AdamW with weight decay on matrices only (norm gains are left alone)."""
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), eps=1e-8)


class _no_sync:
    """DDP's no_sync() on accumulation micro-batches, a no-op otherwise."""

    def __init__(self, net: torch.nn.Module, sync: bool) -> None:
        self.ctx = net.no_sync() if (isinstance(net, DDP) and not sync) else None

    def __enter__(self) -> None:
        if self.ctx is not None:
            self.ctx.__enter__()

    def __exit__(self, *exc: object) -> None:
        if self.ctx is not None:
            self.ctx.__exit__(*exc)


def _summary(
    model: Transformer, cfg: TrainConfig, history: dict[str, list], tokens: int, scored: float, seconds: float,
    world: int, steps_run: int,
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "steps": cfg.steps,
        "final_train_loss": history["train"][-1][1] if history["train"] else None,
        "heldout_loss": history["heldout"][-1][1] if history["heldout"] else None,
        "n_params": model.num_params(),
    }
    if out["heldout_loss"] is not None:
        out["heldout_ppl"] = math.exp(min(out["heldout_loss"], 50.0))
    if seconds > 0 and tokens > 0:
        tps = tokens * world / seconds
        avg_len = tokens / max(1, steps_run * cfg.batch_size / world)
        peak = measure_matmul_peak(seconds=1.0) * world  # each rank measured on its own threads
        head_share = min(1.0, scored / tokens)  # positions that reach the output head (this rank's rows)
        out.update(
            tokens_per_s=round(tps, 1),
            avg_row_tokens=round(avg_len, 1),
            scored_share=round(head_share, 4),
            train_seconds=round(seconds, 2),
            matmul_peak_gflops=round(peak / 1e9, 1),
            mfu=round(mfu(tps, model.flops_per_token(int(avg_len), head_share), peak), 4),
        )
    return out


def _plot(history: dict[str, list], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    if history["train"]:
        s, v = zip(*history["train"])
        ax.plot(s, v, lw=0.8, label="train")
    if history["heldout"]:
        s, v = zip(*history["heldout"])
        ax.plot(s, v, "o-", label="held-out")
    ax.set_xlabel("step")
    ax.set_ylabel("loss (nats/token)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
