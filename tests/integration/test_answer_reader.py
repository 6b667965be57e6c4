"""Extractive answers through the HTTP app: the reader's span, its sentence and their document offsets
(the contract the web page reads), streamed and not, on the server fixture workspace (MiniLM, spaCy,
a tiny GGUF model that the reader answers for)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from reader.answer import NO_ANSWER
from reader.spans import word_aligned
from server.app import create_app

sys.path.insert(0, str(Path(__file__).parent))
from server_support import ADMIN, READ, base_workspace, copy_workspace, parse_sse, settings_for  # noqa: F401, E402

QUESTIONS = [
    ("How many volunteers did the vaccine trial enroll?", "43,000", "vaccine.md"),
    ("Who was the chief engineer of the Golden Gate Bridge?", "Strauss", "bridge.txt"),
]


@pytest.fixture(scope="module")
def home(base_workspace, tmp_path_factory) -> Path:  # noqa: F811
    return copy_workspace(base_workspace, tmp_path_factory.mktemp("answer-reader") / "ws")


@pytest.fixture(scope="module")
def client(home):
    with TestClient(create_app(settings_for(home)), raise_server_exceptions=False) as c:
        yield c


def _doc(client, doc_id: str) -> str:
    r = client.get(f"/v1/documents/{doc_id}", headers=ADMIN)
    assert r.status_code == 200, r.text
    return r.json()["text"]


def _check_offsets(client, a: dict) -> dict:
    """The contract: the span and its sentence are slices of the stored document, the span inside the
    sentence, neither starting nor ending inside a word; the answer citation quotes the span."""
    s = a["sentence"]
    assert s is not None, a
    doc = _doc(client, s["doc_id"])
    assert doc[s["span_start"]:s["span_end"]] == a["answer"]
    assert doc[s["start"]:s["end"]] == s["text"]
    assert s["start"] <= s["span_start"] < s["span_end"] <= s["end"]
    assert word_aligned(doc, s["span_start"], s["span_end"]), (a["answer"], s["text"])
    cite = a["citations"][0]
    assert cite["match"] == "answer" and cite["quote"] == a["answer"] and cite["doc_id"] == s["doc_id"]
    assert (cite["start"], cite["end"]) == (s["span_start"], s["span_end"]) and cite["chunk_id"] == s["chunk_id"]
    assert any(p["chunk_id"] == s["chunk_id"] and p["in_prompt"] for p in a["passages"])
    return s


@pytest.mark.parametrize(("question", "expected", "doc_id"), QUESTIONS)
def test_extractive_answer_is_the_span_with_its_sentence(client, question, expected, doc_id):
    r = client.post("/v1/answer", json={"question": question}, headers=READ)
    assert r.status_code == 200, r.text
    a = r.json()
    assert a["mode"] == "extractive" and a["grounded"] and a["notice"] is None
    s = _check_offsets(client, a)
    assert s["doc_id"] == doc_id and expected in a["answer"], a["answer"]
    assert len(a["answer"]) < len(s["text"])  # the short span, not the whole sentence
    assert a["usage"] == {"prompt_tokens": 0, "completion_tokens": a["usage"]["total_tokens"],
                          "total_tokens": a["usage"]["total_tokens"]} and a["usage"]["total_tokens"] >= 1
    assert a["timings"]["generation_ms"] is not None and a["finish_reason"] == "stop"


def test_streamed_extractive_answer_sends_the_span_then_the_sentence(client):
    question = QUESTIONS[0][0]
    plain = client.post("/v1/answer", json={"question": question}, headers=READ).json()
    with client.stream("POST", "/v1/answer", json={"question": question, "stream": True}, headers=READ) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        events = parse_sse(r.read().decode())
    names = [e for e, _ in events]
    assert names == ["token", "citations", "done"], names
    assert events[0][1]["text"] == plain["answer"]
    done = events[-1][1]
    assert done["answer"] == plain["answer"] and done["sentence"] == plain["sentence"]
    assert events[1][1]["citations"][0]["quote"] == plain["answer"]


def test_a_gated_model_asked_for_free_text_is_read_and_says_so(client):
    a = client.post("/v1/answer", json={"question": QUESTIONS[0][0], "extractive": False}, headers=READ).json()
    assert a["mode"] == "extractive" and "perplexity" in a["notice"]  # the tiny random model fails the gate
    _check_offsets(client, a)


def test_generative_and_not_found_answers_have_no_sentence(home, client):
    none = client.post("/v1/answer", json={"question": "What is the melting point of tungsten carbide?"},
                       headers=READ).json()
    assert none["answer"] == NO_ANSWER and none["sentence"] is None and not none["grounded"]
    with TestClient(create_app(settings_for(home, generative="tiny-lm-q8_0=true")), raise_server_exceptions=False) as c:
        free = c.post("/v1/answer", json={"question": QUESTIONS[0][0], "extractive": False, "max_tokens": 4},
                      headers=READ).json()
        assert free["mode"] == "generative" and free["sentence"] is None and free["notice"] is None
        read = c.post("/v1/answer", json={"question": QUESTIONS[0][0]}, headers=READ).json()
        assert read["mode"] == "extractive" and read["notice"] is None and read["sentence"] is not None


def test_answers_never_start_or_end_inside_a_word(client):
    questions = ["What did the trial measure?", "Where was the vaccine trial run?", "What does the bridge span?",
                 "When did construction of the bridge begin?", "What is Python?", "Who reviewed the results?"]
    for q in questions:
        a = client.post("/v1/answer", json={"question": q}, headers=READ).json()
        if a["answer"] != NO_ANSWER:
            _check_offsets(client, a)


def test_openapi_describes_the_sentence(client):
    spec = client.get("/openapi.json").json()
    props = spec["components"]["schemas"]["AnswerSentenceOut"]["properties"]
    assert set(props) == {"text", "doc_id", "chunk_id", "start", "end", "span_start", "span_end"}
    sse = spec["paths"]["/v1/answer"]["post"]["responses"]["200"]["content"]["text/event-stream"]["description"]
    assert "sentence" in sse


def test_without_its_spacy_pipeline_the_reader_says_so_and_still_answers(home):
    with TestClient(create_app(settings_for(home, reader_pipeline="no_such_spacy_pipeline")),
                    raise_server_exceptions=False) as c:
        r = c.post("/v1/answer", json={"question": QUESTIONS[0][0]}, headers=READ)
        assert r.status_code == 200, r.text
        a = r.json()
        assert a["mode"] == "extractive" and "spaCy pipeline" in a["notice"], a["notice"]
        _check_offsets(c, a)


def test_the_cli_answers_as_the_server_does(home, client):
    """`ragkiln ask` is /v1/answer's extractive answer from the command line: same span, sentence, citation."""
    import json

    from typer.testing import CliRunner

    from cli.main import app

    def ask(*args: str):
        return CliRunner().invoke(app, ["--workspace", str(home), "ask", *args], env={"HF_HUB_OFFLINE": "1"})

    for question, expected, doc_id in QUESTIONS:
        served = client.post("/v1/answer", json={"question": question}, headers=READ).json()
        r = ask(question, "--json")
        assert r.exit_code == 0, r.output
        got = json.loads(r.stdout)
        assert expected in got["answer"] and got["grounded"] and got["answer"] == served["answer"]
        assert got["sentence"] == served["sentence"] and got["sentence"]["doc_id"] == doc_id
        cite = {k: served["citations"][0][k] for k in ("doc_id", "chunk_id", "start", "end", "quote", "match")}
        assert {k: got["citations"][0][k] for k in cite} == cite
    human = ask(QUESTIONS[0][0])
    assert human.exit_code == 0 and human.stdout.splitlines()[0] == served_answer(client, QUESTIONS[0][0])
    assert "vaccine.md [" in human.stdout
    none = ask("What is the melting point of tungsten carbide?", "--json")
    assert none.exit_code == 0 and json.loads(none.stdout)["answer"] == NO_ANSWER
    assert not json.loads(none.stdout)["grounded"] and json.loads(none.stdout)["sentence"] is None
    # entity filters as `search --entity`: only passages holding the entity are read
    kept = json.loads(ask(QUESTIONS[0][0], "--entity", "GPE:germany", "--json").stdout)
    assert kept["grounded"] and kept["citations"][0]["doc_id"] == "vaccine.md"
    elsewhere = json.loads(ask(QUESTIONS[0][0], "--entity", "GPE:spain", "--json").stdout)
    assert all(h["doc_id"] != "vaccine.md" for h in elsewhere["hits"]) and elsewhere["hits"]
    assert "43,000" not in elsewhere["answer"]
    empty = ask("   ")
    assert empty.exit_code != 0 and "question" in empty.output and "Traceback" not in empty.output


def served_answer(client, question: str) -> str:
    return client.post("/v1/answer", json={"question": question}, headers=READ).json()["answer"]


FIRING = b"""Firing schedules
================

The following ``kiln-fire`` command starts a bisque firing of the loaded kiln at cone 04::

    kilnctl kiln-fire --cone 04 --hold 10

A glaze firing with :program:`kilnctl` needs a slower ramp and a longer hold at the top temperature.
"""


def test_a_how_to_answer_carries_the_example_its_sentence_introduces(home, client):
    """An uploaded reStructuredText page (read as RST by its constructs) keeps its literal block; "How do I
    ...?" is answered with it, from the server and the command line alike, and other questions are not."""
    import json

    from typer.testing import CliRunner

    from cli.main import app

    r = client.post("/v1/documents", files={"file": ("firing.rst", FIRING, "text/x-rst")}, headers=ADMIN)
    assert r.status_code == 200, r.text
    try:
        question = "How do I start a bisque firing of the kiln?"
        a = client.post("/v1/answer", json={"question": question}, headers=READ).json()
        ex = a["example"]
        assert a["sentence"]["doc_id"] == "firing.rst" and ex is not None, a
        assert ex["text"] == "kilnctl kiln-fire --cone 04 --hold 10" and ex["doc_id"] == "firing.rst"
        assert _doc(client, "firing.rst")[ex["start"]:ex["end"]] == ex["text"]
        with client.stream("POST", "/v1/answer", json={"question": question, "stream": True}, headers=READ) as s:
            assert parse_sse(s.read().decode())[-1][1]["example"] == ex
        got = json.loads(CliRunner().invoke(app, ["--workspace", str(home), "ask", question, "--json"],
                                            env={"HF_HUB_OFFLINE": "1"}).stdout)
        assert got["example"] == ex
        human = CliRunner().invoke(app, ["--workspace", str(home), "ask", question], env={"HF_HUB_OFFLINE": "1"})
        assert "  example:\n    kilnctl kiln-fire --cone 04 --hold 10" in human.stdout
        other = client.post("/v1/answer", json={"question": "What does a glaze firing need?"}, headers=READ).json()
        assert other["sentence"]["doc_id"] == "firing.rst" and other["example"] is None
        assert client.post("/v1/answer", json={"question": QUESTIONS[0][0]}, headers=READ).json()["example"] is None
    finally:
        assert client.delete("/v1/documents/firing.rst", headers=ADMIN).status_code == 200
