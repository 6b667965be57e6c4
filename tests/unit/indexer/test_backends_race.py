"""indexer.backends: export speeds measured after a full warm-up pass, in alternation, best of rounds; which
backends `auto` tries on a CPU."""

from __future__ import annotations

import numpy as np

from indexer import backends


class Clock:
    now = 0.0

    def __call__(self) -> float:
        return self.now


class Compiling:
    """A fake runtime on a fake clock: its first pass over a batch shape takes `first` seconds (it compiles),
    later ones `seconds`."""

    def __init__(self, clock: Clock, seconds: float, first: float) -> None:
        self.clock, self.seconds, self.first, self.calls = clock, seconds, first, 0

    def encode(self, texts, batch_size=64):  # type: ignore[no-untyped-def]
        self.clock.now += self.first if self.calls == 0 else self.seconds
        self.calls += 1
        return np.ones((len(texts), 2), np.float32)


def test_the_first_pass_is_not_timed_and_every_embedder_gets_the_same_rounds(monkeypatch) -> None:
    clock = Clock()
    monkeypatch.setattr(backends.time, "perf_counter", clock)
    slow_start, steady = Compiling(clock, 0.5, first=3.0), Compiling(clock, 1.0, first=1.0)
    (v1, r1), (v2, r2) = backends.race([slow_start, steady], ["a"] * 10, batch_size=4, rounds=2)
    assert slow_start.calls == steady.calls == 3  # one warm-up pass and two timed ones each
    assert v1.shape == v2.shape == (10, 2)
    assert (r1, r2) == (20.0, 10.0)  # steady speeds: the compiling pass is in neither figure


def test_auto_skips_openvino_without_vnni(monkeypatch):
    from indexer import backends

    monkeypatch.setattr(backends, "available", lambda b: True)
    assert backends.auto_backends("avx2") == ["onnx"]  # static int8 measured 0.9-1.2x torch there
    assert backends.auto_backends("avx512_vnni") == ["openvino", "onnx"]
    monkeypatch.setattr(backends, "available", lambda b: b == "openvino")
    assert backends.auto_backends("avx2") == [] and backends.auto_backends("avx512") == ["openvino"]


def test_a_retrained_models_exports_are_removed_and_no_other(tmp_path):
    from common.artifacts import atomic_artifact_dir, make_manifest
    from indexer.exported import FORMAT_VERSION, KIND

    models = tmp_path / "models"
    for model, backend in (("embedder", "onnx"), ("embedder", "openvino"), ("embedder-b", "onnx")):
        manifest = make_manifest(KIND, FORMAT_VERSION, base={"id": f"{model}@1", "path": str(models / model)})
        with atomic_artifact_dir(backends.export_dir(models, f"{model}@1", backend), manifest):
            pass
    (models / "exports" / "notes").mkdir()  # not an export: left alone
    gone = backends.remove_exports_of(models, models / "embedder")
    assert sorted(p.name for p in gone) == ["embedder@1-onnx-int8", "embedder@1-openvino-int8"]
    assert sorted(p.name for p in (models / "exports").iterdir()) == ["embedder-b@1-onnx-int8", "notes"]
    assert backends.remove_exports_of(tmp_path / "empty", models / "embedder") == []
