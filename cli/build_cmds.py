"""`ragkiln build`: the whole pipeline on a corpus, resumable stage by stage."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from common.settings import load_settings
from cli.app import app, overrides_of
from cli.output import emit, handle_errors


@app.command()
@handle_errors
def build(
    ctx: typer.Context,
    corpus: list[Path] = typer.Argument(..., help="Folders or files of documents."),
    preset: str = typer.Option("demo", "--preset", help="tiny (tests), demo (sample corpus) or standard."),
    eval_beir: Path = typer.Option(None, "--eval-beir", help="BEIR folder scored before and after embedder "
                                   "training: its dev (else train) qrels decide which embedder is served, its test "
                                   "qrels are reported (default: a corpus path that is a BEIR folder)."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """ingest → NER → embedder training → reindex → LM → QA tuning → GGUF → verify → evaluate → report."""
    from pipeline.build import run_build

    settings = load_settings(overrides_of(ctx))

    def progress(stage: str, i: int, n: int) -> None:
        print(f"ragkiln build: [{i + 1}/{n}] {stage}", file=sys.stderr, flush=True)

    result = run_build(settings, corpus, preset=preset, on_stage=progress, eval_beir=eval_beir)
    emit(result, as_json, _render)


def _render(r: dict) -> str:
    lines = []
    for s in r["stages"]:
        if s["skipped"]:
            lines.append(f"{s['stage']:<9} skipped (up to date)")
        else:
            peak = f"  peak {s['peak_rss_mb'] / 1024:.1f} GB" if s.get("peak_rss_mb") is not None else ""
            lines.append(f"{s['stage']:<9} {s['seconds']:.1f}s{peak}")
    lines.append(f"report: {r['report']}")
    return "\n".join(lines)
