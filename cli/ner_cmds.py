"""`ragkiln ner train`, `ragkiln ner eval`, `ragkiln entities`: thin adapters over ner/."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from common.settings import load_settings
from cli.app import app, overrides_of
from cli.output import emit, handle_errors

ner_app = typer.Typer(help="Named-entity recognition: train and evaluate spaCy NER models.", no_args_is_help=True)
app.add_typer(ner_app, name="ner")


def _split_labels(labels: list[str] | None) -> tuple[str, ...]:
    return tuple(lab.strip() for raw in labels or () for lab in raw.split(",") if lab.strip())


@ner_app.command("train")
@handle_errors
def train(
    train_file: Path = typer.Option(..., "--train", help="Training data: CoNLL (IOB1/IOB2) or JSONL."),
    dev_file: Path = typer.Option(None, "--dev", help="Dev data scored after every epoch (best epoch kept); "
                                  "default: --dev-fraction of --train held out by blocks of sentences."),
    out: Path = typer.Option(..., "--out", help="Output spaCy model directory (usable as ner.model)."),
    labels: list[str] = typer.Option(None, "--labels", help="Only these labels (comma-separated or repeated)."),
    base: str = typer.Option(None, "--base", help="Start from this pipeline's NER weights ('auto', a package or "
                             "dir; 'none': from scratch). Default: auto, unless --preset/--static-vectors is given."),
    preset: str = typer.Option(None, "--preset", help="From-scratch tok2vec: efficiency, chars or wide."),
    static_vectors: bool = typer.Option(False, "--static-vectors/--no-static-vectors",
                                        help="Feed PPMI-SVD word vectors built from --train to the tok2vec."),
    dev_fraction: float = typer.Option(0.1, "--dev-fraction", help="Share of --train held out when no --dev."),
    max_epochs: int = typer.Option(30, "--max-epochs", min=1),
    patience: int = typer.Option(5, "--patience", min=1, help="Epochs without dev improvement before stopping."),
    max_minutes: float = typer.Option(40.0, "--max-minutes", help="Wall-clock budget; the best epoch so far is kept."),
    dropout: float = typer.Option(0.1, "--dropout"),
    learn_rate: float = typer.Option(0.001, "--learn-rate"),
    seed: int = typer.Option(0, "--seed"),
    misaligned: str = typer.Option("error", "--misaligned", help="Spans off token boundaries: error, expand or skip."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Train a NER model; shows per-epoch dev precision/recall/F1 and writes a spaCy model directory."""
    from ner.readers import check_policy
    from ner.train import TrainOptions, choose_start, train_ner

    base, preset = choose_start(base, preset, static_vectors)
    opts = TrainOptions(
        preset=preset,  # type: ignore[arg-type]
        base=base, labels=_split_labels(labels), max_epochs=max_epochs, patience=patience,
        max_minutes=max_minutes, dropout=dropout, learn_rate=learn_rate, seed=seed,
        misaligned=check_policy(misaligned), static_vectors=static_vectors, dev_fraction=dev_fraction,
    )

    def show(row: dict[str, Any]) -> None:
        if not as_json:
            typer.echo(
                f"epoch {row['epoch']:>3}  loss {row['loss']:>10.1f}  dev P {row['dev_precision']:.4f}  "
                f"R {row['dev_recall']:.4f}  F1 {row['dev_f1']:.4f}  ({row['elapsed_seconds']:.0f}s)",
                err=True,
            )

    result = train_ner(train_file, dev_file, out, opts, on_epoch=show, progress=not as_json)
    emit(result.to_dict(), as_json, _render_train)


def _render_train(r: dict[str, Any]) -> str:
    b = r["best_dev"]
    lines = [
        f"model: {r['out']}  (labels: {', '.join(r['labels'])})",
        f"best epoch {r['best_epoch']}: dev P {b['dev_precision']:.4f} R {b['dev_recall']:.4f} F1 {b['dev_f1']:.4f}",
        f"trained in {r['seconds']:.0f}s",
    ]
    for split, a in r["alignment"].items():
        if a["misaligned"]:
            lines.append(f"{split}: {a['misaligned']} of {a['total_spans']} spans misaligned ({a['policy']}); "
                         f"e.g. {a['examples'][0]}")
    if r["dropped_labels"]:
        lines.append(f"left out (label not in --labels): {r['dropped_labels']}")
    return "\n".join(lines)


@ner_app.command("eval")
@handle_errors
def evaluate(
    ctx: typer.Context,
    data: Path = typer.Option(..., "--data", help="Annotated data: CoNLL or JSONL."),
    model: str = typer.Option(None, "--model", help="Model (default: ner.model setting)."),
    label_map: Path = typer.Option(None, "--label-map", help="JSON {model_label: data_label|null}; default "
                                   "OntoNotes->CoNLL when the model speaks OntoNotes."),
    patterns: Path = typer.Option(None, "--patterns", help="Gazetteer patterns JSONL to add before ner."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Entity-level exact-match precision, recall and F1 (as conlleval), overall and per label."""
    from ner.evaluate import evaluate_file, format_scores

    settings = load_settings(overrides_of(ctx, ner={"model": model}))
    result = evaluate_file(data, settings.ner.model, label_map, patterns)
    emit(result, as_json, format_scores)


@app.command("entities")
@handle_errors
def entities(
    ctx: typer.Context,
    label: str = typer.Option(None, "--label", help="Only this label."),
    top: int = typer.Option(50, "--top", min=1, help="How many (most frequent first)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """The corpus's entities with the number of mentions, most frequent first."""
    from ner.filters import corpus_entities

    settings = load_settings(overrides_of(ctx))
    emit(corpus_entities(settings, label=label, top=top), as_json, _render_entities)


def _render_entities(r: dict[str, Any]) -> str:
    rows = r["entities"]
    if not rows:
        return "no entities" + (f" with label {r['label']}" if r["label"] else "")
    width = max(len(e["value"]) for e in rows)
    return "\n".join(f"{e['count']:>7}  {e['label']:<12} {e['value']:<{width}}" for e in rows)
