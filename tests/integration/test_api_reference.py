"""docs/api.md's endpoint table is the app's OpenAPI document rendered."""

from __future__ import annotations

from pathlib import Path

import pytest

from server.api_reference import END, START, current_openapi, render_endpoints, splice

DOC = Path(__file__).resolve().parents[2] / "docs" / "api.md"


def test_the_committed_endpoint_table_matches_the_app():
    page = DOC.read_text(encoding="utf-8")
    assert splice(page, render_endpoints(current_openapi())) == page, (
        "docs/api.md is stale: run `python -m server.api_reference docs/api.md`")


def test_every_operation_is_listed_once():
    spec = current_openapi()
    table = render_endpoints(spec)
    for path, item in spec["paths"].items():
        for method in item:
            assert f"| {method.upper()} | `{path}` |" in table


def test_splice_refuses_a_page_without_markers():
    with pytest.raises(ValueError):
        splice("no markers here", START + END)
