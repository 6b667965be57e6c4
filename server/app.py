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

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import FileResponse, HTMLResponse
from fastapi.staticfiles import StaticFiles

from common.settings import Settings
from server.errors import install_error_handlers
from server.metrics import Metrics
from server.middleware import ServerMiddleware
from server.openapi import install_openapi
from server.querying import MetadataIndex
from server.routes import answer, documents, health, openai, report, search, workspace
from server.auth import KeyRing
from server.deps import required_scope, scope_table
from server.state import load_state, without_keys
from server.workspace_info import WorkspaceInfo

log = logging.getLogger(__name__)
STATIC = Path(__file__).parent / "static"
DOCS_ASSETS_URL = "/static-docs"
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
        app.state.workspace_info = WorkspaceInfo()
        try:
            yield
        finally:
            state.close()

    app = FastAPI(
        title="ragkiln", version="0.1.0", lifespan=lifespan, docs_url=None, redoc_url=None,
        description="Semantic search, grounded answers with citations, document management and "
                    "OpenAI-compatible endpoints over a ragkiln workspace. Send `Authorization: Bearer KEY` "
                    "when keys are configured (scopes: read, admin).",
    )
    routers = (search.router, answer.router, documents.router, openai.router, health.router, report.router,
               workspace.router)
    scopes = scope_table(routers)

    def authorize(method: str, path: str, header: str | None) -> None:
        state = getattr(app.state, "ragkiln", None)
        scope = required_scope(scopes, method, path)
        if state is not None and scope is not None:
            state.keys.check(header, scope)

    install_error_handlers(app)
    app.add_middleware(ServerMiddleware, metrics=_MetricsProxy(app), max_body=int(settings.server.max_body_mb * 2**20),
                       timeout_s=settings.server.request_timeout_s, authorize=authorize)
    for r in routers:
        app.include_router(r)
    install_openapi(app, scopes)
    _offline_docs(app)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    return app


def docs_assets() -> Path:
    """Swagger UI 5 (OpenAPI 3.1, which FastAPI emits; Swagger UI 4 refuses it) and ReDoc, from the
    `fastapi-offline` wheel: only its asset folder is used, the pages are FastAPI's own."""
    from importlib.resources import files

    return Path(str(files("fastapi_offline") / "static"))


def _offline_docs(app: FastAPI) -> None:
    """/docs and /redoc with every script, style sheet and icon served by this app: nothing from a CDN,
    so the pages work on a machine without internet (FastAPI's documented "self-hosting" recipe)."""
    app.mount(DOCS_ASSETS_URL, StaticFiles(directory=docs_assets()), name="static-docs")
    oauth2_url = app.swagger_ui_oauth2_redirect_url or "/docs/oauth2-redirect"

    @app.get("/docs", include_in_schema=False)
    def swagger_ui(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "").rstrip("/")
        return get_swagger_ui_html(
            openapi_url=f"{root}{app.openapi_url}", title=f"{app.title} - Swagger UI",
            oauth2_redirect_url=f"{root}{oauth2_url}",
            swagger_js_url=f"{root}{DOCS_ASSETS_URL}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{DOCS_ASSETS_URL}/swagger-ui.css",
            swagger_favicon_url=f"{root}{DOCS_ASSETS_URL}/favicon.png",
            # no badge image from validator.swagger.io
            swagger_ui_parameters={"validatorUrl": None},
        )

    @app.get(oauth2_url, include_in_schema=False)
    def swagger_ui_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    @app.get("/redoc", include_in_schema=False)
    def redoc(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "").rstrip("/")
        return get_redoc_html(
            openapi_url=f"{root}{app.openapi_url}", title=f"{app.title} - ReDoc",
            redoc_js_url=f"{root}{DOCS_ASSETS_URL}/redoc.standalone.js",
            redoc_favicon_url=f"{root}{DOCS_ASSETS_URL}/favicon.png", with_google_fonts=False,
        )


def app_from_env() -> FastAPI:
    """Factory for uvicorn worker processes (`ragkiln serve --workers N`)."""
    raw = os.environ.get(SETTINGS_ENV)
    if not raw:
        raise RuntimeError(f"{SETTINGS_ENV} is not set; start the server with `ragkiln serve`")
    return create_app(Settings.model_validate(json.loads(raw)))
