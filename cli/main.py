"""Entry point of the `ragkiln` command: the app of `cli.app` with every command module registered.

Nothing in the project imports this module (only pyproject's script entry, `__main__` and tests); the
command modules import `cli.app`, so registering them here closes no cycle. The order is the order of
`ragkiln --help`.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

import typer
from typer._click.exceptions import NoArgsIsHelpError, UsageError  # Typer 0.29 vendors its click

from cli import index_cmds  # noqa: F401  (ingest, reindex, search, eval retrieval)
from cli import ner_cmds  # noqa: F401
from cli import quantize_cmds  # noqa: F401
from cli import lm_cmds  # noqa: F401
from cli import serve_cmds  # noqa: F401
from cli import embedder_cmds  # noqa: F401
from cli import build_cmds  # noqa: F401
from cli import config_cmds  # noqa: F401
from cli import models_cmds  # noqa: F401  (models add, list, remove)
from cli.app import app
from cli.output import print_error

__all__ = ["app", "main"]


def main(argv: Sequence[str] | None = None) -> None:
    """The `ragkiln` command. A usage error (an unknown option, a value out of its bounds, a missing
    argument) is one line on stderr and exit code 2, like the commands' own errors, instead of Typer's
    boxed usage text; `ragkiln` alone still prints its help."""
    try:
        rv = app(args=list(argv) if argv is not None else None, prog_name="ragkiln", standalone_mode=False)
    except NoArgsIsHelpError as e:
        e.show()
        sys.exit(e.exit_code)
    except UsageError as e:
        print_error(f"{' '.join(e.format_message().split())} (ragkiln {_command(e)}--help)")
        sys.exit(e.exit_code)
    except typer.Abort:
        print("ragkiln: interrupted", file=sys.stderr)
        sys.exit(130)
    sys.exit(rv if isinstance(rv, int) else 0)


def _command(e: UsageError) -> str:
    """The failing command's path after `ragkiln`, e.g. "search ", for the help hint."""
    if e.ctx is None or e.ctx.parent is None:
        return ""
    return e.ctx.command_path.partition(" ")[2] + " "
