"""Configuration that cannot fail open: unknown RAGKILN_* variables are errors naming the real one,
and every effective value can say where it came from."""

from __future__ import annotations

import logging

import pytest

from common.errors import InvalidInput
from common.jsonlog import _DependencyFilter
from common.settings import check_environment, env_names, load_settings, nearest_env_name, settings_sources


def test_a_section_less_name_points_at_the_real_variable():
    with pytest.raises(InvalidInput, match="RAGKILN_API_KEYS; did you mean RAGKILN_SERVER__API_KEYS"):
        check_environment({"RAGKILN_API_KEYS": "k:admin"})
    assert nearest_env_name("RAGKILN_INDEXR__CHUNK_TOKENS") == "RAGKILN_INDEXER__CHUNK_TOKENS"
    assert nearest_env_name("RAGKILN_SERVER__API_KEY") == "RAGKILN_SERVER__API_KEYS"


def test_known_variables_and_other_programs_variables_pass():
    check_environment({"RAGKILN_HOME": "/x", "RAGKILN_CONFIG": "a.toml", "RAGKILN_LM__STEPS": "3",
                       "ragkiln_server__port": "9000", "RAGKILN_INDEXER": "{}", "HOME": "/root", "PATH": "/bin"})
    assert env_names()["RAGKILN_SERVER__API_KEYS"] == "server.api_keys"


def test_load_settings_refuses_an_unknown_variable(monkeypatch):
    monkeypatch.setenv("RAGKILN_TYPO", "1")
    with pytest.raises(InvalidInput, match="RAGKILN_TYPO"):
        load_settings()


def test_sources_name_flag_env_file_and_default(monkeypatch, tmp_path):
    toml = tmp_path / "kiln.toml"
    toml.write_text('home = "/srv/k"\n[indexer]\nchunk_tokens = 128\n')
    env = {"RAGKILN_CONFIG": str(toml), "RAGKILN_LM__STEPS": "5"}
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    rows = {k: (v, s) for k, v, s in settings_sources({"server": {"port": 9000, "host": None}})}
    assert rows["home"] == ("/srv/k", str(toml))
    assert rows["indexer.chunk_tokens"] == (128, str(toml))
    assert rows["lm.steps"] == (5, "env RAGKILN_LM__STEPS")
    assert rows["server.port"] == (9000, "flag")
    assert rows["server.host"] == ("127.0.0.1", "default")


def test_the_default_embed_backend_is_auto_and_the_test_run_pins_torch(monkeypatch):
    assert load_settings().indexer.embed_backend == "torch"  # conftest: tests not about backends embed with torch
    monkeypatch.delenv("RAGKILN_INDEXER__EMBED_BACKEND")
    assert load_settings().indexer.embed_backend == "auto"


def _record(name: str, level: int) -> logging.LogRecord:
    return logging.LogRecord(name, level, __file__, 1, "m", None, None)


def test_dependencies_speak_at_warning_ours_at_the_chosen_level():
    info = _DependencyFilter(logging.INFO)
    assert info.filter(_record("indexer.service", logging.INFO))
    assert not info.filter(_record("sentence_transformers.trainer", logging.INFO))
    assert not info.filter(_record("urllib3", logging.DEBUG))
    assert info.filter(_record("py.warnings", logging.WARNING))
    debug = _DependencyFilter(logging.DEBUG)
    assert debug.filter(_record("urllib3", logging.DEBUG))
    assert not _DependencyFilter(logging.ERROR).filter(_record("indexer.service", logging.WARNING))
