"""Int8 embed backends on the real MiniLM: export, parity, the index manifest, queries on the same backend, the
vector cache per backend, and `auto` falling back to torch when the parity check fails."""

from __future__ import annotations

import json
import logging
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from common.errors import ManifestMismatch
from indexer import backends, service
from indexer.embedder import load_embedder
from indexer.generation import load_generation
from indexer.search import Searcher
from indexer.workspace import Workspace
from tests.conftest import FIXTURE_DOCS

if not backends.available("onnx"):
    pytest.skip("the onnx embed backend needs onnxruntime and onnx (pip install -e '.[test]')", allow_module_level=True)

TEXTS = [t for doc in FIXTURE_DOCS.values() for t in doc.replace("\n\n", "\n").split("\n") if len(t) > 20]


def test_parity_and_export_dir_are_plain_arithmetic(tmp_path):
    ref = np.eye(3, dtype=np.float32)
    par = backends.parity(ref, ref * 2.0)  # scale does not matter: cosine
    assert par["mean"] == par["min"] == 1.0 and par["n"] == 3
    tilted = backends.parity(ref, np.array([[1, 1, 0], [0, 1, 0], [0, 0, 1]], dtype=np.float32))
    assert tilted["min"] == pytest.approx(0.70711, abs=1e-4)
    d = backends.export_dir(tmp_path, "my model/v2@abc", "onnx")
    assert d.parent == tmp_path / "exports" and d.name == "my_model_v2@abc-onnx-int8"
    assert backends.cpu_isa() in ("avx512_vnni", "avx512", "avx2", "arm64")


def test_onnx_int8_export_passes_parity_and_is_reused(tmp_path, settings_for, caplog):
    caplog.set_level(logging.INFO)
    base = load_embedder("all-MiniLM-L6-v2")
    cfg = settings_for(indexer={"embed_backend": "onnx"}).indexer
    calls = []

    def sample():
        calls.append(1)
        return TEXTS

    emb = backends.ensure_export(tmp_path, base, "onnx", cfg, sample)
    assert calls == [1]
    # the quantizer's per-tensor lines and its pre-processing advice stay out of the user's log
    assert not [r for r in caplog.records if r.name == "root"], [r.getMessage() for r in caplog.records][:3]
    spec = json.loads((Path(emb.path) / "manifest.json").read_text())
    assert spec["kind"] == "embedder-export" and spec["backend"] == "onnx" and spec["quantization"] == "int8-dynamic"
    assert spec["base"]["id"] == base.id and emb.id.startswith(f"{base.id}:onnx-int8@")
    assert Path(emb.path) == backends.export_dir(tmp_path, base.id, "onnx")
    assert (Path(emb.path) / "model_int8.onnx").stat().st_size < 30e6  # int8: a quarter of the 90 MB fp32 graph
    assert spec["parity"]["n"] == len(TEXTS)
    assert spec["parity"]["mean"] >= cfg.embed_parity_mean and spec["parity"]["min"] >= cfg.embed_parity_min
    assert spec["probe"]["chunks_per_s"] > 0 and spec["probe"]["torch_chunks_per_s"] > 0
    # Queries and documents through the export, close to torch fp32.
    q = emb.encode(["which planet is red"], is_query=True, precision="bf16")
    assert q.shape == (1, base.dim) and abs(float(np.linalg.norm(q)) - 1) < 1e-4
    assert float(q[0] @ base.encode(["which planet is red"])[0]) > 0.97
    # A second ingest finds the export: no sample drawn, nothing exported again, same id.
    again = backends.ensure_export(tmp_path, base, "onnx", cfg, sample)
    assert calls == [1] and again.id == emb.id
    assert load_embedder(emb.path).id == emb.id  # an export directory loads as the export


def _embedder_keys(home: Path) -> set[str]:
    with sqlite3.connect(home / "docstore.sqlite") as c:
        return {r[0] for r in c.execute("SELECT DISTINCT embedder FROM embeddings")}


def test_ingest_with_onnx_backend_records_it_and_queries_with_it(corpus_dir, settings_for):
    s = settings_for(indexer={"embed_backend": "onnx"})
    r = service.ingest(s, [corpus_dir], progress=False)
    ws = Workspace.open(s)
    section = load_generation(Path(r.index_dir)).manifest["embedder"]
    assert section["backend"] == "onnx" and section["quantization"] == "int8-dynamic"
    assert section["parity"]["mean"] >= 0.99 and section["selection"]["setting"] == "onnx"
    assert Path(section["path"]).parent == ws.models / "exports"
    base_id = section["base"]["id"]
    assert section["id"].startswith(f"{base_id}:onnx-int8@")
    assert _embedder_keys(ws.home) == {section["id"]}  # vectors cached under the int8 id, not the torch one

    searcher = ws.searcher()
    assert searcher.embedder.backend == "onnx" and searcher.query_precision == "int8-dynamic"
    for mode in ("dense", "hybrid"):
        assert service.search(s, "which planet is red because of iron oxide", k=1, mode=mode)[0].chunk.doc_id == \
            "space/mars.txt"

    # Queries with the torch model are refused, through the workspace and directly.
    with pytest.raises(ManifestMismatch):
        ws.searcher(embedder_override="all-MiniLM-L6-v2")
    torch_emb = load_embedder("all-MiniLM-L6-v2")
    with pytest.raises(ManifestMismatch):
        Searcher(searcher.gen, torch_emb, ws.store, s.indexer)

    # Switching to torch re-embeds everything (no int8 vector reused as fp32); switching back embeds nothing.
    t = service.ingest(settings_for(), [corpus_dir], progress=False)
    assert t.chunks_embedded == t.chunks_total
    torch_section = load_generation(Path(t.index_dir)).manifest["embedder"]
    assert torch_section["backend"] == "torch" and torch_section["id"] == base_id
    assert _embedder_keys(ws.home) == {section["id"], base_id}
    back = service.ingest(s, [corpus_dir], progress=False)
    assert back.chunks_embedded == 0
    assert load_generation(Path(back.index_dir)).manifest["embedder"]["id"] == section["id"]  # the export was reused


def test_eval_retrieval_with_the_model_an_int8_index_serves_does_not_reindex(tmp_path, settings_for):
    """`eval retrieval --embedder M` on an index serving M through its export scores it; it once refused."""
    from indexer.beir_eval import eval_retrieval
    from tests.unit.trainer.embedder.tiny_model import write_beir

    s = settings_for(ner={"enabled": False}, indexer={"embed_backend": "onnx"})
    beir = write_beir(tmp_path / "beir")
    first = eval_retrieval(s, beir, mode="dense", embedder="all-MiniLM-L6-v2", progress=False)
    ws = Workspace.open(s)
    name = ws.active_index_name()
    assert ws.searcher().embedder.backend == "onnx" and first["dense"]["ndcg@10"] > 0.5
    again = eval_retrieval(s, beir, mode="dense", embedder="all-MiniLM-L6-v2", progress=False)
    assert again == first and Workspace.open(s).active_index_name() == name  # nothing re-embedded


@pytest.mark.slow  # two exports with VNNI (ONNX and OpenVINO with its calibration): 19 s idle, over 30 s on a busy machine
def test_auto_picks_a_passing_backend_and_falls_back_to_torch_when_parity_fails(corpus_dir, settings_for,
                                                                                monkeypatch):
    r = service.ingest(settings_for(indexer={"embed_backend": "auto"}), [corpus_dir], progress=False)
    section = load_generation(Path(r.index_dir)).manifest["embedder"]
    cands = section["selection"]["candidates"]
    assert [c["backend"] for c in cands] == backends.auto_backends()  # OpenVINO only where the CPU has VNNI
    if section["backend"] != "torch":  # the probe decides; on a busy machine torch may win
        chosen = next(c for c in cands if c["backend"] == section["backend"])
        assert chosen["passes"] and chosen["speedup"] > 1.0
        assert chosen["speedup"] == max(c["speedup"] for c in cands if c.get("passes"))

    # A threshold no int8 vector reaches: auto keeps torch, and says why (the exports are reused, not redone).
    strict = settings_for(indexer={"embed_backend": "auto", "embed_parity_mean": 1.0, "embed_parity_min": 1.0})
    r2 = service.ingest(strict, [corpus_dir], progress=False)
    section2 = load_generation(Path(r2.index_dir)).manifest["embedder"]
    assert section2["backend"] == "torch" and section2["quantization"] == "fp32"
    assert section2["selection"]["reason"].startswith("torch: no int8 export passed")
    assert all(not c["passes"] for c in section2["selection"]["candidates"])
    assert [c["id"] for c in section2["selection"]["candidates"]] == [c["id"] for c in cands]
    assert Workspace.open(strict).searcher().embedder.backend == "torch"

    # With every export cached, auto chooses by their manifests and loads only the one it serves.
    loaded: list[str] = []
    real = backends.load_embedder
    monkeypatch.setattr(backends, "load_embedder", lambda path, *a, **k: loaded.append(path) or real(path, *a, **k))
    r3 = service.ingest(settings_for(indexer={"embed_backend": "auto"}), [corpus_dir], progress=False)
    section3 = load_generation(Path(r3.index_dir)).manifest["embedder"]
    assert section3["selection"]["candidates"] == cands
    assert len(loaded) == (section3["backend"] != "torch")


def _embed_stage_backends(monkeypatch) -> list[str | None]:  # type: ignore[no-untyped-def]
    """The backend the streamed embed stage holds at each batch (None: no embedder yet)."""
    from indexer.stream import LocalStages

    seen: list[str | None] = []
    real = LocalStages.embed

    def spy(self, batch):  # type: ignore[no-untyped-def]
        seen.append(None if self.embedder is None else self.embedder.backend)
        return real(self, batch)

    monkeypatch.setattr(LocalStages, "embed", spy)
    return seen


def test_a_fresh_ingest_exports_before_the_stream_so_the_stream_embeds_in_int8(corpus_dir, settings_for, monkeypatch):
    """The export's sample is read from the files before the scan, so the streamed embed stage (and Ray's
    workers) get the int8 embedder from the first batch instead of embedding after every document is chunked."""
    seen = _embed_stage_backends(monkeypatch)
    r = service.ingest(settings_for(indexer={"embed_backend": "onnx"}), [corpus_dir], progress=False)
    assert seen and set(seen) == {"onnx"}
    section = load_generation(Path(r.index_dir)).manifest["embedder"]
    assert section["backend"] == "onnx" and section["parity"]["n"] == r.chunks_total  # all chunks: a tiny corpus
    assert r.chunks_embedded == r.chunks_total


def test_a_reindex_to_int8_exports_from_the_stored_documents_first(corpus_dir, settings_for, monkeypatch):
    torch_run = service.ingest(settings_for(), [corpus_dir], progress=False)
    events: list[str] = []
    for name in ("choose_embedder", "run_stages"):
        real = getattr(service, name)
        monkeypatch.setattr(service, name, lambda *a, _real=real, _name=name, **k: events.append(_name) or _real(*a, **k))
    r = service.reindex(settings_for(indexer={"embed_backend": "onnx"}), progress=False)
    assert events[0] == "choose_embedder" and "run_stages" in events  # the export, then the stream
    assert load_generation(Path(r.index_dir)).manifest["embedder"]["backend"] == "onnx"
    assert r.chunks_embedded == r.chunks_total == torch_run.chunks_total
