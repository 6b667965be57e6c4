"""The FastAPI app factory. Its lifespan loads the index, the NER pipeline and the generator once.

`create_app(settings)` is what tests and `ragkiln serve` use; `app_from_env()` is the factory uvicorn
workers import when `--workers` > 1 (the settings travel as JSON in `RAGKILN_SERVE_SETTINGS_JSON`).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

from common.settings import Settings
from server.errors import install_error_handlers
from server.metrics import Metrics
from server.middleware import ServerMiddleware
from server.querying import MetadataIndex
from server.routes import answer, documents, health, openai, report, search
from server.auth import KeyRing
from server.state import load_state, without_keys

log = logging.getLogger(__name__)
STATIC = Path(__file__).parent / "static"
SETTINGS_ENV = "RAGKILN_SERVE_SETTINGS_JSON"


class _MetricsProxy(Metrics):
    """The middleware is built before the lifespan runs; it reports into the state's metrics once loaded."""

    def __init__(self, app: FastAPI) -> None:  # noqa: D107 - no registry of its own
        self._app = app

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        state = getattr(self._app.state, "ragkiln", None)
        if state is not None:
            state.metrics.observe_request(route, method, status, seconds)


def create_app(settings: Settings, load_models: bool = True) -> FastAPI:
    keys = KeyRing.parse(settings.server.api_keys)  # a bad key spec fails here, before serving
    settings = without_keys(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state = load_state(settings, keys, load_models=load_models)
        if not state.keys.enabled:
            log.warning("no API keys configured: every request is allowed; serve on loopback only")
        app.state.ragkiln = state
        app.state.metadata_index = MetadataIndex()
        try:
            yield
        finally:
            state.close()

    app = FastAPI(
        title="ragkiln", version="0.1.0", lifespan=lifespan,
        description="Semantic search, grounded answers with citations, document management and "
                    "OpenAI-compatible endpoints over a ragkiln workspace. Send `Authorization: Bearer KEY` "
                    "when keys are configured (scopes: read, admin).",
    )
    install_error_handlers(app)
    app.add_middleware(ServerMiddleware, metrics=_MetricsProxy(app), max_body=int(settings.server.max_body_mb * 2**20),
                       timeout_s=settings.server.request_timeout_s)
    for r in (search.router, answer.router, documents.router, openai.router, health.router, report.router):
        app.include_router(r)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    return app


def app_from_env() -> FastAPI:
    """Factory for uvicorn worker processes (`ragkiln serve --workers N`)."""
    raw = os.environ.get(SETTINGS_ENV)
    if not raw:
        raise RuntimeError(f"{SETTINGS_ENV} is not set; start the server with `ragkiln serve`")
    return create_app(Settings.model_validate(json.loads(raw)))
