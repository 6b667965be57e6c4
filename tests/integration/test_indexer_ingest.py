"""Folder -> index -> search -> change and delete files -> reingest -> search, on the real MiniLM."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from common.errors import InvalidInput, ManifestMismatch, NotFound
from indexer import service
from indexer.generation import chunk_ids_of
from indexer.workspace import Workspace

ROOT = Path(__file__).resolve().parents[2]


def top_doc(settings, query, mode="hybrid"):
    return service.search(settings, query, k=1, mode=mode)[0].chunk.doc_id


def test_ingest_search_change_delete(corpus_dir, settings_for):
    s = settings_for()
    r = service.ingest(s, [corpus_dir], progress=False)
    assert (r.added, r.changed, r.removed) == (5, 0, 0) and r.chunks_embedded == r.chunks_total > 0
    for mode in ("dense", "bm25", "hybrid"):
        assert top_doc(s, "which planet is red because of iron oxide", mode) == "space/mars.txt"
    hit = service.search(s, "Neil Armstrong walked on the Moon", k=1)[0]
    doc = Workspace.open(s).store.get_document(hit.chunk.doc_id)
    assert doc.text[hit.chunk.start:hit.chunk.end] == hit.chunk.text  # offsets point into the source
    assert doc.title == "The Moon"

    # Unchanged corpus: nothing re-embedded, same index kept.
    again = service.ingest(s, [corpus_dir], progress=False)
    assert (again.added, again.changed, again.removed, again.chunks_embedded) == (0, 0, 0, 0)
    assert again.index_dir == r.index_dir

    # Change one file, delete another, add a third.
    (corpus_dir / "cooking/bread.txt").write_text("Sourdough bread uses a wild yeast starter instead of baker's yeast.")
    (corpus_dir / "pets/dogs.md").unlink()
    (corpus_dir / "space/venus.txt").write_text("Venus is the hottest planet, with thick clouds of sulfuric acid.")
    r2 = service.ingest(s, [corpus_dir], progress=False)
    assert (r2.added, r2.changed, r2.removed, r2.unchanged) == (1, 1, 1, 3)
    new_chunks = [c for c in Workspace.open(s).store.iter_chunks() if c.doc_id in ("cooking/bread.txt", "space/venus.txt")]
    assert r2.chunks_embedded == len(new_chunks)  # only the added and changed documents were embedded
    assert top_doc(s, "wild yeast starter") == "cooking/bread.txt"
    assert top_doc(s, "hottest planet sulfuric acid clouds") == "space/venus.txt"
    ws = Workspace.open(s)
    assert ws.store.get_document("pets/dogs.md") is None
    assert all(h.chunk.doc_id != "pets/dogs.md" for h in service.search(s, "loyal dog barks", k=10))
    # Exactly one generation directory remains, and its ids all resolve in the store.
    assert [p.name for p in ws.indexes.iterdir()] == [Path(r2.index_dir).name]
    ids = chunk_ids_of(ws.searcher().gen.dense)
    assert set(ids.tolist()) == set(ws.store.active_chunk_ids().tolist())


def test_reload_from_disk_gives_identical_results(built_workspace, settings_for):
    s = settings_for(home=built_workspace)
    first = [(h.chunk.id, round(h.score, 6)) for h in service.search(s, "cats sleeping", k=5)]
    fresh = Workspace.open(s).searcher()  # a new process would load the same files
    assert [(h.chunk.id, round(h.score, 6)) for h in fresh.search("cats sleeping", k=5)] == first


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="needs 2 cores to tell 1 thread from the default")
def test_searching_leaves_the_processs_torch_threads_alone(built_workspace):
    """FAISS and torch share OpenMP's per-thread count: opening a searcher and querying it must not leave
    later torch work of the process (an LM trained on retrieved neighbours) on FAISS's one query thread.
    A fresh interpreter, because a test process may already have set torch's count explicitly."""
    code = ("import sys, torch\n"
            "from common.settings import load_settings\n"
            "from indexer.workspace import Workspace\n"
            "before = torch.get_num_threads()\n"
            "searcher = Workspace.open(load_settings({'home': sys.argv[1]})).searcher()\n"
            "assert searcher.search('cats sleeping', k=3, mode='hybrid')\n"
            "print(before, torch.get_num_threads())\n")
    out = subprocess.run([sys.executable, "-c", code, str(built_workspace)], capture_output=True, text=True,
                         cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stderr
    before, after = map(int, out.stdout.split()[-2:])
    assert before >= 2 and after == before


@pytest.mark.parametrize("fusion", ["weighted", "rrf"])
def test_hybrid_hits_carry_the_fused_score_in_rank_order(built_workspace, settings_for, fusion):
    s = settings_for(home=built_workspace, indexer={"fusion": fusion})
    searcher = Workspace.open(s).searcher()
    hits = searcher.search("which planet is red because of iron oxide", k=5)
    scores = [h.score for h in hits]
    assert scores == sorted(scores, reverse=True) and hits[0].chunk.doc_id == "space/mars.txt"
    assert all(set(h.ranks) <= {"dense", "bm25"} for h in hits)  # per-retriever detail only
    if fusion == "weighted":  # a convex combination of scores normalised to [0, 1]
        assert all(0.0 <= x <= 1.0 for x in scores)
    else:
        assert hits[0].score == pytest.approx(sum(1.0 / (60 + r) for r in hits[0].ranks.values()))


def test_ingesting_another_folder_keeps_the_first(corpus_dir, tmp_path, settings_for):
    s = settings_for()
    service.ingest(s, [corpus_dir / "pets"], progress=False)
    other = tmp_path / "other"
    other.mkdir()
    (other / "tea.txt").write_text("Green tea is made from unoxidised leaves.")
    r = service.ingest(s, [other], progress=False)
    assert (r.added, r.removed, r.documents_total) == (1, 0, 3)


def test_embedder_mismatch_refused(built_workspace, settings_for, tmp_path):
    from sentence_transformers import SentenceTransformer

    from indexer.embedder import resolve_embedder_path

    other = tmp_path / "other-embedder"
    model = SentenceTransformer(str(resolve_embedder_path("all-MiniLM-L6-v2")), device="cpu")
    with __import__("torch").no_grad():
        for p in list(model.parameters())[:1]:
            p.add_(0.01)
    model.save(str(other))
    s = settings_for(home=built_workspace)
    with pytest.raises(ManifestMismatch, match="refusing"):
        service.search(s, "cats", embedder=str(other))


def test_bad_inputs(settings_for, tmp_path):
    s = settings_for()
    with pytest.raises(NotFound):
        service.ingest(s, [tmp_path / "missing"], progress=False)
    with pytest.raises(NotFound, match="ingest"):
        service.search(s, "anything")
    folder = tmp_path / "bad"
    folder.mkdir()
    (folder / "ok.txt").write_text("A perfectly good document about gardening and tomatoes.")
    (folder / "empty.txt").write_text("")
    (folder / "binary.txt").write_bytes(bytes(range(256)) * 10)
    (folder / "latin1.txt").write_bytes("d\xe9j\xe0 vu".encode("latin-1"))
    with open(folder / "huge.txt", "wb") as f:  # 50 MB, over the configured limit
        f.write(b"word " * (10 * 2**20))
    r = service.ingest(settings_for(indexer={"max_file_mb": 20}), [folder], progress=False)
    assert r.documents_total == 1
    reasons = {Path(x.path).name: x.reason for x in r.skipped}
    assert set(reasons) == {"empty.txt", "binary.txt", "latin1.txt", "huge.txt"}
    assert "MB" in reasons["huge.txt"]
    with pytest.raises(InvalidInput):
        service.search(s, "   ")


def test_large_text_file_is_chunked(settings_for, tmp_path):
    """A 2 MB text file goes through chunking in bounded time and keeps exact offsets."""
    from indexer.embedder import load_embedder
    from indexer.loaders import load_file

    path = tmp_path / "big.txt"
    path.write_text(" ".join(f"Sentence {i} talks about topic {i % 97}." for i in range(60000)))
    doc = load_file(path, "big.txt", 64 * 2**20).documents[0]
    spans = service.chunk_document(doc, load_embedder("all-MiniLM-L6-v2"), 256, 32)
    assert len(spans) > 100 and all(sp.n_tokens <= 254 for sp in spans)
    assert spans[-1].end == len(doc.text.rstrip())


def test_cli_json_and_errors(built_workspace, tmp_path):
    env_cmd = [sys.executable, "-m", "cli", "--workspace", str(built_workspace), "--log-level", "ERROR"]
    out = subprocess.run(env_cmd + ["search", "red planet", "--json", "-k", "2"], capture_output=True, text=True,
                         cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)  # exactly one JSON object on stdout
    assert len(result["hits"]) == 2 and result["hits"][0]["doc_id"] == "space/mars.txt"
    bad = subprocess.run(env_cmd + ["search", "x", "--mode", "nope"], capture_output=True, text=True, cwd=ROOT,
                         timeout=120)
    assert bad.returncode == 2 and bad.stderr.strip().startswith("ragkiln: error:")
    assert len(bad.stderr.strip().splitlines()) == 1
    missing = subprocess.run([sys.executable, "-m", "cli", "--workspace", str(tmp_path / "none"), "search",
                              "x"], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert missing.returncode == 3 and "ingest" in missing.stderr
    assert not (tmp_path / "none").exists()  # a mistyped workspace is not created by a command that only reads


def test_flat_and_hnsw_agree_on_top_hit(corpus_dir, settings_for, tmp_path):
    s = settings_for(home=tmp_path / "hnsw", indexer={"faiss_factory": "HNSW32"})
    service.ingest(s, [corpus_dir], progress=False)
    assert top_doc(s, "red planet iron oxide", "dense") == "space/mars.txt"
    (corpus_dir / "space/mars.txt").unlink()
    service.ingest(s, [corpus_dir], progress=False)  # HNSW cannot remove ids: rebuilt from the cache
    assert top_doc(s, "red planet iron oxide", "dense") != "space/mars.txt"
    with pytest.raises(InvalidInput, match="FAISS"):
        service.ingest(settings_for(home=tmp_path / "bad", indexer={"faiss_factory": "Bogus99"}), [corpus_dir],
                       progress=False)


def test_bm25_scores_chunks_with_their_neighbours_and_rebuilds_when_that_changes(settings_for, tmp_path):
    # Three chunks of 16 tokens: "zebra" appears only in the first, far from the last.
    sents = ["A zebra grazed on the open plain near the river today.",
             "The herd moved slowly north across the dry grass all afternoon.",
             "At dusk the animals finally reached the water hole and drank."]
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "safari.txt").write_text(" ".join(sents))
    (tmp_path / "c" / "other.txt").write_text("Accounting ledgers record debits and credits in columns.")
    idx = {"chunk_tokens": 16, "chunk_overlap": 0}
    alone = settings_for(indexer={**idx, "bm25_context_chunks": 0})
    r0 = service.ingest(alone, [tmp_path / "c"], progress=False)
    hits0 = service.search(alone, "zebra", k=10, mode="bm25")
    assert [h.chunk.ord for h in hits0] == [0]
    wide = settings_for(indexer={**idx, "bm25_context_chunks": 1})
    r1 = service.ingest(wide, [tmp_path / "c"], progress=False)
    assert r1.index_dir != r0.index_dir and r1.chunks_embedded == 0  # BM25 rebuilt, embeddings reused
    hits1 = service.search(wide, "zebra", k=10, mode="bm25")
    assert [h.chunk.ord for h in hits1][0] == 0 and {h.chunk.ord for h in hits1} == {0, 1}
    assert all(h.chunk.doc_id == "safari.txt" for h in hits1)


def test_previous_generation_chunks_outlive_one_switch(corpus_dir, settings_for):
    """A search running on the old index in another process can still fetch its chunks after a switch."""
    s = settings_for()
    service.ingest(s, [corpus_dir], progress=False)
    store = Workspace.open(s).store
    old_ids = [c.id for c in store.iter_chunks() if c.doc_id == "cooking/bread.txt"]
    (corpus_dir / "cooking/bread.txt").write_text("Rye bread is dense and sour.")
    service.ingest(s, [corpus_dir], progress=False)
    assert set(store.get_chunks(old_ids)) == set(old_ids)  # still there, though no longer active
    assert store.get_document("cooking/bread.txt").text == "Rye bread is dense and sour."
    assert not set(old_ids) & set(store.active_chunk_ids().tolist())
    (corpus_dir / "cooking/bread.txt").write_text("Flatbread needs no oven.")
    service.ingest(s, [corpus_dir], progress=False)
    assert store.get_chunks(old_ids) == {}  # two switches later they are collected


def test_code_blocks_are_stored_and_an_older_workspace_gets_them_on_its_next_ingest(settings_for, tmp_path):
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "ls.md").write_text("# Listing\n\nThe following command lists a bucket:\n\n```\naws s3 ls s3://b\n```\n")
    s = settings_for()
    service.ingest(s, [folder], progress=False)
    store = Workspace.open(s).store
    cid = next(store.iter_chunks()).id
    assert store.code_block_at(cid, 0, 10**6)[2] == "aws s3 ls s3://b"
    store._raw().execute("DELETE FROM code_blocks")  # as a workspace ingested before code blocks were kept
    again = service.ingest(s, [folder], progress=False)
    assert (again.added, again.changed, again.chunks_embedded) == (0, 0, 0)  # nothing re-chunked or re-embedded
    assert store.code_block_at(cid, 0, 10**6)[2] == "aws s3 ls s3://b"


LONG_SENTENCES = {
    "survey.txt": "The orbital survey mapped every crater on the far side of the moon. Its cameras also recorded "
                  "a thin layer of frost inside the deepest polar craters at dawn. The team published the maps "
                  "in a large public archive for other research groups to use.",
    "harbour.txt": "Fishing boats leave the old harbour well before sunrise every single morning. The catch is "
                   "sold at the covered market next to the lighthouse by noon.",
}


def sentence_index_rows(s):  # type: ignore[no-untyped-def]
    """(the sentence index's owner ids as a multiset, the chunks' sentence counts by the rule, the manifest)."""
    from collections import Counter

    from indexer.chunking import sentence_texts

    ws = Workspace.open(s)
    gen = ws.searcher().gen
    owners = Counter(chunk_ids_of(gen.sentences).tolist()) if gen.sentences is not None else None
    chunks = ws.store.get_chunks(ws.store.active_chunk_ids().tolist())
    want = Counter({i: len(sentence_texts(c.title, c.text)) for i, c in chunks.items()})
    return owners, +want, gen


def test_sentence_vectors_follow_their_chunks_through_changes_and_settings(settings_for, tmp_path, monkeypatch):
    from indexer import chunking
    from tests.conftest import write_corpus

    folder = write_corpus(tmp_path / "docs", LONG_SENTENCES)
    s = settings_for(indexer={"chunk_tokens": 32, "chunk_overlap": 8})
    first = service.ingest(s, [folder], progress=False)
    owners, want, gen = sentence_index_rows(s)
    assert owners == want and sum(want.values()) == gen.manifest["counts"]["sentences"] >= 4
    assert gen.manifest["counts"]["max_sentences"] == max(want.values())
    assert gen.manifest["config"]["sentences"] == chunking.SENTENCE_RULE

    # Another sentence rule (a future release's): the index is rebuilt, its sentences embedded under the new key.
    with monkeypatch.context() as m:
        m.setattr(chunking, "SENTENCE_RULE", "sentences>=99w")
        m.setattr(service, "SENTENCE_RULE", "sentences>=99w")
        again = service.ingest(s, [folder], progress=False)
        assert again.index_dir != first.index_dir and again.chunks_embedded == 0
        key = chunking.sentence_cache_key(gen.embedder["id"])
        stored = Workspace.open(s).store.get_sentence_vectors(list(owners), key, 384)
        assert key.endswith("99w") and len(stored) == len(owners)

    # A dense query restating one sentence finds its chunk; the hit's dense score is the chunk's own cosine.
    hit = service.search(s, "frost inside the deepest polar craters", k=1, mode="dense")[0]
    assert "frost" in hit.chunk.text
    searcher = Workspace.open(s).searcher()
    qv = searcher.encode_queries(["frost inside the deepest polar craters"])
    cos = float(qv[0] @ searcher.gen.dense.reconstruct(hit.chunk.id))
    assert hit.scores["dense"] == pytest.approx(cos, abs=1e-5) and hit.score > cos  # ranked by chunk + sentence

    # Changed and removed documents take their sentences out of the index (updated in place, by chunk id).
    (folder / "harbour.txt").write_text("Fishing boats leave the new harbour long before sunrise every morning. "
                                        "Nets are mended on the quay through the long quiet afternoon.")
    (folder / "survey.txt").unlink()
    service.ingest(s, [folder], progress=False)
    owners, want, _ = sentence_index_rows(s)
    assert owners == want and all("frost" not in c.text for c in Workspace.open(s).store.iter_chunks()
                                  if c.id in owners)

    # sentence_share 0 builds no sentence index (and searches without one); back at 0.5 the cache serves.
    off = settings_for(indexer={"chunk_tokens": 32, "chunk_overlap": 8, "sentence_share": 0.0})
    r = service.ingest(off, [folder], progress=False)
    assert r.index_dir is not None and not (Path(r.index_dir) / "sentences.faiss").exists()
    assert json.loads((Path(r.index_dir) / "manifest.json").read_text())["config"]["sentences"] is None
    assert sentence_index_rows(off)[0] is None
    assert service.search(off, "nets mended on the quay", k=1, mode="dense")
    r = service.ingest(s, [folder], progress=False)
    owners, want, _ = sentence_index_rows(s)
    assert owners == want and (Path(r.index_dir) / "sentences.faiss").exists() and r.chunks_embedded == 0


def test_a_passage_stored_in_two_documents_takes_one_slot(corpus_dir, settings_for):
    """A page copied into a second document (a print view, a mirror) is folded into the better hit, named in its
    also_in, and the slot goes to the next distinct result; collapse_overlap 0 shows both."""
    mars = (corpus_dir / "space/mars.txt").read_text()
    (corpus_dir / "all-in-one.txt").write_text(mars)
    s = settings_for()
    service.ingest(s, [corpus_dir], progress=False)
    hits = service.search(s, "which planet is red because of iron oxide", k=3)
    docs = [h.chunk.doc_id for h in hits]
    assert len(docs) == 3 == len(set(docs)) and not {"space/mars.txt", "all-in-one.txt"} <= set(docs)
    assert set(hits[0].also_in) | {docs[0]} == {"space/mars.txt", "all-in-one.txt"}
    searcher = Workspace.open(s).searcher()  # nothing ranked (no BM25 match), some documents excluded: no hits
    assert searcher.search("zzqxv", k=3, mode="bm25", exclude_doc_ids={"space/mars.txt"}) == []
    shallow = Workspace.open(settings_for(indexer={"candidates": 1})).searcher()  # 2 candidates of 6 chunks
    calls = []
    ranked_ids = shallow.ranked_ids
    shallow.ranked_ids = lambda *a, **kw: calls.append(a) or ranked_ids(*a, **kw)  # type: ignore[method-assign]
    few = shallow.search("purrs", k=2, mode="bm25")  # one chunk matches: a deeper search would find no more
    assert [h.chunk.doc_id for h in few] == ["pets/cats.txt"] and len(calls) == 1
    off = service.search(settings_for(indexer={"collapse_overlap": 0}), "which planet is red because of iron oxide", k=3)
    assert {"space/mars.txt", "all-in-one.txt"} <= {h.chunk.doc_id for h in off} and not any(h.also_in for h in off)
