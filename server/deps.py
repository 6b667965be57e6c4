"""FastAPI dependencies: the loaded state and the API-key scope checks."""

from __future__ import annotations

from collections.abc import Callable

from fastapi import Depends, Request

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
    return check


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
