"""reader.answer: which passages the reader reads (each hit with its document's neighbouring chunks, cut
from a real DocStore) and the chunk that cites the answer (blank spaCy tokenizer, fake embedder)."""

from __future__ import annotations

import sys
from pathlib import Path

from indexer.types import Hit
from reader import load_weights
from reader.answer import read_relevant, reader_passages, reading_windows
from reader.serve import ReaderRuntime, blank_pipeline

sys.path.insert(0, str(Path(__file__).parent))
from answer_support import CHUNK, CHUNK_START, DOC, OTHER, Emb  # noqa: E402


def test_reader_passages_rank_the_relevant_hits_best_first():
    hits = [Hit(OTHER, 0.5), Hit(CHUNK, 0.25)]
    ps = reader_passages(hits, 1)
    assert [(p.doc_id, p.doc_start, p.rank, p.score) for p in ps] == [("bridge.txt", 0, 1, 0.5)]
    assert [p.rank for p in reader_passages(hits, 5)] == [1, 2]


def _stored_vaccine(tmp_path):
    """DOC stored as two chunks (the intro sentence, then CHUNK's span): a real DocStore and their ids."""
    from indexer.docstore import DocStore
    from indexer.types import ChunkSpan, Document

    store = DocStore(tmp_path / "docstore.sqlite")
    doc = Document("vaccine.md", DOC, "sha-v", title="Vaccine")
    store.put_documents([doc])
    ids = store.put_chunks(doc, "ck", [ChunkSpan(0, 0, 16, 4), ChunkSpan(1, CHUNK_START, len(DOC), 16)])
    return store, ids


def test_a_hit_is_read_with_its_neighbouring_chunks_and_cited_by_the_chunk_holding_the_answer(tmp_path):
    store, ids = _stored_vaccine(tmp_path)
    intro = store.get_chunks([ids[0]])[ids[0]]
    rt = ReaderRuntime(load_weights(), loader=lambda _n: blank_pipeline())
    question = "How many volunteers did the trial enroll?"
    alone, _ = read_relevant(rt, Emb(), question, [Hit(intro, 0.9)])  # the intro chunk holds no answer
    assert alone.answer is None or "43,000" not in alone.answer.text
    result, used = read_relevant(rt, Emb(), question, [Hit(intro, 0.9)], store=store, context=1)
    a = result.answer
    assert a is not None and "43,000" in a.text and DOC[a.doc_start:a.doc_end] == a.text
    assert [h.chunk.id for h in used] == [ids[1]] and used[0].score == 0.9  # cited by the chunk holding it


def test_touching_hits_of_one_document_are_one_passage(tmp_path):
    store, ids = _stored_vaccine(tmp_path)
    got = store.get_chunks(ids)
    hits = [Hit(got[ids[1]], 0.8), Hit(OTHER, 0.5), Hit(got[ids[0]], 0.3)]
    wins = reading_windows(hits, 5, store, context=0)  # OTHER is not stored: read as the hit came
    assert [(w.passage.doc_id, w.passage.doc_start, w.passage.rank) for w in wins] == [
        ("vaccine.md", 0, 1), ("bridge.txt", 0, 2)]
    assert wins[0].passage.text == DOC and wins[0].hit.score == 0.8
    assert [w.passage.text for w in reading_windows(hits, 5)] == [h.chunk.text for h in hits]  # no store: the hits


HOWTO = ("Example 1: To list a bucket\n\nThe following ls command lists the objects of a bucket. It needs read access.\n\n"
         "aws s3 ls s3://amzn-s3-demo-bucket\n\nOutput:\n\n2024-01-01 hello.txt\n\nA closing note.")


def _stored_howto(tmp_path):
    from indexer.docstore import DocStore
    from indexer.types import ChunkSpan, Document

    store = DocStore(tmp_path / "docstore.sqlite")
    blocks = tuple((HOWTO.index(b), HOWTO.index(b) + len(b)) for b in ("aws s3 ls s3://amzn-s3-demo-bucket",
                                                                        "2024-01-01 hello.txt"))
    doc = Document("ls.rst", HOWTO, "sha-ls", title="ls", code=blocks)
    store.put_documents([doc])
    ids = store.put_chunks(doc, "ck", [ChunkSpan(0, 0, len(HOWTO), 40)])
    return store, ids[0]


def _sentence(text: str) -> tuple[int, int]:
    return HOWTO.index(text), HOWTO.index(text) + len(text)


def test_a_how_to_answer_carries_the_code_its_paragraph_introduces(tmp_path):
    from reader.answer import Example, answer_example

    store, cid = _stored_howto(tmp_path)
    first = _sentence("The following ls command lists the objects of a bucket.")
    command = Example("aws s3 ls s3://amzn-s3-demo-bucket", *_sentence("aws s3 ls s3://amzn-s3-demo-bucket"))
    assert answer_example(store, "How do I list the objects in a bucket?", cid, first) == command  # rest of its paragraph between
    assert answer_example(store, "how can one list a bucket", cid, _sentence("It needs read access.")) == command
    inside = _sentence("s3://amzn-s3-demo-bucket")  # a sentence read inside the block: the whole block
    assert answer_example(store, "How do I list a bucket?", cid, inside) == command
    assert answer_example(store, "What lists the objects of a bucket?", cid, first) is None  # not a how-to question
    assert answer_example(store, "How do I list a bucket?", cid, _sentence("Example 1: To list a bucket")) is None
    assert answer_example(store, "How do I end?", cid, _sentence("A closing note.")) is None  # no block after it
    assert answer_example(None, "How do I list a bucket?", cid, first) is None


def test_a_long_example_is_cut_at_a_line_end():
    from reader.answer import clip_example

    block = "\n".join(f"line {i:04d} of a long listing" for i in range(200))
    ex = clip_example(100, block, limit=500)
    assert len(ex.text) <= 500 and block.startswith(ex.text) and ex.text.endswith("listing")
    assert (ex.doc_start, ex.doc_end) == (100, 100 + len(ex.text))
    assert clip_example(0, "short").text == "short"
