"""SIGKILL at any moment of a reindex leaves the previous index loadable and consistent with the store."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from common.settings import load_settings
from indexer import service
from indexer.generation import chunk_ids_of
from indexer.workspace import Workspace

ROOT = Path(__file__).resolve().parents[2]

# Runs an ingest in a child process; KILL_AT names a function to wrap with a SIGKILL of the process
# just before or after it runs (a test-only fault injection, the real code paths are untouched).
CHILD = textwrap.dedent("""
    import os, signal, sys
    from pathlib import Path
    from common.settings import load_settings
    from indexer import service, docstore, generation
    home, corpus, kill_at = sys.argv[1], sys.argv[2], sys.argv[3]
    def killer(fn):
        def wrapped(*a, **k):
            if kill_at.endswith(":before"):
                os.kill(os.getpid(), signal.SIGKILL)
            out = fn(*a, **k)
            os.kill(os.getpid(), signal.SIGKILL)
            return out
        return wrapped
    target = kill_at.split(":")[0]
    if target == "write_generation":
        service.write_generation = killer(service.write_generation)
    elif target == "commit_generation":
        docstore.DocStore.commit_generation = killer(docstore.DocStore.commit_generation)
    elif target == "put_embeddings":
        docstore.DocStore.put_embeddings = killer(docstore.DocStore.put_embeddings)
    elif target == "collect_garbage_after":
        orig = docstore.DocStore.commit_generation
        def commit_then_die(self, *a, **k):
            orig(self, *a, **k)
            os.kill(os.getpid(), signal.SIGKILL)
        docstore.DocStore.commit_generation = commit_then_die
    enricher = None
    if len(sys.argv) > 4 and sys.argv[4] == "ner":
        from indexer.types import Entity
        def enricher(texts):  # a test fake: every capitalised word is an ORG
            out = []
            for t in texts:
                ents, pos = [], 0
                for w in t.split():
                    s = t.index(w, pos); pos = s + len(w)
                    if w[:1].isupper():
                        ents.append(Entity(w, "ORG", w.lower(), s, pos, s, pos))
                out.append(ents)
            return out
    service.ingest(load_settings({"home": Path(home)}), [Path(corpus)], enricher=enricher, progress=False)
""")


def assert_consistent(home: Path) -> set[str]:
    """The active index loads, searches, and every chunk it holds resolves to an active document."""
    ws = Workspace.open(load_settings({"home": home}))
    searcher = ws.searcher()
    ids = set(chunk_ids_of(searcher.gen.dense).tolist())
    assert ids == set(ws.store.active_chunk_ids().tolist())
    assert set(searcher.gen.bm25.ids.tolist()) == ids
    chunks = ws.store.get_chunks(sorted(ids))
    assert len(chunks) == len(ids)
    docs = {c.doc_id for c in chunks.values()}
    assert docs == set(ws.store.active_documents())
    assert searcher.search("planet", k=3)
    assert searcher.manifest["counts"]["chunks"] == len(ids)
    return docs


def run_child(home: Path, corpus: Path, kill_at: str, ner: bool = False) -> int:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    p = subprocess.run([sys.executable, "-c", CHILD, str(home), str(corpus), kill_at] + (["ner"] if ner else []),
                       env=env, cwd=ROOT,
                       capture_output=True, timeout=300)
    return p.returncode


def mutate(corpus: Path, n: int) -> None:
    (corpus / "space/mars.txt").write_text(f"Mars revision {n}: dust storms cover the planet for months.")
    (corpus / f"new/doc{n}.txt").parent.mkdir(exist_ok=True)
    (corpus / f"new/doc{n}.txt").write_text(f"A new planet survey number {n} lists many moons.")


def test_sigkill_at_phases_and_random_times(built_workspace, tmp_path):
    import shutil

    corpus = Path(Workspace.open(load_settings({"home": built_workspace})).store.active_sources()
                  ["space/mars.txt"]).parents[1]
    home = tmp_path / "ws"
    shutil.copytree(built_workspace, home)
    before = assert_consistent(home)
    work = tmp_path / "corpus"
    shutil.copytree(corpus, work)
    # Re-point the workspace at the copied corpus by ingesting it once (same content: ids unchanged).
    service.ingest(load_settings({"home": home}), [work], progress=False)
    before = assert_consistent(home)

    phases = ["put_embeddings:after", "write_generation:before", "write_generation:after",
              "commit_generation:before", "collect_garbage_after"]
    for n, phase in enumerate(phases):
        mutate(work, n)
        rc = run_child(home, work, phase)
        assert rc == -signal.SIGKILL, f"{phase}: child exited {rc}"
        docs = assert_consistent(home)
        if phase == "collect_garbage_after":
            assert f"new/doc{n}.txt" in docs  # committed: the new generation is live
        else:
            assert docs == before  # not committed: the previous generation still rules
        before = docs

    # Kills at arbitrary moments of real runs (no injection).
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for n, delay in enumerate([2.5, 4.0, 5.5], start=10):
        mutate(work, n)
        p = subprocess.Popen([sys.executable, "-c", CHILD, str(home), str(work), "none"], env=env, cwd=ROOT,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(delay)
        p.send_signal(signal.SIGKILL)
        p.wait(timeout=60)
        assert_consistent(home)

    # After all that, a normal ingest finishes and reflects the corpus.
    r = service.ingest(load_settings({"home": home}), [work], progress=False)
    docs = assert_consistent(home)
    assert docs == {str(p.relative_to(work).as_posix()) for p in work.rglob("*") if p.is_file()}
    assert r.documents_total == len(docs)


def test_a_run_killed_after_embedding_is_resumed_without_embedding_or_enriching_again(built_workspace, tmp_path):
    """Issue 29: the work of a killed ingest (chunks, entities, vectors) is kept and reused."""
    import shutil

    home = tmp_path / "ws"
    shutil.copytree(built_workspace, home)
    work = tmp_path / "corpus"
    work.mkdir()
    for n in range(6):
        (work / f"doc{n}.txt").write_text(f"Report {n} from Ganymede Station. The Jovian survey found "
                                          f"{n + 3} new moons orbiting far from the planet.")
    rc = run_child(home, work, "commit_generation:before", ner=True)
    assert rc == -signal.SIGKILL
    assert_consistent(home)  # not committed: the previous generation still serves

    seen: list[str] = []

    def counting_enricher(texts):
        seen.extend(texts)
        return [[] for _ in texts]

    r = service.ingest(load_settings({"home": home}), [work], enricher=counting_enricher, progress=False)
    assert r.added == 6 and r.chunks_embedded == 0
    assert seen == []  # every new chunk was enriched by the killed run
    ws = Workspace.open(load_settings({"home": home}))
    labels = {e.label for es in ws.store.entities_for(ws.store.active_chunk_ids().tolist()).values() for e in es}
    assert "ORG" in labels  # the killed run's entities are the ones served
    assert_consistent(home)
