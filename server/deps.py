"""FastAPI dependencies: the loaded state and the API-key scope checks."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.routing import APIRoute

from server.state import ServerState


def get_state(request: Request) -> ServerState:
    return request.app.state.ragkiln


def require(scope: str) -> Callable[..., ServerState]:
    """A dependency that checks the Bearer key has `scope` and returns the state."""

    def check(request: Request) -> ServerState:
        state: ServerState = request.app.state.ragkiln
        state.keys.check(request.headers.get("authorization"), scope)
        return state

    check.__name__ = f"require_{scope}"
    check.scope = scope  # type: ignore[attr-defined]  # read by scope_of (OpenAPI, auth before the body)
    return check


ScopeTable = list[tuple[frozenset[str], "re.Pattern[str]", str]]


def scope_table(routers: Sequence[APIRouter]) -> ScopeTable:
    """(methods, path pattern, scope) of every route that needs an API key, from its dependencies:
    the one place scopes are declared also tells the middleware (auth before the body is read) and
    the OpenAPI document (401/403 documented)."""
    table: ScopeTable = []
    for router in routers:
        for route in router.routes:
            if isinstance(route, APIRoute) and (scope := scope_of(route.dependant)) is not None:
                table.append((frozenset(route.methods), route.path_regex, scope))
    return table


def required_scope(table: ScopeTable, method: str, path: str) -> str | None:
    for methods, pattern, scope in table:
        if method in methods and pattern.match(path):
            return scope
    return None


def scope_of(dependant: Any) -> str | None:
    """The API-key scope a route requires (its `require(...)` dependency, at any depth), or None."""
    for dep in dependant.dependencies:
        scope = getattr(dep.call, "scope", None) or scope_of(dep)
        if scope:
            return scope
    return None


READ = Depends(require("read"))
ADMIN = Depends(require("admin"))


def only_query(*allowed: str) -> Callable[[Request], None]:
    """Unknown or repeated query parameters are errors (422 naming the parameter), like unknown body fields."""
    allowed_set = set(allowed)

    def check(request: Request) -> None:
        from fastapi.exceptions import RequestValidationError

        for name in request.query_params.keys():
            if name not in allowed_set:
                raise RequestValidationError([{"loc": ("query", name), "msg": "unknown field",
                                               "type": "extra_forbidden"}])
            if len(request.query_params.getlist(name)) > 1:
                raise RequestValidationError([{"loc": ("query", name), "msg": "given more than once",
                                               "type": "value_error"}])

    return check
