"""CLI rendering and the one error table of the CLI front end.

`--json` prints exactly one JSON object on stdout; everything else (logs, progress) goes to stderr.
Domain errors become one line on stderr and an exit code chosen by error class.
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import typer

from common import errors

EXIT_CODES: dict[type[errors.RagkilnError], int] = {
    errors.InvalidInput: 2,
    errors.NotFound: 3,
    errors.ManifestMismatch: 4,
    errors.ArtifactCorrupt: 5,
    errors.ModelUnavailable: 6,
    errors.ContextOverflow: 7,
    errors.Busy: 8,
    errors.Conflict: 9,
    errors.Unauthorized: 10,
    errors.Forbidden: 10,
    errors.NothingIngested: 11,
    errors.ProcessDied: 12,
}


def exit_code_for(exc: errors.RagkilnError) -> int:
    for cls in type(exc).__mro__:
        if cls in EXIT_CODES:
            return EXIT_CODES[cls]
    return 1


F = TypeVar("F", bound=Callable[..., Any])


def print_error(message: str) -> None:
    """The CLI's one error line on stderr."""
    print(f"ragkiln: error: {message}", file=sys.stderr)


def handle_errors(fn: F) -> F:
    """Turn domain errors raised by a command into `ragkiln: error: ...` and an exit code."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except errors.RagkilnError as e:
            msg = str(e).splitlines()[0] if str(e) else type(e).__name__
            print_error(msg)
            raise typer.Exit(exit_code_for(e)) from None
        except KeyboardInterrupt:
            print("ragkiln: interrupted", file=sys.stderr)
            raise typer.Exit(130) from None

    return wrapper  # type: ignore[return-value]


def emit(result: dict[str, Any], as_json: bool, human: Callable[[dict[str, Any]], str] | None = None) -> None:
    """Print a command's result: one JSON object, or a human rendering."""
    if as_json:
        sys.stdout.write(json.dumps(result, ensure_ascii=False, default=str) + "\n")
    else:
        text = human(result) if human else json.dumps(result, indent=2, ensure_ascii=False, default=str)
        sys.stdout.write(text.rstrip("\n") + "\n")
    sys.stdout.flush()
