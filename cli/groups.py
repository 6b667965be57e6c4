"""Command groups shared by several stages: `ragkiln train ...` and `ragkiln eval ...`.

Stage modules add their subcommands here (`train lm`, `train embedder`, `eval lm`, `eval retrieval`).
"""

from __future__ import annotations

import typer

from cli.app import app

train_app = typer.Typer(help="Train models: the LM, the embedder.", no_args_is_help=True)
eval_app = typer.Typer(help="Evaluate models: LM perplexity, retrieval quality.", no_args_is_help=True)
app.add_typer(train_app, name="train")
app.add_typer(eval_app, name="eval")
