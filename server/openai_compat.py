"""OpenAI wire formats (pure): chat completion objects and chunks, embeddings, model list."""

from __future__ import annotations

import base64
import time
import uuid
from collections.abc import Sequence
from typing import Any

import numpy as np

from common.errors import InvalidInput, NotFound
from server.schemas import ChatMessage

GENERATOR_ALIAS = "ragkiln"


def chat_question(messages: Sequence[ChatMessage]) -> str:
    """The question a RAG answer is about: the last user message."""
    for m in reversed(messages):
        if m.role == "user" and m.content.strip():
            return m.content.strip()
    raise InvalidInput("messages: needs a non-empty user message")


def chat_history(messages: Sequence[ChatMessage]) -> list[tuple[str, str]]:
    """(role, content) of every message, for a chat model's own template."""
    return [(m.role, m.content) for m in messages]


def check_model(requested: str, served: Sequence[str], kind: str) -> str:
    """An unknown model name is an error, never silently served by another model."""
    if requested in served or requested.lower() in (s.lower() for s in served):
        return requested
    raise NotFound(f"model {requested!r} is not served here; {kind} models: {', '.join(served) or 'none'} "
                   f"(GET /v1/models)")


def completion_id() -> str:
    return f"chatcmpl-{uuid.uuid4().hex[:24]}"


def chat_chunk(cid: str, created: int, model: str, delta: dict[str, Any], finish: str | None,
               usage: dict[str, int] | None = None, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """One chat.completion.chunk; `extra`: ragkiln's fields (citations, mode, notice) on the last content chunk."""
    out: dict[str, Any] = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
                           "choices": [{"index": 0, "delta": delta, "finish_reason": finish}], **(extra or {})}
    if usage is not None:
        out["choices"] = []
        out["usage"] = usage
    return out


def ragkiln_extras(citations: list[dict[str, Any]], mode: str | None, notice: str | None) -> dict[str, Any]:
    """ragkiln's extension fields of a streamed chat completion (OpenAI clients keep unknown fields)."""
    return {"citations": citations, "mode": mode, "notice": notice}


def stop_strings(stop: str | list[str] | None) -> tuple[str, ...]:
    if stop is None:
        return ()
    return (stop,) if isinstance(stop, str) else tuple(stop)


def embedding_inputs(value: str | list[str], limit: int) -> list[str]:
    texts = [value] if isinstance(value, str) else list(value)
    if not texts:
        raise InvalidInput("input: give at least one string")
    if len(texts) > limit:
        raise InvalidInput(f"input: at most {limit} strings per request (server.max_batch_inputs)")
    for i, t in enumerate(texts):
        if not t.strip():
            raise InvalidInput(f"input.{i}: empty string")
    return texts


def encode_vector(v: np.ndarray, fmt: str) -> list[float] | str:
    if fmt == "base64":
        return base64.b64encode(np.ascontiguousarray(v, dtype="<f4").tobytes()).decode("ascii")
    return [float(x) for x in v]


def now() -> int:
    return int(time.time())
