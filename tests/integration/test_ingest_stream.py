"""The streamed ingest end to end on the real MiniLM: chunks are stored while the scan is still reading files,
documents read but not yet chunked stay bounded by the queues, and the result is the index a one-shot ingest
of the same files gives."""

from __future__ import annotations

import functools
import sqlite3

import numpy as np

from common.settings import load_settings
from indexer import service, stream
from indexer.workspace import Workspace


def test_chunks_are_stored_while_the_scan_reads_and_memory_holds_a_few_batches(tmp_path, monkeypatch):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for i in range(120):
        (corpus / f"doc{i:03d}.txt").write_text(f"Note {i}: the survey station logged {i % 7} storms. "
                                               f"Sensor {i} reported calm weather after the storm.")
    home = tmp_path / "ws"
    settings = load_settings({"home": home})
    batch = 4
    monkeypatch.setattr(service, "batched", functools.partial(stream.batched, max_docs=batch))
    real_load = stream.load_file
    ahead: list[int] = []  # documents read minus documents chunked, at each file read

    def watching(path, doc_id, max_bytes):  # type: ignore[no-untyped-def]
        db = home / "docstore.sqlite"
        chunked = 0
        if db.exists():
            with sqlite3.connect(db) as c:
                chunked = c.execute("SELECT COUNT(DISTINCT doc_id) FROM chunks").fetchone()[0]
        ahead.append(len(ahead) - chunked)
        return real_load(path, doc_id, max_bytes)

    monkeypatch.setattr(stream, "load_file", watching)
    r = service.ingest(settings, [corpus], progress=False)
    assert r.added == 120 and r.chunks_total == 120
    # Three stages with two batches queued in front of each, one in each stage's hands, one being
    # filled and one being handed over: the scan never runs further ahead than that.
    bound = batch * (3 * stream.QUEUE_DEPTH + 3 + 2)
    assert max(ahead) <= bound, (max(ahead), bound)
    assert ahead[-1] < 120 - bound  # most documents were chunked before the last file was read

    # The same files ingested in one batch give the same chunks and vectors.
    monkeypatch.setattr(service, "batched", functools.partial(stream.batched, max_docs=10_000))
    other = load_settings({"home": tmp_path / "one-batch"})
    service.ingest(other, [corpus], progress=False)
    a, b = Workspace.open(settings).store, Workspace.open(other).store
    ca = sorted((c.key, c.text, c.id) for c in a.iter_chunks())
    cb = sorted((c.key, c.text, c.id) for c in b.iter_chunks())
    assert ca == cb
    emb = Workspace.open(settings).searcher().gen.embedder
    va = a.get_embeddings([c[2] for c in ca], emb["id"], emb["dim"])
    vb = b.get_embeddings([c[2] for c in cb], emb["id"], emb["dim"])
    np.testing.assert_allclose(np.stack([va[c[2]] for c in ca]), np.stack([vb[c[2]] for c in cb]), atol=1e-5)


def test_every_stage_reports_the_documents_it_will_see(tmp_path, caplog):
    """Chunked documents pass NER and embedding too, so those stages' totals count them (not "ner 5/0")."""
    import logging

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for i in range(5):
        (corpus / f"d{i}.txt").write_text(f"Report {i} from the harbour office about the spring tides. " * 20)
    settings = load_settings({"home": tmp_path / "ws", "ner": {"enabled": False}})
    with caplog.at_level(logging.INFO, logger="indexer.progress"):
        service.ingest(settings, [corpus], progress=True)
    last = [r.getMessage() for r in caplog.records if r.getMessage().startswith("ingest:")][-1]
    for stage in ("chunk", "ner", "embed"):
        assert f"{stage} 5/5 docs" in last, last
