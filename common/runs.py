"""Who prepared a training run directory: a token (the build's stage inputs hash) stamped into its
`run.json`, so a build re-run under the same inputs continues the run instead of preparing it again,
and a run prepared for anything else is never continued by mistake."""

from __future__ import annotations

import json
from pathlib import Path

from common.artifacts import atomic_write_text

RUN_FILE = "run.json"


def stamp_run(run_dir: Path, token: str) -> None:
    path = Path(run_dir) / RUN_FILE
    spec = json.loads(path.read_text(encoding="utf-8"))
    atomic_write_text(path, json.dumps({**spec, "token": token}, indent=2, default=str))


def prepared_under(run_dir: Path, token: str) -> bool:
    """The run's preparation finished (run.json is written last) under `token`."""
    try:
        return json.loads((Path(run_dir) / RUN_FILE).read_text(encoding="utf-8")).get("token") == token
    except (OSError, ValueError):
        return False
