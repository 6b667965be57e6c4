import json

import pytest

from common.artifacts import atomic_artifact_dir, make_manifest, manifest_if_any, read_manifest, verify_files
from common.errors import ArtifactCorrupt, InvalidInput, ManifestMismatch
from common.settings import load_settings


def test_overrides_win_and_none_is_ignored(monkeypatch):
    monkeypatch.setenv("RAGKILN_INDEXER__RRF_K", "10")
    s = load_settings({"indexer": {"chunk_tokens": 128, "rrf_k": None}})
    assert s.indexer.chunk_tokens == 128 and s.indexer.rrf_k == 10


def test_invalid_settings_are_domain_errors():
    with pytest.raises(InvalidInput, match="chunk_tokens"):
        load_settings({"indexer": {"chunk_tokens": 1}})
    with pytest.raises(InvalidInput):
        load_settings({"indexer": {"no_such_key": 1}})


def test_atomic_dir_and_manifest(tmp_path):
    final = tmp_path / "art"
    with atomic_artifact_dir(final, make_manifest("thing", 1, answer=42)) as d:
        (d / "data.bin").write_bytes(b"abc")
    m = read_manifest(final, "thing", 1)
    assert m["answer"] == 42 and "data.bin" in m["files"]
    verify_files(final, m)
    (final / "data.bin").write_bytes(b"tampered")
    with pytest.raises(ArtifactCorrupt):
        verify_files(final, m)
    with pytest.raises(ManifestMismatch):
        read_manifest(final, "other")


def test_manifest_if_any_is_none_without_a_readable_manifest(tmp_path):
    final = tmp_path / "art"
    with atomic_artifact_dir(final, make_manifest("thing", 1, answer=42)) as d:
        (d / "data.bin").write_bytes(b"abc")
    assert manifest_if_any(final)["answer"] == 42
    (tmp_path / "user-model").mkdir()
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "manifest.json").write_text("{not json")
    for d in (None, "", tmp_path / "missing", tmp_path / "user-model", tmp_path / "broken"):
        assert manifest_if_any(d) is None


def test_failed_write_leaves_previous(tmp_path):
    final = tmp_path / "art"
    with atomic_artifact_dir(final, make_manifest("thing", 1, v=1)) as d:
        (d / "x").write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_artifact_dir(final, make_manifest("thing", 1, v=2)) as d:
            (d / "x").write_text("new")
            raise RuntimeError("crash")
    assert (final / "x").read_text() == "old"
    assert json.loads((final / "manifest.json").read_text())["v"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["art"]
