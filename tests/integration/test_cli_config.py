"""`ragkiln config`, strict environment, refusing to serve a public address without keys, and the
exit code of an ingest in which every input was refused."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from cli.main import app


def run(args: list[str], env: dict[str, str] | None = None):
    return CliRunner().invoke(app, args, env={"HF_HUB_OFFLINE": "1", **(env or {})})


def test_config_prints_each_value_with_its_source(tmp_path):
    r = run(["--workspace", str(tmp_path), "config", "--changed", "--json"], {"RAGKILN_LM__STEPS": "7"})
    assert r.exit_code == 0, r.output
    rows = {x["key"]: x for x in json.loads(r.stdout)["settings"]}
    assert rows["home"]["source"] == "flag"
    assert rows["lm.steps"] == {"key": "lm.steps", "value": 7, "source": "env RAGKILN_LM__STEPS"}
    assert "indexer.chunk_tokens" not in rows  # --changed hides defaults


def test_an_unknown_variable_is_one_line_and_exit_2(tmp_path):
    r = run(["--workspace", str(tmp_path), "config"], {"RAGKILN_API_KEYS": "k:admin"})
    assert r.exit_code == 2
    assert "did you mean RAGKILN_SERVER__API_KEYS?" in r.output


def test_serve_refuses_a_public_address_without_keys(tmp_path):
    r = run(["--workspace", str(tmp_path), "serve", "--host", "0.0.0.0"], {"RAGKILN_SERVER__API_KEYS": ""})
    assert r.exit_code == 2
    assert "--insecure" in r.output


def test_an_ingest_of_only_bad_files_stores_nothing_and_exits_11(tmp_path):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "a.exe").write_bytes(b"MZ\x00")
    (bad / "b.pdf").write_bytes(b"\x00\x01 not a pdf")
    r = run(["--workspace", str(tmp_path / "ws"), "ingest", str(bad), "--no-ner"])
    assert r.exit_code == 11, r.output
    assert "nothing ingested: all 2 input(s) were skipped" in r.output
    assert "a.exe: unsupported file type .exe" in r.output
