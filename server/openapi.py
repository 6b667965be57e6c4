"""The OpenAPI document, completed with the statuses every route can answer that no route declares
itself: those of the middleware (400 malformed request, 413 body too large, 504 no response in time),
of the auth check (401, 403) and of request validation (422).

Each is added from a fact about the operation (it has a body, it needs a scope, it takes
parameters), so a new route is documented the same way without listing anything by hand.
"""

from __future__ import annotations

import re
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from server.deps import ScopeTable, required_scope

ERROR_REF = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}}
WHY = {
    400: "Malformed request: invalid JSON, or a bad Content-Length.",
    401: "No API key, or an unknown one.",
    403: "The API key lacks the scope this operation needs.",
    413: "Request body over server.max_body_mb.",
    422: "Invalid input: the error names the field.",
    504: "No response within server.request_timeout_s.",
}


def statuses_for(has_body: bool, has_params: bool, needs_scope: bool) -> list[int]:
    """The statuses an operation can answer besides its own (pure: the rules above)."""
    out = [400, 413] if has_body else []
    if has_body or has_params:
        out.append(422)
    if needs_scope:
        out += [401, 403]
    return sorted(out + [504])


def complete_openapi(app: FastAPI, scopes: ScopeTable) -> dict[str, Any]:
    """FastAPI's document for `app` with the statuses of `statuses_for` added to every operation."""
    if app.openapi_schema:
        return app.openapi_schema
    schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
    for path, item in schema.get("paths", {}).items():
        for method, op in item.items():
            if not isinstance(op, dict) or "responses" not in op:
                continue
            # a concrete path for the route's pattern: every {param} becomes "x"
            probe = "".join(part if not part.startswith("{") else "x" for part in _split_params(path))
            needs_scope = required_scope(scopes, method.upper(), probe) is not None
            extra = statuses_for("requestBody" in op, bool(op.get("parameters")), needs_scope)
            for status in extra:
                op["responses"].setdefault(str(status), {"description": WHY[status], "content": ERROR_REF})
    app.openapi_schema = schema
    return schema


def _split_params(path: str) -> list[str]:
    return [p for p in re.split(r"(\{[^}]+\})", path) if p]


def install_openapi(app: FastAPI, scopes: ScopeTable) -> None:
    app.openapi = lambda: complete_openapi(app, scopes)  # type: ignore[method-assign]
