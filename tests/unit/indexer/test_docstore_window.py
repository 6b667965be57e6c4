"""DocStore.window: a hit's neighbouring chunks and the document text they span, offsets kept."""

from __future__ import annotations

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
