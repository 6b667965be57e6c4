"""Server-Sent Events framing (pure)."""

from __future__ import annotations

import json
from typing import Any


def sse_event(event: str, data: Any) -> str:
    """One named event; `data` is JSON on a single line (SSE forbids raw newlines in data)."""
    return f"event: {event}\ndata: {json.dumps(data, ensure_ascii=False, separators=(',', ':'))}\n\n"


def sse_data(data: Any) -> str:
    """An unnamed event, as OpenAI streams chat chunks (`[DONE]` is sent verbatim)."""
    payload = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    return f"data: {payload}\n\n"


SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def sse_openapi(events: list[str], description: str) -> dict[str, Any]:
    """The OpenAPI content of an event stream: each event is an object with its `event` name (one of
    `events`; "message" when unnamed) and its `data` line (JSON text), as OpenAPI 3.2's itemSchema
    and schemathesis read a text/event-stream."""
    return {"text/event-stream": {"description": description, "schema": {
        "type": "object", "required": ["data"],
        "properties": {"event": {"enum": events}, "data": {"type": "string"}, "id": {"type": "string"},
                       "retry": {"type": "integer"}}}}}
