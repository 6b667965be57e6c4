"""Refusal that is honest (issue 27): on the server fixture corpus an off-topic question gets the
not-found answer with `grounded: false`, an on-topic one is answered from its passage."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from server.app import create_app
from reader.answer import NO_ANSWER

sys.path.insert(0, str(Path(__file__).parent))
from server_support import READ, base_workspace, copy_workspace, settings_for  # noqa: E402, F401

OFF_TOPIC = ("What is the capital of France?", "How long should I boil an egg for a soft yolk?",
             "Who won the Battle of Thermopylae?")
ON_TOPIC = ("How many volunteers did the vaccine trial enroll?",
            "Who was the chief engineer of the Golden Gate Bridge?", "Which module parses command line arguments?")


@pytest.fixture(scope="module")
def client(base_workspace, tmp_path_factory):  # noqa: F811
    home = copy_workspace(base_workspace, tmp_path_factory.mktemp("refusal") / "ws")
    with TestClient(create_app(settings_for(home)), raise_server_exceptions=False) as c:
        yield c


def _answer(client, question: str, mode: str = "hybrid") -> dict:
    r = client.post("/v1/answer", json={"question": question, "mode": mode, "max_tokens": 4}, headers=READ)
    assert r.status_code == 200, r.text
    return r.json()


@pytest.mark.parametrize("mode", ["hybrid", "bm25"])
@pytest.mark.parametrize("question", OFF_TOPIC)
def test_off_topic_question_is_refused(client, question, mode):
    a = _answer(client, question, mode)
    assert a["answer"] == NO_ANSWER and a["grounded"] is False and a["citations"] == []
    assert not any(p["relevant"] for p in a["passages"])
    assert a["passages"] or mode == "bm25"  # dense retrieval always finds something; none of it counts
    assert a["usage"]["completion_tokens"] == 0


@pytest.mark.parametrize("mode", ["hybrid", "bm25"])
@pytest.mark.parametrize("question", ON_TOPIC)
def test_on_topic_question_is_grounded(client, question, mode):
    a = _answer(client, question, mode)
    assert a["grounded"] is True and a["answer"] != NO_ANSWER
    assert a["passages"][0]["relevant"] and a["passages"][0]["in_prompt"]
