"""Entry point of the `ragkiln` command: the app of `cli.app` with every command module registered.

Nothing in the project imports this module (only pyproject's script entry, `__main__` and tests); the
command modules import `cli.app`, so registering them here closes no cycle. The order is the order of
`ragkiln --help`.
"""

from __future__ import annotations

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

__all__ = ["app"]
