"""Which model a training run starts from: the serving one, or the model an adapted one was trained from."""

from __future__ import annotations

import json
from pathlib import Path

from indexer.embedder import model_id
from trainer.embedder.train import is_adapted, training_base


def _model(path: Path, weights: bytes, base: Path | None = None) -> dict:
    path.mkdir(parents=True)
    (path / "model.safetensors").write_bytes(weights)
    if base is not None:  # what finalize_run writes for an adapted model
        (path / "manifest.json").write_text(json.dumps(
            {"kind": "embedder", "name": path.name, "base": {"name": base.name, "id": model_id(base), "path": str(base)}}))
    return {"name": path.name, "id": model_id(path), "path": str(path), "max_seq_length": 128}


def test_an_adapted_model_trains_again_from_its_base_and_a_plain_one_from_itself(tmp_path):
    base = _model(tmp_path / "minilm", b"base weights")
    first = _model(tmp_path / "embedder", b"adapted once", base=tmp_path / "minilm")
    assert training_base(base) == base
    assert training_base(first) == {**base, "name": "minilm"}
    # a chain from before the rule (adapted on top of an adapted model) leads back to the first base
    second = _model(tmp_path / "embedder-b", b"adapted twice", base=tmp_path / "embedder")
    assert training_base(second)["path"] == str(tmp_path / "minilm")
    assert [is_adapted(m["path"]) for m in (base, first, second)] == [False, True, True]


def test_a_base_retrained_or_gone_since_is_not_followed(tmp_path):
    _model(tmp_path / "mine", b"v1")
    adapted = _model(tmp_path / "embedder", b"adapted", base=tmp_path / "mine")
    (tmp_path / "mine" / "model.safetensors").write_bytes(b"v2: retrained into the same directory")
    assert training_base(adapted) == adapted
    (tmp_path / "mine" / "model.safetensors").unlink()
    (tmp_path / "mine").rmdir()
    assert training_base(adapted) == adapted
    (tmp_path / "embedder" / "manifest.json").write_text("{not json")
    assert training_base(adapted) == adapted
    assert not is_adapted(adapted["path"]) and not is_adapted(None)
