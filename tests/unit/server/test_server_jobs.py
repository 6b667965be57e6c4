"""Write jobs: one writer runs them in order, errors recorded, never raised."""

from __future__ import annotations

import threading
import time

import pytest

from common.errors import InvalidInput, NotFound
from server.jobs import JobRegistry


def _wait(job, timeout=5.0):
    end = time.time() + timeout
    while job.state in ("queued", "running") and time.time() < end:
        time.sleep(0.01)


def test_job_runs_and_records_its_counts():
    reg = JobRegistry()
    job = reg.submit("reindex", lambda: {"documents_total": 3})
    _wait(job)
    assert job.state == "committed" and job.progress == 1.0 and job.counts == {"documents_total": 3}
    assert reg.get(job.id) is job and job.finished_at >= job.started_at


def test_a_second_write_queues_behind_the_first_instead_of_conflicting():
    reg = JobRegistry()
    gate = threading.Event()
    order: list[str] = []
    first = reg.submit("reindex", lambda: (gate.wait(5), order.append("first"), {})[2])
    second = reg.submit("reindex", lambda: (order.append("second"), {})[1])
    time.sleep(0.05)
    assert first.state == "running" and second.state == "queued"
    gate.set()
    _wait(first)
    _wait(second)
    assert order == ["first", "second"] and second.state == "committed"


def test_failures_are_recorded_without_internals():
    reg = JobRegistry()

    def bad_input():
        raise InvalidInput("no such embedder")

    def crash():
        raise KeyError("/secret/path")

    a, b = reg.submit("a", bad_input), reg.submit("b", crash)
    _wait(a)
    _wait(b)
    assert a.state == "failed" and a.error["code"] == "invalid_input" and "embedder" in a.error["message"]
    assert b.state == "failed" and b.error["code"] == "internal" and "secret" not in b.error["message"]
    with pytest.raises(NotFound):
        reg.get("nope")
