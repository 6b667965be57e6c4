"""server.answering's extractive path without a server: hits -> the reader -> a run whose answer is the
span, cited by its document offsets, with its sentence (blank spaCy tokenizer, fake embedder)."""

from __future__ import annotations

import numpy as np

from indexer.types import Chunk, Hit
from reader import load_weights
from reader.read import Answer
from reader.serve import ReaderRuntime, ReadResult, blank_pipeline
from server.answering import (AnswerRun, ReaderStream, answer_response, read_relevant, reader_passages,
                              reading_windows, record)
from server.rag import NO_ANSWER

DOC = "Intro line here. The trial enrolled 43,000 volunteers in 2020. It measured infections in Germany."
CHUNK_START = 17  # the chunk is DOC[17:], as a second chunk of its document
CHUNK = Chunk(7, "vaccine.md#abc:1", "vaccine.md", 1, CHUNK_START, len(DOC), DOC[CHUNK_START:], "Vaccine")
OTHER = Chunk(9, "bridge.txt#def:0", "bridge.txt", 0, 0, 40, "Joseph Strauss was the chief engineer.", "Bridge")


class Emb:
    id, dim = "fake", 8

    def encode(self, texts, is_query=False, **_kw):
        rng = [np.random.default_rng(abs(hash(t)) % 2**32).normal(size=self.dim) for t in texts]
        return np.asarray([v / np.linalg.norm(v) for v in rng], np.float32)


def _run(result: ReadResult, used: list[Hit]) -> AnswerRun:
    run = AnswerRun("How many volunteers?", used, used, used, 0.01, "tiny", stream=ReaderStream(result))
    run.finish()
    return run


def test_reader_passages_rank_the_relevant_hits_best_first():
    hits = [Hit(OTHER, 0.5), Hit(CHUNK, 0.25)]
    ps = reader_passages(hits, 1)
    assert [(p.doc_id, p.doc_start, p.rank, p.score) for p in ps] == [("bridge.txt", 0, 1, 0.5)]
    assert [p.rank for p in reader_passages(hits, 5)] == [1, 2]


def test_a_read_answer_is_the_span_with_its_sentence_and_document_offsets():
    rt = ReaderRuntime(load_weights(), loader=lambda _n: blank_pipeline())
    hits = [Hit(CHUNK, 0.9), Hit(OTHER, 0.2)]
    result, used = read_relevant(rt, Emb(), "How many volunteers did the trial enroll?", hits)
    assert result.answer is not None and used == hits
    run = _run(result, used)
    s = run.sentence
    assert run.text == result.answer.text and s is not None
    doc = {"vaccine.md": DOC, "bridge.txt": OTHER.text}[s.doc_id]
    assert doc[s.span_start:s.span_end] == run.text and doc[s.start:s.end] == s.text
    c = run.citations[0]
    assert (c.match, c.quote, c.start, c.end, c.chunk_id) == ("answer", run.text, s.span_start, s.span_end, s.chunk_id)
    body = answer_response(run)
    assert body.sentence == s and body.mode == "extractive" and body.answer == run.text


def test_offsets_are_the_chunk_offset_plus_the_passage_offset():
    sent = "The trial enrolled 43,000 volunteers in 2020."
    at = CHUNK.text.index(sent)
    span_at = at + sent.index("43,000")
    a = Answer("43,000", 0, "vaccine.md", span_at, span_at + 6, CHUNK_START + span_at, CHUNK_START + span_at + 6,
               sent, at, at + len(sent), CHUNK_START + at, CHUNK_START + at + len(sent), 0.9, 0.8)
    run = _run(ReadResult(a, "", 0.02), [Hit(CHUNK, 0.9)])
    s = run.sentence
    assert DOC[s.span_start:s.span_end] == "43,000" and DOC[s.start:s.end] == sent
    assert run.first_token_s == run.generation_s == 0.02 and run.completion_tokens == 0  # set by the server


def test_no_span_in_relevant_passages_says_nothing_was_found():
    run = _run(ReadResult(None, "", 0.0), [Hit(CHUNK, 0.9)])
    assert run.text == NO_ANSWER and run.citations == [] and run.sentence is None


def test_a_read_answer_records_no_generation():
    seen = []

    class Metrics:
        def observe_generation(self, *a):
            seen.append(a)

    class State:
        metrics = Metrics()

    run = _run(ReadResult(None, "", 0.0), [Hit(CHUNK, 0.9)])
    record(State(), run)  # type: ignore[arg-type]
    assert seen == [] and not run.cancelled


def test_one_reader_runtime_per_server_state_dropped_with_it():
    import gc

    import server.answering as answering
    from common.settings import load_settings

    class FakeState:
        def __init__(self, settings):
            self.settings = settings

    settings = load_settings({"server": {"reader_pipeline": "blank-test-pipeline"}})
    a, b = FakeState(settings), FakeState(settings)
    ra = answering.reader_runtime(a)  # type: ignore[arg-type]
    assert answering.reader_runtime(a) is ra and answering.reader_runtime(b) is not ra  # type: ignore[arg-type]
    assert ra.pipeline == "blank-test-pipeline" and ra.problem == ""  # nothing loaded before the first read
    key = id(a)
    del a
    gc.collect()
    assert key not in answering._RUNTIMES



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
