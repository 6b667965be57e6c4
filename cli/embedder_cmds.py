"""`ragkiln train embedder`: a thin adapter over trainer.embedder.train."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from common.settings import load_settings
from pipeline.decisions import embedder_call
from cli.groups import train_app
from cli.app import overrides_of
from cli.output import emit, handle_errors


@train_app.command("embedder")
@handle_errors
def train_embedder_cmd(
    ctx: typer.Context,
    pairs: Path = typer.Option(None, "--pairs", help="Labelled JSONL {query, positive[, negative]}."),
    beir_train: Path = typer.Option(None, "--beir-train", help="BEIR folder: train on its qrels/train.tsv."),
    epochs: int = typer.Option(None, "--epochs", help="Passes over the training pairs."),
    out: Path = typer.Option(None, "--out", help="Model directory (default WORKSPACE/models/embedder-TIME)."),
    eval_beir: Path = typer.Option(None, "--eval-beir", help="BEIR folder scored before and after: the split a "
                                   "build chooses on (dev, else an untrained train) and test."),
    sources: str = typer.Option(None, "--sources", help="Mined pair sources: title,ict,entity."),
    max_pairs: int = typer.Option(None, "--max-pairs", help="Most training pairs (default: sized by the planner)."),
    budget_minutes: float = typer.Option(None, "--budget-minutes", help="Time budget on 2 cores; the planner sizes "
                                         "pairs and steps to it and to the corpus (default 14)."),
    batch_size: int = typer.Option(None, "--batch-size", help="Pairs per step (in-batch negatives)."),
    lr: float = typer.Option(None, "--lr", help="Peak learning rate."),
    hard_negatives: int = typer.Option(None, "--hard-negatives", help="Hard negatives per pair from the index."),
    nproc: int = typer.Option(None, "--nproc", help="DDP processes (torchrun, gloo)."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run of --out from its last checkpoint."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Fine-tune the workspace's embedder on pairs mined from the corpus (or labelled pairs)."""
    from trainer.embedder.train import train_embedder

    settings = load_settings(overrides_of(ctx, embedder_train={
        "epochs": epochs, "sources": sources, "max_pairs": max_pairs, "batch_size": batch_size, "lr": lr,
        "hard_negatives": hard_negatives, "nproc": nproc, "budget_minutes": budget_minutes}))
    report = train_embedder(settings, out=out, pairs_file=pairs, beir_train=beir_train, eval_beir=eval_beir,
                            resume=resume, progress=not as_json,
                            on_plan=lambda plan: typer.echo(plan.describe(), err=True))
    emit(report, as_json, render_train_report)


def render_train_report(r: dict[str, Any]) -> str:
    m, d, t = r["metrics"], r["data"], r["training"]
    lines = [f"model: {r['out']}",
             f"pairs: {d['train_pairs']} train {d['train_by_source']}, {d['dev_pairs']} dev "
             f"({d['dev_documents']} held-out documents)",
             *([f"planned {r['plan']['steps']} steps, about {r['plan']['estimated_seconds'] / 60:.1f} minutes"]
               if r.get("plan") else []),
             f"trained {t['steps']} steps in {t['train_seconds']:.0f}s on {t['world_size']} process(es)",
             f"dev nDCG@10 {m['dev_before'].get('ndcg@10')} -> {m['dev_after'].get('ndcg@10')}"]
    for mode in ("dense", "hybrid"):
        if "select" in m:  # the split a build chooses on
            sel = m["select"]
            lines.append(f"BEIR {sel['split']} {mode} nDCG@10 {sel['before'][mode]['ndcg@10']} -> "
                         f"{sel['after'][mode]['ndcg@10']}")
        if "beir_after" in m:
            lines.append(f"BEIR test {mode} nDCG@10 {m['beir_before'][mode]['ndcg@10']} -> {m['beir_after'][mode]['ndcg@10']}")
    serve, why = embedder_call(m)  # the call `ragkiln build` makes on the same figures
    if serve:
        lines += [f"ragkiln build would serve it: {why}", f"next: ragkiln reindex --embedder {r['out']}"]
    else:
        lines += [f"ragkiln build would keep the base: {why}",
                  f"next: keep the current index (ragkiln reindex --embedder {r['out']} switches anyway)"]
    return "\n".join(lines)
