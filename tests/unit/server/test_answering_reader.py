"""server.answering's extractive path without a server: hits -> the reader -> a run whose answer is the
span, cited by its document offsets, with its sentence (blank spaCy tokenizer, fake embedder)."""

from __future__ import annotations

import sys
from pathlib import Path

from indexer.types import Hit
from reader import load_weights
from reader.read import Answer
from reader.serve import ReaderRuntime, ReadResult, blank_pipeline
from reader.answer import NO_ANSWER, read_relevant
from server.answering import AnswerRun, ReaderStream, answer_response, record

sys.path.insert(0, str(Path(__file__).parents[1] / "reader"))
from answer_support import CHUNK, CHUNK_START, DOC, OTHER, Emb  # noqa: E402


def _run(result: ReadResult, used: list[Hit]) -> AnswerRun:
    run = AnswerRun("How many volunteers?", used, used, used, 0.01, "tiny", stream=ReaderStream(result))
    run.finish()
    return run


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
