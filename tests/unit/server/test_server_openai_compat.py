"""OpenAI wire-format helpers."""

from __future__ import annotations

import base64

import numpy as np
import pytest

from common.errors import InvalidInput, NotFound
from server.openai_compat import chat_chunk, chat_question, check_model, embedding_inputs, encode_vector, stop_strings
from server.schemas import ChatMessage
from server.sse import sse_data, sse_event


def test_question_is_the_last_user_message():
    msgs = [ChatMessage(role="system", content="be brief"), ChatMessage(role="user", content="first"),
            ChatMessage(role="assistant", content="ok"), ChatMessage(role="user", content=" second ")]
    assert chat_question(msgs) == "second"
    with pytest.raises(InvalidInput):
        chat_question([ChatMessage(role="system", content="x")])


def test_unknown_model_is_refused_not_replaced():
    assert check_model("Tiny-Q8_0", ["tiny-q8_0", "ragkiln"], "generator") == "Tiny-Q8_0"
    with pytest.raises(NotFound, match="gpt-4"):
        check_model("gpt-4", ["tiny-q8_0"], "generator")


def test_base64_embeddings_are_little_endian_float32():
    v = np.array([0.5, -1.0, 0.25], dtype=np.float32)
    raw = base64.b64decode(encode_vector(v, "base64"))
    assert np.frombuffer(raw, dtype="<f4").tolist() == [0.5, -1.0, 0.25]
    assert encode_vector(v, "float") == [0.5, -1.0, 0.25]


def test_embedding_inputs_are_bounded_and_non_empty():
    assert embedding_inputs("a", 2) == ["a"]
    for bad in ([], ["a", "b", "c"], ["a", " "]):
        with pytest.raises(InvalidInput):
            embedding_inputs(bad, 2)


def test_chunks_and_sse_framing():
    c = chat_chunk("id1", 5, "m", {"content": "hi"}, None)
    assert c["object"] == "chat.completion.chunk" and c["choices"][0]["delta"] == {"content": "hi"}
    u = chat_chunk("id1", 5, "m", {}, None, {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3})
    assert u["choices"] == [] and u["usage"]["total_tokens"] == 3
    assert sse_data("[DONE]") == "data: [DONE]\n\n"
    assert sse_event("token", {"text": "a\nb"}) == 'event: token\ndata: {"text":"a\\nb"}\n\n'
    assert stop_strings("x") == ("x",) and stop_strings(None) == () and stop_strings(["a", "b"]) == ("a", "b")
