"""Which capabilities a deployment needs and why answers are or are not ready, per generator state."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from server.readiness import capabilities, needed


def _state(spec: str, reader_only: bool, problem: str | None) -> SimpleNamespace:
    return SimpleNamespace(generator=None, generator_problem=problem, reader_only=lambda: reader_only,
                           settings=SimpleNamespace(server=SimpleNamespace(generator=spec)))


@pytest.mark.parametrize(("spec", "reader_only", "problem", "need", "answers_ready"), [
    ("auto", True, "no generator model: answers are the extractive reader's spans", ["search", "answers"], True),
    ("none", False, "no generator model", ["search"], False),
    ("auto", False, "model-q8_0.gguf: not a GGUF file", ["search"], False),  # found, failed: search still serves
    ("/models/missing.gguf", False, "server.generator /models/missing.gguf is not a file", ["search", "answers"],
     False),
])
def test_answers_are_ready_without_a_model_only_when_the_reader_answers(spec, reader_only, problem, need,
                                                                        answers_ready):
    state = _state(spec, reader_only, problem)
    assert needed(state, "deployment") == need
    caps = capabilities(state, None)
    assert caps["search"].ready and caps["answers"].ready is answers_ready
    assert (caps["answers"].problems == []) is answers_ready
    if not answers_ready:
        assert problem in caps["answers"].problems[0]


def test_answers_need_the_index_even_when_the_reader_answers() -> None:
    caps = capabilities(_state("auto", True, None), "no index yet: run `ragkiln ingest`")
    assert not caps["search"].ready and not caps["answers"].ready
