"""Readiness of the generator beyond "loaded": a context held past its timeout is a fault (issue 27).

The yardstick is the runtime's own `quantize.acquire_timeout_s`, not `server.request_timeout_s`:
it is the runtime's promise to a queued request (a context within that long, else Busy), so a
context held longer means requests queued behind it fail, which is what "not ready" should say;
and `request_timeout_s` only bounds the start of a response, while a streamed answer starts at
once, so it says nothing about how long a streamed generation may hold its context. Since a
closed, disconnected or timed-out generation frees its context within a token, a context held
that long is a hung generation or a client that stopped reading, and a load balancer should send
traffic elsewhere until it ends.
"""

from __future__ import annotations

from typing import Any


def generator_problems(state: Any) -> list[str]:
    """Why the loaded generator cannot serve a new request in time ([] when it can or none is loaded).

    `state` is a `server.state.ServerState` (only `.generator.runtime.health()` is read)."""
    if state.generator is None:
        return []
    h = state.generator.runtime.health()
    stuck = int(h.get("stuck", 0))
    if not stuck:
        return []
    held = f"{stuck} of {h['contexts']} contexts have" if stuck > 1 else "a context has"
    return [f"generator: {held} been busy for up to {h['oldest_busy_s']:.0f}s, past quantize.acquire_timeout_s "
            f"({h['acquire_timeout_s']:g}s): requests waiting for a context time out"]
