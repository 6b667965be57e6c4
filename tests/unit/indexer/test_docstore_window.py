"""DocStore.window: a hit's neighbouring chunks and the document text they span, offsets kept; the code
blocks a document version keeps (`code_block_at`); the sentence vectors cached beside a chunk's."""

from __future__ import annotations

import numpy as np

from indexer.docstore import DocStore
from indexer.types import ChunkSpan, Document

TEXT = "Heading\n\nFirst sentence here. Second one.\n\nThird paragraph ends it."


def _store(tmp_path):
    store = DocStore(tmp_path / "docstore.sqlite")
    doc = Document("d.md", TEXT, "sha-d", title="D")
    store.put_documents([doc])
    cuts = [(0, 7), (9, 29), (30, 41), (43, len(TEXT))]
    ids = store.put_chunks(doc, "ck", [ChunkSpan(i, s, e, 3) for i, (s, e) in enumerate(cuts)])
    return store, ids


def test_window_returns_the_chunks_in_range_and_the_exact_document_span(tmp_path):
    store, ids = _store(tmp_path)
    chunks, text = store.window(ids[1], 0, 2)
    assert [c.ord for c in chunks] == [0, 1, 2] and [c.id for c in chunks] == ids[:3]
    assert text == TEXT[0:41] and "\n\n" in text  # the whitespace between chunks is the document's
    assert chunks[0].title == "D"


def test_window_past_the_documents_end_and_an_unknown_chunk(tmp_path):
    store, ids = _store(tmp_path)
    chunks, text = store.window(ids[3], 2, 9)
    assert [c.ord for c in chunks] == [2, 3] and text == TEXT[30:]
    assert store.window(999, 0, 3) == ([], "")


def test_code_blocks_follow_their_document_version(tmp_path):
    store, ids = _store(tmp_path)
    coded = Document("d.md", TEXT, "sha-d", title="D", code=((9, 29), (43, len(TEXT))))
    store.put_documents([coded])
    assert store.code_block_at(ids[1], 30, 41) is None  # no block holds or starts in [30, 41)
    assert store.code_block_at(ids[1], 20, 41) == (9, 29, TEXT[9:29])  # the block holding offset 20
    assert store.code_block_at(ids[0], 30, 50) == (43, len(TEXT), TEXT[43:])
    assert store.document_text(ids[0], 9, 14) == "First" and store.document_text(999, 0, 5) == ""
    store.put_documents([Document("d.md", TEXT, "sha-d", title="D")])  # read back or sent as JSON: no code
    assert store.code_block_at(ids[1], 20, 41) == (9, 29, TEXT[9:29])
    store.commit_generation({"d.md": ("sha-d", "ck")}, "g1")
    assert store.collect_garbage() == 0 and store.code_block_at(ids[1], 20, 41) is not None
    store.put_documents([Document("e.md", "Other text.", "sha-e", code=((0, 5),))])
    store.commit_generation({"d.md": ("sha-d", "ck")}, "g2")
    store.collect_garbage()  # e.md was never active: its version and its code blocks go
    assert store._raw().execute("SELECT COUNT(*) FROM code_blocks WHERE doc_id = 'e.md'").fetchone()[0] == 0


def test_sentence_vectors_are_cached_per_chunk_text_and_collected_with_it(tmp_path):
    store, ids = _store(tmp_path)
    vecs = [np.arange(8, dtype=np.float32).reshape(2, 4), np.zeros((0, 4), np.float32)]
    store.put_sentence_vectors(ids[:2], "emb|rule", vecs)
    got = store.get_sentence_vectors(ids, "emb|rule", 4)
    assert set(got) == set(ids[:2])  # a chunk of one sentence is stored with none; the others were never embedded
    np.testing.assert_array_equal(got[ids[0]], vecs[0])
    assert got[ids[1]].shape == (0, 4)
    assert store.get_sentence_vectors(ids, "other", 4) == {}
    assert set(store.get_sentence_vectors(ids, "emb|rule", 3)) == {ids[1]}  # vectors of another size are not read
    store.commit_generation({"d.md": ("sha-d", "ck")}, "g1")
    store.collect_garbage()
    assert set(store.get_sentence_vectors(ids, "emb|rule", 4)) == set(ids[:2])  # active: kept
    store.commit_generation({}, "g2")
    store.commit_generation({}, "g3")  # d.md is neither active nor previous now
    store.collect_garbage()
    assert store._raw().execute("SELECT COUNT(*) FROM sentence_vectors").fetchone()[0] == 0


def test_entity_lookups_by_label_and_by_values_see_only_the_active_corpus(tmp_path):
    from indexer.types import Entity

    store, ids = _store(tmp_path)
    e = lambda norm: Entity(norm.title(), "ORG", norm, 0, 1, 0, 1)  # noqa: E731
    store.put_entities([(ids[0], [e("acme corporation")]), (ids[1], [e("acme")]), (ids[2], [e("globex")])])
    assert sorted(store.entity_norms("ORG")) == ["acme", "acme corporation", "globex"]
    assert sorted(store.entity_norms("ORG", "acme")) == ["acme", "acme corporation"]
    assert store.entity_norms("ORG", "100%_") == [] and store.entity_norms("GPE") == []
    assert store.chunk_ids_with_entity("ORG") == set()  # nothing active yet
    store.commit_generation({"d.md": ("sha-d", "ck")}, "g1")
    assert store.chunk_ids_with_entity("ORG") == set(ids[:3])
    assert store.chunk_ids_with_entity("ORG", ["acme", "acme corporation"]) == set(ids[:2])
    assert store.chunk_ids_with_entity("ORG", []) == set() and store.chunk_ids_with_entity("GPE") == set()


def test_lookups_by_many_ids_read_every_batch(tmp_path):
    """Lookups bind their ids 500 to a statement; 1,203 chunks span three batches and must all come back."""
    from indexer.types import Entity

    store = DocStore(tmp_path / "docstore.sqlite")
    text = " ".join(f"w{i}" for i in range(1203))
    doc = Document("big.txt", text, "sha-big", title="Big")
    store.put_documents([doc])
    spans, at = [], 0
    for i in range(1203):
        end = at + len(f"w{i}")
        spans.append(ChunkSpan(i, at, end, 1))
        at = end + 1
    ids = store.put_chunks(doc, "ck", spans)
    store.commit_generation({"big.txt": ("sha-big", "ck")}, "g1")
    assert set(store.get_chunks(ids)) == set(ids) and store.get_chunks(ids)[ids[-1]].text == "w1202"
    assert store.unenriched_ids(ids) == set(ids)
    store.put_entities((cid, [Entity(f"w{n}", "X", f"w{n}", 0, 1, 0, 1)]) for n, cid in enumerate(ids))
    assert store.unenriched_ids(ids) == set()
    ents = store.entities_for(ids)
    assert len(ents) == 1203 and ents[ids[700]][0].norm == "w700"
    assert store.chunk_ids_with_entity("X", [f"w{n}" for n in range(1203)]) == set(ids)
    vecs = np.arange(1203 * 2, dtype=np.float32).reshape(1203, 2)
    store.put_embeddings(ids, "emb", vecs)
    got = store.get_embeddings(ids, "emb", 2)
    assert len(got) == 1203 and np.array_equal(got[ids[1100]], vecs[1100])
