"""Bars redraw on a terminal, and write a line at most every 30 s into a file or pipe."""

from __future__ import annotations

import io

from common.console import FILE_INTERVAL_S, bar_interval, is_terminal


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_terminal_gets_live_bars_and_a_file_a_line_every_thirty_seconds(tmp_path) -> None:
    assert is_terminal(Tty()) and bar_interval(Tty()) < 1
    with open(tmp_path / "build.log", "w") as f:
        assert not is_terminal(f) and bar_interval(f) == FILE_INTERVAL_S
    assert not is_terminal(object()) and bar_interval(io.StringIO()) == FILE_INTERVAL_S  # no isatty: not a terminal
