"""The one table from domain errors to HTTP status codes, and the JSON error body every failure gets.

Every error response is `{"error": {"code", "type", "message"[, "field"]}}` (`type` mirrors `code`
so OpenAI clients read it too). Nothing ever returns a stack trace: unexpected exceptions are
logged with an id and answered with a 500 naming only that id.
"""

from __future__ import annotations

import json
import logging
import uuid
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from common import errors

log = logging.getLogger(__name__)

HTTP_STATUS: dict[type[errors.RagkilnError], int] = {
    errors.InvalidInput: 400,
    errors.Unauthorized: 401,
    errors.Forbidden: 403,
    errors.NotFound: 404,
    errors.Conflict: 409,
    errors.ManifestMismatch: 409,
    errors.ContextOverflow: 400,
    errors.Busy: 429,
    errors.ArtifactCorrupt: 500,
    errors.ProcessDied: 500,
    errors.ModelUnavailable: 503,
}

_HTTP_CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found", 405: "method_not_allowed",
               408: "timeout", 413: "payload_too_large", 415: "unsupported_media_type", 422: "invalid_request",
               429: "busy", 503: "unavailable", 504: "timeout"}


def status_for(exc: errors.RagkilnError) -> int:
    for cls in type(exc).__mro__:
        if cls in HTTP_STATUS:
            return HTTP_STATUS[cls]
    return 500


def error_body(code: str, message: str, field: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"code": code, "type": code, "message": message}
    if field is not None:
        body["field"] = field
    return {"error": body}


def error_response(status: int, code: str, message: str, field: str | None = None,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(error_body(code, message, field), status_code=status, headers=headers)


def domain_error_response(exc: errors.RagkilnError) -> JSONResponse:
    status = status_for(exc)
    headers: dict[str, str] = {}
    if isinstance(exc, errors.Busy):
        headers["Retry-After"] = str(max(1, round(exc.retry_after_s)))
    if isinstance(exc, errors.Unauthorized):
        headers["WWW-Authenticate"] = "Bearer"
    message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return error_response(status, exc.code, message, headers=headers)


def sse_error(exc: BaseException) -> str:
    """An error raised after a stream started: one `error` event (the status line is already sent)."""
    if isinstance(exc, errors.RagkilnError):
        body = error_body(exc.code, str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
    else:
        ref = uuid.uuid4().hex[:12]
        log.error("stream failed (ref %s)", ref, exc_info=exc)
        body = error_body("internal", f"internal error (ref {ref})")
    return f"event: error\ndata: {json.dumps(body)}\n\n"


def validation_field(err: dict[str, Any]) -> str:
    """`body.filters.entities.0` -> `filters.entities.0`: the field as the client wrote it."""
    loc = [str(p) for p in err.get("loc", ())]
    if loc and loc[0] in ("body", "query", "path", "header", "form"):
        loc = loc[1:]
    return ".".join(loc) or "body"


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(errors.RagkilnError)
    async def _domain(_req: Request, exc: errors.RagkilnError) -> JSONResponse:
        return domain_error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation(_req: Request, exc: RequestValidationError) -> JSONResponse:
        errs = exc.errors()
        first = errs[0] if errs else {}
        field = validation_field(first)
        msg = str(first.get("msg", "invalid request"))
        if first.get("type") == "json_invalid":
            return error_response(400, "invalid_json", f"request body is not valid JSON: {msg}", field="body")
        if first.get("type") == "extra_forbidden":
            msg = "unknown field"
        return error_response(422, "invalid_request", f"{field}: {msg}", field=field)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_req: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _HTTP_CODES.get(exc.status_code, "error")
        detail = exc.detail if isinstance(exc.detail, str) else code.replace("_", " ")
        return error_response(exc.status_code, code, detail, headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _unexpected(_req: Request, exc: Exception) -> JSONResponse:
        ref = uuid.uuid4().hex[:12]
        log.error("unhandled error (ref %s)", ref, exc_info=exc)
        return error_response(500, "internal", f"internal error (ref {ref}); see the server log")
