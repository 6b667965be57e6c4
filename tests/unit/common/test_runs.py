"""A run directory is continued only under the token it was prepared under (common.runs)."""

from __future__ import annotations

import json
from pathlib import Path

from common.runs import RUN_FILE, prepared_under, stamp_run


def test_only_the_stamped_token_continues_a_run(tmp_path: Path) -> None:
    assert not prepared_under(tmp_path, "a")  # nothing prepared
    (tmp_path / RUN_FILE).write_text(json.dumps({"out": "model"}))
    assert not prepared_under(tmp_path, "a")  # prepared, but by no build (the CLI)
    stamp_run(tmp_path, "a")
    assert prepared_under(tmp_path, "a") and not prepared_under(tmp_path, "b")
    assert json.loads((tmp_path / RUN_FILE).read_text())["out"] == "model"  # the spec is kept


def test_a_torn_run_file_is_not_continued(tmp_path: Path) -> None:
    (tmp_path / RUN_FILE).write_text('{"token": "a", "out"')
    assert not prepared_under(tmp_path, "a")
