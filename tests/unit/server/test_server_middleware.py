"""The ASGI middleware on a tiny app: body limit with and without Content-Length, timeout, metrics."""

from __future__ import annotations

import asyncio

from fastapi import FastAPI, Request
from fastapi.testclient import TestClient

from server.errors import install_error_handlers
from server.metrics import Metrics
from server.middleware import ServerMiddleware


def _app(metrics: Metrics, max_body: int = 100, timeout_s: float = 5.0) -> FastAPI:
    app = FastAPI()
    install_error_handlers(app)
    app.add_middleware(ServerMiddleware, metrics=metrics, max_body=max_body, timeout_s=timeout_s)

    @app.post("/echo")
    async def echo(request: Request) -> dict[str, int]:
        return {"bytes": len(await request.body())}

    @app.get("/slow")
    async def slow() -> dict[str, bool]:
        await asyncio.sleep(1.0)
        return {"ok": True}

    return app


def test_small_bodies_pass_and_are_counted_by_route():
    m = Metrics()
    c = TestClient(_app(m))
    assert c.post("/echo", content=b"x" * 100).json() == {"bytes": 100}
    assert c.get("/nowhere").status_code == 404
    text = m.render().decode()
    assert 'ragkiln_http_requests_total{method="POST",route="/echo",status="200"} 1.0' in text
    assert 'route="unmatched",status="404"' in text


def test_declared_and_streamed_oversize_bodies_are_413_json():
    c = TestClient(_app(Metrics()), raise_server_exceptions=False)
    r = c.post("/echo", content=b"x" * 101)
    assert r.status_code == 413 and r.json()["error"]["code"] == "payload_too_large"

    def chunks():  # no Content-Length: counted while it streams in
        for _ in range(5):
            yield b"y" * 50

    r = c.post("/echo", content=chunks())
    assert r.status_code == 413 and r.json()["error"]["code"] == "payload_too_large"
    bad = c.post("/echo", content=b"1", headers={"content-length": "abc"})
    assert bad.status_code == 400


def test_no_response_within_the_timeout_is_504_json():
    c = TestClient(_app(Metrics(), timeout_s=0.05), raise_server_exceptions=False)
    r = c.get("/slow")
    assert r.status_code == 504 and r.json()["error"]["code"] == "timeout"
