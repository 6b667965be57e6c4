"""Readiness per capability: search (the index loaded) and answers (a generator loaded, no context
stuck), and which of them a `/readyz` caller needs.

`need=deployment` (the default) asks for what this deployment serves: search always, answers when a
generator is loaded, one is named explicitly (`server.generator` a file), or the workspace has no GGUF
yet under `server.generator = "auto"`: then the extractive reader answers, which needs no model, so the
deployment is ready for both as soon as its index is loaded. An own model that is found but fails to load
leaves a search deployment, ready, whose answers say why not. A load balancer in front of answer traffic
asks `need=answers`.

A generator's context held past its timeout is a fault (issue 27).

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

from dataclasses import dataclass, field
from typing import Any, Literal

Need = Literal["deployment", "search", "answers"]


@dataclass
class Capability:
    ready: bool
    problems: list[str] = field(default_factory=list)


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


def capabilities(state: Any, index_problem: str | None) -> dict[str, Capability]:
    """Search and answers, each ready or not with its reasons (`index_problem`: why the index did not load)."""
    search = Capability(index_problem is None, [f"index: {index_problem}"] if index_problem else [])
    answer_problems = list(search.problems)  # answers retrieve first
    if state.generator is None and not state.reader_only():
        answer_problems.append(f"generator: {state.generator_problem or 'none loaded'}")
    answer_problems += generator_problems(state)
    return {"search": search, "answers": Capability(not answer_problems, answer_problems)}


def needed(state: Any, need: Need) -> list[str]:
    """The capabilities `need` asks for."""
    if need != "deployment":
        return [need]
    spec = state.settings.server.generator.strip().lower()
    serves_answers = state.generator is not None or state.reader_only() or spec not in ("auto", "none")
    return ["search", "answers"] if serves_answers else ["search"]
