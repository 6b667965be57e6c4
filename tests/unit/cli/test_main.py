"""The `ragkiln` entry point: usage errors are one line and exit code 2, like the commands' own errors."""

from __future__ import annotations

import pytest

from cli.main import main


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as e:
        main(argv)
    out = capsys.readouterr()
    return int(e.value.code or 0), out.out, out.err


@pytest.mark.parametrize("argv, says", [
    (["search", "x", "--k", "0"], "ragkiln: error: Invalid value for '--k' / '-k': Input should be greater than or "
                                  "equal to 1 (ragkiln search --help)"),
    (["search"], "ragkiln: error: Missing argument 'query'. (ragkiln search --help)"),
    (["serch", "x"], "ragkiln: error: No such command 'serch'."),
    (["--bogus"], "ragkiln: error: No such option: --bogus (ragkiln --help)"),
])
def test_a_usage_error_is_one_line_and_exit_2(argv, says, tmp_path, capsys):
    code, out, err = run(["--workspace", str(tmp_path), *argv], capsys)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith(says)


def test_domain_errors_and_success_keep_their_exit_codes(tmp_path, capsys):
    code, _, err = run(["--workspace", str(tmp_path), "ingest", str(tmp_path / "nowhere")], capsys)
    assert code == 3 and err.startswith("ragkiln: error: path ") and err.count("\n") == 1
    code, out, _ = run(["--workspace", str(tmp_path), "config", "--changed", "--json"], capsys)
    assert code == 0 and out.startswith("{")
