"""The `ragkiln` Typer app and its global options (`--workspace`, `--log-level`).

Command modules (`*_cmds.py`) add their commands to `app`; `cli.main` imports them all and is the entry
point. This module imports none of them, so the command modules depend on it and never on each other's
registration order (no import cycle through the entry point).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import typer

from common.jsonlog import setup_logging

app = typer.Typer(
    name="ragkiln",
    help="Turn a folder of documents into a served, domain-tuned search and QA API on CPUs.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


@app.callback()
def main(
    ctx: typer.Context,
    workspace: Path = typer.Option(
        None, "--workspace", "-w", help="Workspace folder (default ./ragkiln-data or RAGKILN_HOME)."
    ),
    log_level: str = typer.Option(None, "--log-level", help="DEBUG, INFO, WARNING or ERROR."),
) -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    overrides: dict[str, Any] = {"home": workspace, "log_level": log_level}
    ctx.obj = overrides
    setup_logging(log_level or os.environ.get("RAGKILN_LOG_LEVEL", "INFO"))


def overrides_of(ctx: typer.Context, **sections: Any) -> dict[str, Any]:
    """Global overrides from the callback merged with a command's own flags (None = not given)."""
    base = dict(ctx.obj or {})
    base.update(sections)
    return base
