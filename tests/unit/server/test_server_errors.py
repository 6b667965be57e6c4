"""The one error table: every domain error has a status; bodies are JSON and never a traceback."""

from __future__ import annotations

import json

from common import errors
from server.errors import HTTP_STATUS, domain_error_response, sse_error, status_for, validation_field


def _subclasses(cls):
    for sub in cls.__subclasses__():
        yield sub
        yield from _subclasses(sub)


def test_every_domain_error_maps_to_a_4xx_or_5xx():
    for cls in _subclasses(errors.RagkilnError):
        assert cls in HTTP_STATUS or any(b in HTTP_STATUS for b in cls.__mro__[1:]), cls
    assert status_for(errors.NotFound("x")) == 404
    assert status_for(errors.Busy("x")) == 429
    assert status_for(errors.ModelUnavailable("x")) == 503
    assert status_for(errors.RagkilnError("x")) == 500


def test_busy_says_when_to_retry_and_unauthorized_asks_for_bearer():
    r = domain_error_response(errors.Busy("queue full", retry_after_s=2.4))
    assert r.status_code == 429 and r.headers["retry-after"] == "2"
    assert json.loads(r.body)["error"]["code"] == "busy"
    r = domain_error_response(errors.Unauthorized("no key"))
    assert r.headers["www-authenticate"] == "Bearer"


def test_unexpected_errors_in_a_stream_show_only_a_reference():
    text = sse_error(ValueError("secret internals /etc/x"))
    assert text.startswith("event: error\n") and "secret" not in text and "internal error (ref" in text


def test_validation_field_drops_the_location_prefix():
    assert validation_field({"loc": ("body", "filters", "entities", 0)}) == "filters.entities.0"
    assert validation_field({"loc": ("query", "top")}) == "top"
    assert validation_field({"loc": ()}) == "body"
