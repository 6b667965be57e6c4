"""Writes as jobs with known outcomes: 202 + job for large writes, Idempotency-Key replays, writes that
queue behind one another and behind another process's writer lock, a bounded queue (429), failures
with reasons, and jobs that outlive the server process (through FastAPI's TestClient on a small real
workspace)."""

from __future__ import annotations

import json
import sqlite3
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from common.settings import load_settings
from indexer.workspace import Workspace
from server.app import create_app
sys.path.insert(0, str(Path(__file__).parent))
from server_support import ADMIN, READ, base_workspace, copy_workspace, settings_for  # noqa: F401

BIG = " ".join(f"Glass kiln firing schedule step {i} holds the ware at cone {i % 12} for annealing." for i in range(60))


@pytest.fixture(scope="module")
def home(base_workspace, tmp_path_factory) -> Path:  # noqa: F811
    return copy_workspace(base_workspace, tmp_path_factory.mktemp("jobs") / "ws")


@contextmanager
def client_for(home: Path, **server: object):
    with TestClient(create_app(settings_for(home, **server), load_models=False), raise_server_exceptions=False) as c:
        yield c


@contextmanager
def writer_lock_held(home: Path):
    """Another process's writer (a CLI `ragkiln ingest`): the workspace writer lock, held."""
    with Workspace.open(load_settings({"home": home})).writer():
        yield


def wait_job(c: TestClient, job_id: str, timeout: float = 120.0) -> dict:
    deadline = time.time() + timeout
    while True:
        job = c.get(f"/v1/jobs/{job_id}", headers=ADMIN).json()
        if job["state"] in ("committed", "failed") or time.time() > deadline:
            return job
        time.sleep(0.1)


def doc(doc_id: str, text: str = BIG) -> dict:
    return {"documents": [{"id": doc_id, "title": doc_id, "text": text}]}


def test_a_large_upsert_is_a_job_that_commits_with_its_generation(home):
    with client_for(home, write_sync_max_chars=1000) as c:
        r = c.post("/v1/documents", json=doc("kiln/big.txt"), headers=ADMIN)
        assert r.status_code == 202, r.text
        job = r.json()
        assert job["kind"] == "upsert" and job["state"] in ("queued", "running", "committed")
        assert job["ids"] == ["kiln/big.txt"] and r.headers["location"] == f"/v1/jobs/{job['id']}"
        job = wait_job(c, job["id"])
        assert job["state"] == "committed" and job["error"] is None, job
        assert job["generation"] == c.get("/readyz").json()["index"]["name"]
        assert job["counts"]["added"] == 1
        hits = c.post("/v1/search", json={"query": "kiln firing schedule annealing", "k": 1}, headers=READ).json()
        assert hits["hits"][0]["doc_id"] == "kiln/big.txt" and hits["index"] == job["generation"]
        # a small write still answers in the request, with its job
        r = c.post("/v1/documents", json=doc("kiln/small.txt", "Stoneware is fired at cone six."), headers=ADMIN)
        assert r.status_code == 200, r.text
        assert r.json()["report"]["added"] == 1 and r.json()["job"]["state"] == "committed"


def test_a_retried_write_with_the_same_key_gets_the_first_job(home):
    key = {"Idempotency-Key": "retry-5b1f0c7e"}
    with client_for(home, write_sync_max_chars=1000) as c:
        first = c.post("/v1/documents", json=doc("kiln/retry.txt"), headers={**ADMIN, **key})
        assert first.status_code == 202, first.text
        again = c.post("/v1/documents", json=doc("kiln/retry.txt"), headers={**ADMIN, **key})
        assert again.status_code == 202 and again.json()["id"] == first.json()["id"]
        assert again.headers["idempotent-replayed"] == "true"
        job = wait_job(c, first.json()["id"])
        assert job["state"] == "committed", job
        after = c.post("/v1/documents", json=doc("kiln/retry.txt"), headers={**ADMIN, **key})
        assert after.json()["id"] == job["id"] and after.json()["state"] == "committed"
        other = c.post("/v1/documents", json=doc("kiln/retry.txt", "another text"), headers={**ADMIN, **key})
        assert other.status_code == 409 and "Idempotency-Key" in other.json()["error"]["message"]
        bad = c.post("/v1/documents", json=doc("kiln/x.txt"), headers={**ADMIN, "Idempotency-Key": "a b"})
        assert bad.status_code == 422 and bad.json()["error"]["field"] == "Idempotency-Key"
        # a delete replayed after it committed answers its job again, not 404
        dkey = {**ADMIN, "Idempotency-Key": "delete-retry-1"}
        d1 = c.delete("/v1/documents/kiln/retry.txt", headers=dkey)
        d2 = c.delete("/v1/documents/kiln/retry.txt", headers=dkey)
        assert d1.status_code == d2.status_code == 200 and d1.json()["job"]["id"] == d2.json()["job"]["id"]
        assert c.delete("/v1/documents/kiln/retry.txt", headers=ADMIN).status_code == 404
    with sqlite3.connect(home / "jobs.sqlite") as db:
        n = db.execute("SELECT COUNT(*) FROM jobs WHERE kind='upsert' AND ids=?", (json.dumps(["kiln/retry.txt"]),))
        assert n.fetchone()[0] == 1  # exactly one write ran
    # keys and jobs outlive the server process
    with client_for(home, write_sync_max_chars=1000) as c:
        assert c.get(f"/v1/jobs/{job['id']}", headers=ADMIN).json()["state"] == "committed"
        r = c.post("/v1/documents", json=doc("kiln/retry.txt"), headers={**ADMIN, **key})
        assert r.status_code == 202 and r.json()["id"] == job["id"]


def test_writes_queue_behind_a_cli_writer_and_each_other_not_409(home):
    with client_for(home, write_sync_wait_s=0.5, request_timeout_s=30) as c:
        with writer_lock_held(home):
            a = c.post("/v1/documents", json=doc("kiln/q1.txt", "Raku firing cools pots in sawdust."), headers=ADMIN)
            b = c.delete("/v1/documents/kiln/small.txt", headers=ADMIN)
            r = c.post("/v1/reindex", json={"ner": False}, headers=ADMIN)
            assert (a.status_code, b.status_code, r.status_code) == (202, 202, 202), (a.text, b.text, r.text)
            time.sleep(1.0)
            assert c.get(f"/v1/jobs/{a.json()['id']}", headers=ADMIN).json()["state"] in ("queued", "running")
            assert c.get(f"/v1/jobs/{b.json()['id']}", headers=ADMIN).json()["state"] == "queued"
        jobs = [wait_job(c, x.json()["id"]) for x in (a, b, r)]
        assert [j["state"] for j in jobs] == ["committed"] * 3, jobs
        assert jobs[0]["finished_at"] <= jobs[1]["started_at"] <= jobs[1]["finished_at"] <= jobs[2]["started_at"]
        assert c.get("/v1/documents/kiln/small.txt", headers=ADMIN).status_code == 404


def test_a_full_queue_answers_429_with_retry_after(home):
    with client_for(home, write_sync_wait_s=0, write_queue_size=2) as c:
        with writer_lock_held(home):
            ids = [c.post("/v1/documents", json=doc(f"kiln/full{i}.txt", f"Glaze batch {i}."), headers=ADMIN)
                   for i in range(2)]
            assert [r.status_code for r in ids] == [202, 202]
            full = c.post("/v1/documents", json=doc("kiln/full2.txt", "Glaze batch 2."),
                          headers={**ADMIN, "Idempotency-Key": "full-queue-1"})
            assert full.status_code == 429 and int(full.headers["retry-after"]) >= 1, full.text
            assert c.post("/v1/reindex", json={}, headers=ADMIN).status_code == 429
        assert all(wait_job(c, r.json()["id"])["state"] == "committed" for r in ids)
        # the refused request did not take its key: sent again, it runs
        again = c.post("/v1/documents", json=doc("kiln/full2.txt", "Glaze batch 2."),
                       headers={**ADMIN, "Idempotency-Key": "full-queue-1"})
        assert again.status_code == 202 and wait_job(c, again.json()["id"])["state"] == "committed", again.text


def test_failing_writes_are_failed_jobs_with_a_reason(home, tmp_path):
    broken = tmp_path / "broken-model"  # looks like a model directory, so it is queued, but does not load
    broken.mkdir()
    (broken / "config.json").write_text("{}")
    with client_for(home, write_lock_wait_s=1.0, write_sync_wait_s=0) as c:
        r = c.post("/v1/reindex", json={"embedder": str(broken)}, headers=ADMIN)
        job = wait_job(c, r.json()["id"])
        assert job["state"] == "failed" and job["error"]["code"] == "model_unavailable" and job["error"]["message"]
        assert job["generation"] is None
        with writer_lock_held(home):
            r = c.post("/v1/documents", json=doc("kiln/locked.txt", "Never written."),
                       headers={**ADMIN, "Idempotency-Key": "locked-1"})
            job = wait_job(c, r.json()["id"])
        assert job["state"] == "failed" and job["error"]["code"] == "conflict", job
        assert "write_lock_wait_s" in job["error"]["message"]
        assert c.get("/v1/documents/kiln/locked.txt", headers=ADMIN).status_code == 404
        # a failed job releases its key: the retry runs and commits
        retry = c.post("/v1/documents", json=doc("kiln/locked.txt", "Never written."),
                       headers={**ADMIN, "Idempotency-Key": "locked-1"})
        assert retry.json()["id"] != job["id"] and wait_job(c, retry.json()["id"])["state"] == "committed"
        # a small write that fails in its request answers the error
        assert c.delete("/v1/documents/kiln/nowhere.txt", headers=ADMIN).status_code in (202, 404)


def test_a_timeout_never_answers_504_for_a_write(home):
    with client_for(home, request_timeout_s=1.5, write_sync_wait_s=60) as c:
        with writer_lock_held(home):
            r = c.post("/v1/documents", json=doc("kiln/slow.txt", "Pit firing takes a day."), headers=ADMIN)
            assert r.status_code == 202, r.text
        assert wait_job(c, r.json()["id"])["state"] == "committed"


def test_jobs_of_a_stopped_server_are_settled_from_the_docstore(home):
    with client_for(home) as c:
        c.post("/v1/documents", json=doc("kiln/settled.txt", "Bisque firing comes first."), headers=ADMIN)
        active = c.get("/v1/documents/kiln/settled.txt", headers=ADMIN).json()["sha256"]
    rows = [("stop-committed", {"docs": {"kiln/settled.txt": active}}), ("stop-lost", {"docs": {"kiln/lost.txt": "x"}}),
            ("stop-deleted", {"deleted": ["kiln/never-there.txt"]}), ("stop-reindex", None)]
    with sqlite3.connect(home / "jobs.sqlite") as db:
        for job_id, want in rows:
            db.execute("INSERT INTO jobs (id, kind, state, progress, created_at, ids, fingerprint, want, owner) "
                       "VALUES (?, ?, 'running', 0, ?, '[]', '', ?, 'gone-owner')",
                       (job_id, "reindex" if want is None else "upsert", time.time(),
                        json.dumps(want) if want else None))
    with client_for(home) as c:
        got = {j: c.get(f"/v1/jobs/{j}", headers=ADMIN).json() for j, _ in rows}
    assert got["stop-committed"]["state"] == "committed" and got["stop-committed"]["generation"]
    assert got["stop-deleted"]["state"] == "committed"
    assert got["stop-lost"]["state"] == "failed" and got["stop-lost"]["error"]["code"] == "interrupted"
    assert got["stop-reindex"]["state"] == "failed" and "safe to run again" in got["stop-reindex"]["error"]["message"]


def test_openapi_documents_202_429_and_the_key(home):
    with client_for(home) as c:
        paths = c.get("/openapi.json").json()["paths"]
    for path, method in (("/v1/documents", "post"), ("/v1/documents/{doc_id}", "delete"), ("/v1/reindex", "post")):
        op = paths[path][method]
        assert {"202", "429"} <= set(op["responses"]), (path, op["responses"].keys())
        assert any(p["name"] == "Idempotency-Key" and p["in"] == "header" for p in op["parameters"])


def test_concurrent_retries_from_threads_share_one_job(home):
    with client_for(home, write_sync_max_chars=10) as c:
        out: list[str] = []

        def send() -> None:
            r = c.post("/v1/documents", json=doc("kiln/race.txt"), headers={**ADMIN, "Idempotency-Key": "race-1"})
            out.append(r.json()["id"])

        threads = [threading.Thread(target=send) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(set(out)) == 1 and wait_job(c, out[0])["state"] == "committed"


def test_the_timeout_middleware_answers_202_for_a_queued_write():
    """Should a write's own wait overrun the request timeout, the middleware answers its job, not 504."""
    import asyncio

    from starlette.applications import Starlette
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from server.metrics import Metrics
    from server.middleware import ACCEPTED, ServerMiddleware

    async def slow_write(request):
        request.scope[ACCEPTED] = lambda: ({"id": "j1", "state": "running"}, "/v1/jobs/j1")
        await asyncio.sleep(5)
        return JSONResponse({})

    async def slow_read(_request):
        await asyncio.sleep(5)
        return JSONResponse({})

    app = Starlette(routes=[Route("/w", slow_write, methods=["POST"]), Route("/r", slow_read)])
    app.add_middleware(ServerMiddleware, metrics=Metrics(), max_body=2**20, timeout_s=0.3)
    with TestClient(app) as c:
        w = c.post("/w")
        assert w.status_code == 202 and w.json()["id"] == "j1" and w.headers["location"] == "/v1/jobs/j1"
        assert c.get("/r").status_code == 504
