"""`ragkiln config`: the effective settings and where each value came from."""

from __future__ import annotations

import json
from typing import Any

import typer

from common.settings import settings_sources
from cli.app import app, overrides_of
from cli.output import emit, handle_errors


@app.command("config")
@handle_errors
def config(
    ctx: typer.Context,
    changed: bool = typer.Option(False, "--changed", help="Only the fields not at their default."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Print the effective settings, each with its source: flag, environment variable, TOML file or default."""
    rows = [r for r in settings_sources(overrides_of(ctx)) if not changed or r[2] != "default"]
    emit({"settings": [{"key": k, "value": v, "source": s} for k, v, s in rows]}, as_json, _render)


def _render(r: dict[str, Any]) -> str:
    rows = r["settings"]
    if not rows:
        return "every setting is at its default"
    width = max(len(x["key"]) for x in rows)
    return "\n".join(f"{x['key']:<{width}}  {json.dumps(x['value'], default=str):<24} {x['source']}" for x in rows)
