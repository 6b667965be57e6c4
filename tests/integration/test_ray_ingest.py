"""Ingest on Ray (issue 30 item 3): the workers' rows are the plain ingest's chunks, entities and vectors; a local
Ray cluster builds the same index; a killed worker loses nothing and the previous generation serves until the
re-run commits."""

from __future__ import annotations

import logging
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from common.errors import InvalidInput, RagkilnError
from common.settings import load_settings
from indexer import service
from indexer.chunking import sentence_cache_key
from indexer.ray_ingest import ChunkEnrichEmbed, RayOptions, WorkerSpec, _store_rows
from indexer.stream import LocalStages, chunker_id
from indexer.progress import IngestProgress
from indexer.stream import STAGES
from indexer.types import Entity
from indexer.workspace import Workspace

ROOT = Path(__file__).resolve().parents[2]
QUERIES = ["which planet is red", "cats sleep all day", "bread dough yeast", "moon landing 1969",
           "loyal dogs and wolves", "survey of moons", "report from the station"]


def capital_orgs(texts):  # type: ignore[no-untyped-def]
    """A test enricher: every capitalised word is an ORG (deterministic, travels to Ray workers by value)."""
    out = []
    for t in texts:
        ents, pos = [], 0
        for w in t.split():
            s = t.index(w, pos)
            pos = s + len(w)
            if w[:1].isupper():
                ents.append(Entity(w, "ORG", w.lower(), s, pos, s, pos))
        out.append(ents)
    return out


class KillingEnricher:
    """Kills its own worker process (SIGKILL-like `os._exit`) on its `after`-th call: once per marker file when
    `once`, else every time. Only the Ray tests build it; the worker code path is the real one."""

    def __init__(self, marker: str, after: int, once: bool) -> None:
        self.marker, self.after, self.once, self.calls = marker, after, once, 0

    def __call__(self, texts):  # type: ignore[no-untyped-def]
        self.calls += 1
        if self.calls >= self.after and not (self.once and os.path.exists(self.marker)):
            Path(self.marker).touch()
            os._exit(1)
        return capital_orgs(texts)


class Factory:
    def __init__(self, enricher) -> None:  # type: ignore[no-untyped-def]
        self.enricher = enricher

    def __call__(self):  # type: ignore[no-untyped-def]
        return self.enricher


def write_extra(root: Path, n: int) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        (root / f"station-{i:02d}.txt").write_text(
            f"Report {i} from Ganymede Station. The Jovian survey found {i + 3} new moons. "
            f"Captain Ortiz logged the orbit of moon {i} near Europa.")
    return root


def snapshot(home: Path) -> dict:
    """What an index serves, by chunk key: chunks (key, text, id), entities, vectors, the top-5 of each query."""
    s = load_settings({"home": home})
    ws = Workspace.open(s)
    chunks = sorted((c.key, c.text, c.id) for c in ws.store.iter_chunks())
    ids = [c[2] for c in chunks]
    searcher = ws.searcher()
    vecs = ws.store.get_embeddings(ids, searcher.gen.embedder["id"], searcher.gen.embedder["dim"])
    ents = ws.store.entities_for(ids)
    return {"chunks": [c[:2] for c in chunks], "ids": ids, "vecs": np.stack([vecs[i] for i in ids]),
            "ents": [sorted((e.label, e.norm, e.doc_start) for e in ents.get(i, [])) for i in ids],
            "top": {q: [h.chunk.key for h in searcher.search(q, k=5)] for q in QUERIES},
            "docs": sorted(ws.store.active_documents())}


def assert_same_index(a: dict, b: dict, same_ids: bool = True) -> None:
    assert a["docs"] == b["docs"]
    assert a["chunks"] == b["chunks"]  # same keys, same texts
    if same_ids:
        assert a["ids"] == b["ids"]  # chunk ids assigned in scan order on both paths
    np.testing.assert_allclose(a["vecs"], b["vecs"], atol=1e-5)  # another batch makeup: float noise only
    assert a["ents"] == b["ents"]
    assert a["top"] == b["top"]


def assert_consistent(home: Path) -> set[str]:
    """The active index loads and searches, and its chunks are exactly the active documents' chunks."""
    from indexer.generation import chunk_ids_of

    ws = Workspace.open(load_settings({"home": home}))
    searcher = ws.searcher()
    ids = set(chunk_ids_of(searcher.gen.dense).tolist())
    assert ids == set(ws.store.active_chunk_ids().tolist()) == set(searcher.gen.bm25.ids.tolist())
    assert searcher.search("planet", k=3)
    return set(ws.store.active_documents())


def test_worker_rows_are_what_the_local_stages_store(built_workspace, tmp_path):
    """The UDF run in this process (no cluster): its rows, stored by the driver's writer, give the chunks,
    entities and vectors the plain streamed ingest gives."""
    import pyarrow as pa

    extra = write_extra(tmp_path / "extra", 6)
    plain = tmp_path / "plain"
    shutil.copytree(built_workspace, plain)
    service.ingest(load_settings({"home": plain}), [extra], enricher=capital_orgs, progress=False)

    home = tmp_path / "rows"
    shutil.copytree(built_workspace, home)
    s = load_settings({"home": home})
    ws = Workspace.open(s)
    emb = service._resolve_embedder(ws, None)
    chunker = chunker_id(emb, s.indexer.chunk_tokens, s.indexer.chunk_overlap)
    docs = service.scan([extra], 2**26)[0]
    spec = WorkerSpec(emb.path, chunker, s.indexer.chunk_tokens, s.indexer.chunk_overlap, emb.path, emb.id, 0, 64,
                      Factory(capital_orgs), sentences=True)
    table = pa.table({"doc_id": [d.doc_id for d in docs], "sha256": [d.sha256 for d in docs],
                      "title": [d.title for d in docs], "text": [d.text for d in docs]})
    rows = ChunkEnrichEmbed(spec)(table).to_pylist()
    assert [r["doc_id"] for r in rows] == [d.doc_id for d in docs]
    local = LocalStages(ws.store, emb, chunker, s.indexer.chunk_tokens, s.indexer.chunk_overlap, None, emb, 64,
                        IngestProgress(STAGES, enabled=False))
    ws.store.put_documents(docs)
    _store_rows(local, emb, rows)
    p = Workspace.open(load_settings({"home": plain})).store
    for d in docs:
        mine = ws.store.get_chunks(ws.store.chunk_ids_for(d.doc_id, d.sha256, chunker))
        theirs = p.get_chunks(p.chunk_ids_for(d.doc_id, d.sha256, chunker))
        assert [(c.key, c.start, c.end, c.text) for c in mine.values()] == \
            [(c.key, c.start, c.end, c.text) for c in theirs.values()]
        a = ws.store.get_embeddings(list(mine), emb.id, emb.dim)
        b = p.get_embeddings(list(theirs), emb.id, emb.dim)
        np.testing.assert_allclose(np.stack([a[i] for i in mine]), np.stack([b[i] for i in theirs]), atol=1e-5)
        key = sentence_cache_key(emb.id)
        sa, sb = ws.store.get_sentence_vectors(list(mine), key, emb.dim), p.get_sentence_vectors(list(theirs), key, emb.dim)
        assert len(sa) == len(mine) and len(sb) == len(theirs)  # every chunk has its row, none or some sentences
        assert any(len(v) for v in sa.values())
        for i, j in zip(mine, theirs):
            np.testing.assert_allclose(sa[i], sb[j], atol=1e-5)
        ea = ws.store.entities_for(list(mine))
        eb = p.entities_for(list(theirs))
        assert [ea.get(i, []) for i in mine] == [eb.get(i, []) for i in theirs] and any(ea.values())
    assert local.counts["embedded"] == sum(len(ws.store.chunk_ids_for(d.doc_id, d.sha256, chunker)) for d in docs)


def test_bad_ray_options_are_refused():
    with pytest.raises(InvalidInput, match="--ray needs"):
        RayOptions("  ")
    with pytest.raises(InvalidInput):
        RayOptions("local", batch_docs=0)
    with pytest.raises(InvalidInput):
        RayOptions("local", window_docs=0)
    with pytest.raises(InvalidInput, match="window_mb"):
        RayOptions("local", window_mb=0)


@pytest.fixture(scope="module")
def ray_cluster():  # type: ignore[no-untyped-def]
    """One local Ray cluster (2 CPUs) for the module; the ingest joins it instead of starting its own."""
    ray = pytest.importorskip("ray")
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the test enrichers travel by value
    pythonpath = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False,
             runtime_env={"env_vars": {"PYTHONPATH": pythonpath}})
    yield ray
    ray.shutdown()


@pytest.mark.slow
def test_ray_ingest_builds_the_plain_index(built_workspace, tmp_path, ray_cluster, caplog):
    extra = write_extra(tmp_path / "extra", 24)
    homes = {}
    # "windows": the scan hands Ray at least 10 documents at a time: blocks of 4, so two windows of 12;
    # "bytes": windows closed by their text's size instead (1,000 characters: two blocks of about 600 a window)
    windows = {}
    for kind, window in (("plain", None), ("ray", {}), ("windows", {"window_docs": 10}),
                         ("bytes", {"window_mb": 1000 / 2**20})):
        home = tmp_path / kind
        shutil.copytree(built_workspace, home)
        ray = (RayOptions("local", enricher_factory=Factory(capital_orgs), batch_docs=4, **window)
               if window is not None else None)
        caplog.clear()
        with caplog.at_level(logging.DEBUG, logger="indexer.ray_ingest"):
            r = service.ingest(load_settings({"home": home}), [extra], enricher=capital_orgs, progress=False, ray=ray)
        windows[kind] = sum(m.startswith("Ray: a window") for m in caplog.messages)
        assert (r.added, r.chunks_embedded) == (24, 24)
        homes[kind] = snapshot(home)
    assert windows == {"plain": 0, "ray": 1, "windows": 2, "bytes": 3}
    assert_same_index(homes["plain"], homes["ray"])
    assert_same_index(homes["plain"], homes["windows"])
    assert_same_index(homes["plain"], homes["bytes"])
    assert any(homes["ray"]["ents"]) and any(homes["windows"]["ents"])


@pytest.mark.slow
def test_a_killed_worker_loses_nothing(built_workspace, tmp_path, ray_cluster):
    extra = write_extra(tmp_path / "extra", 24)
    plain = tmp_path / "plain"
    shutil.copytree(built_workspace, plain)
    service.ingest(load_settings({"home": plain}), [extra], enricher=capital_orgs, progress=False)
    expected = snapshot(plain)

    # 1. A worker dies once mid-ingest: Ray restarts the actor, retries its batch, and the ingest completes.
    once = tmp_path / "once"
    shutil.copytree(built_workspace, once)
    opts = RayOptions("local", enricher_factory=Factory(KillingEnricher(str(tmp_path / "killed-once"), 2, True)),
                      batch_docs=4)
    r = service.ingest(load_settings({"home": once}), [extra], enricher=capital_orgs, progress=False, ray=opts)
    assert (tmp_path / "killed-once").exists() and r.added == 24
    assert_same_index(expected, snapshot(once))

    # 2. Workers die on every second batch and may not restart: the ingest fails, the previous generation
    # still serves, and the re-run completes from what the failed run stored.
    home = tmp_path / "always"
    shutil.copytree(built_workspace, home)
    before = assert_consistent(home)
    opts = RayOptions("local", enricher_factory=Factory(KillingEnricher(str(tmp_path / "k"), 2, False)),
                      batch_docs=4, max_restarts=0)
    with pytest.raises(RagkilnError, match="previous index still serves"):
        service.ingest(load_settings({"home": home}), [extra], enricher=capital_orgs, progress=False, ray=opts)
    assert assert_consistent(home) == before
    opts = RayOptions("local", enricher_factory=Factory(capital_orgs), batch_docs=4)
    r = service.ingest(load_settings({"home": home}), [extra], enricher=capital_orgs, progress=False, ray=opts)
    assert r.added == 24 and r.chunks_embedded <= 24
    assert_consistent(home)
    assert_same_index(expected, snapshot(home), same_ids=False)  # the failed run's chunks kept their ids


def test_cli_refuses_an_unreachable_ray_address(built_workspace, tmp_path):
    import subprocess

    home = tmp_path / "ws"
    shutil.copytree(built_workspace, home)
    extra = write_extra(tmp_path / "extra", 1)
    out = subprocess.run([sys.executable, "-m", "cli", "--workspace", str(home), "ingest", str(extra), "--no-ner",
                          "--ray", "127.0.0.1:1"], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert out.returncode == 2, out.stderr
    lines = [ln for ln in out.stderr.strip().splitlines() if ln.startswith("ragkiln:")]
    assert lines and "cannot join the Ray cluster" in lines[-1]


@pytest.mark.slow
def test_cli_ray_local_json_is_one_object(built_workspace, tmp_path):
    """`ragkiln ingest --ray local --json`: Ray starts and stops inside the command, stdout stays one JSON object."""
    import json
    import subprocess

    home = tmp_path / "ws"
    shutil.copytree(built_workspace, home)
    extra = write_extra(tmp_path / "extra", 3)
    out = subprocess.run([sys.executable, "-m", "cli", "--workspace", str(home), "ingest", str(extra), "--no-ner",
                          "--ray", "local", "--json"], capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    report = json.loads(out.stdout)
    assert report["added"] == 3 and report["chunks_embedded"] == 3
    assert_consistent(home)


def test_ray_address_setting_is_the_default_and_ray_overrides_it():
    from cli.index_cmds import ray_options
    from common.settings import load_settings

    plain = load_settings({"ner": {"enabled": False}})
    assert ray_options(None, plain) is None
    configured = load_settings({"ner": {"enabled": False}, "indexer": {"ray_address": "auto"}})
    assert ray_options(None, configured).address == "auto"
    assert ray_options("local", configured).address == "local"


def test_cli_uses_the_ray_address_setting(built_workspace, tmp_path):
    import os
    import subprocess

    home = tmp_path / "ws"
    shutil.copytree(built_workspace, home)
    extra = write_extra(tmp_path / "extra", 1)
    env = dict(os.environ, RAGKILN_INDEXER__RAY_ADDRESS="127.0.0.1:1")
    out = subprocess.run([sys.executable, "-m", "cli", "--workspace", str(home), "ingest", str(extra), "--no-ner"],
                         capture_output=True, text=True, cwd=ROOT, timeout=300, env=env)
    assert out.returncode == 2, out.stderr
    assert "cannot join the Ray cluster" in [ln for ln in out.stderr.splitlines() if ln.startswith("ragkiln:")][-1]
