"""`ragkiln models add | list | remove`: the chat models served beside the workspace's own (thin: quantize.registry)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from common.settings import load_settings
from quantize import registry
from cli.app import app, overrides_of
from cli.output import emit, handle_errors

models_app = typer.Typer(help="Generators served by `ragkiln serve`: the workspace's own LM and chat models in GGUF "
                              "you register (Llama 3.x, Qwen2.5, Phi, Mistral, Gemma, ...).", no_args_is_help=True)
app.add_typer(models_app, name="models")


@models_app.command("add")
@handle_errors
def add(
    ctx: typer.Context,
    path: Path = typer.Argument(..., help="A llama.cpp GGUF file (with its chat template in the metadata)."),
    name: str = typer.Option(None, "--name", help="The name requests pick it by (default: the file's stem)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Register a GGUF chat model: requests choose it by the OpenAI `model` field or /v1/answer's `model`."""
    entry = registry.add_model(load_settings(overrides_of(ctx)), path, name)
    emit(entry.to_dict(), as_json, lambda r: f"added {r['name']} ({_facts(r['info'] | {'kind': r['kind']})}); "
                                             "restart `ragkiln serve` to serve it")


@models_app.command("list")
@handle_errors
def list_(ctx: typer.Context, as_json: bool = typer.Option(False, "--json", help="Print one JSON object.")) -> None:
    """The generators this workspace serves, the default first."""
    emit({"models": registry.describe_models(load_settings(overrides_of(ctx)))}, as_json, _render)


@models_app.command("remove")
@handle_errors
def remove(ctx: typer.Context, name: str = typer.Argument(..., help="A registered model's name."),
           as_json: bool = typer.Option(False, "--json", help="Print one JSON object.")) -> None:
    """Forget a registered model (its file is left where it is)."""
    emit(registry.remove_model(load_settings(overrides_of(ctx)), name), as_json, lambda r: f"removed {r['name']}")


def _facts(r: dict[str, Any]) -> str:
    ctx = f"context {r['context_length']:,}" if r.get("context_length") else "context unknown"
    template = "chat template" if r.get("chat_template") else "NO chat template"
    return f"{r['kind']}, {r['architecture']}, {ctx}, {template}, {r['size_bytes'] / 1e6:,.1f} MB"


def _render(r: dict[str, Any]) -> str:
    rows = r["models"]
    if not rows:
        return "no generator: run `ragkiln build` (or `ragkiln quantize`), or `ragkiln models add PATH`"
    lines = []
    for i, m in enumerate(rows):
        facts = _facts(m) if m.get("problem") is None else f"PROBLEM: {m['problem']}"
        lines.append(f"{m['name']}{' (default)' if i == 0 else ''}  [{m['source']}]  {facts}\n    {m['path']}")
    return "\n".join(lines)
