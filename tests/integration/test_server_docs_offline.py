"""/docs, /redoc and the web page load nothing from another host: every script, style sheet and icon
they reference is served by the app itself (the machine serving may have no internet)."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urljoin, urlparse

import pytest
from fastapi.testclient import TestClient

from common.settings import load_settings
from server.app import create_app

BASE = "http://testserver"
ATTR = re.compile(r"""\b(?:src|href|spec-url)\s*=\s*["']([^"']+)["']""", re.I)
CSS_URL = re.compile(r"""url\(\s*["']?([^"')]+)""")


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory):
    home = tmp_path_factory.mktemp("docs") / "ws"  # an empty workspace: the pages need no index
    with TestClient(create_app(load_settings({"home": home}), load_models=False), base_url=BASE) as c:
        yield c


def referenced(client: TestClient, page: str) -> list[str]:
    r = client.get(page)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html"), r.text[:200]
    urls = ATTR.findall(r.text)
    assert urls, f"{page} references no asset"
    return [urljoin(BASE + page, u) for u in urls]


def assert_same_host(urls: list[str]) -> None:
    for u in urls:
        p = urlparse(u)
        assert p.scheme in ("http", "https") and p.netloc == urlparse(BASE).netloc, f"off-host reference {u}"


@pytest.mark.parametrize("page", ["/docs", "/redoc", "/"])
def test_pages_reference_only_same_host_assets_that_load(client: TestClient, page: str) -> None:
    urls = referenced(client, page)
    assert_same_host(urls)
    for u in urls:
        r = client.get(u)
        assert r.status_code == 200, f"{page} -> {u}: {r.status_code}"
        if u.endswith(".css"):  # fonts and images a style sheet pulls in are same-host too
            assert_same_host([urljoin(u, x) for x in CSS_URL.findall(r.text) if not x.startswith("data:")])


def test_docs_pages_point_at_the_apps_openapi_and_oauth_redirect(client: TestClient) -> None:
    docs = client.get("/docs").text
    assert "url: '/openapi.json'" in docs and '"validatorUrl": null' in docs
    assert client.get("/docs/oauth2-redirect").status_code == 200
    assert 'spec-url="/openapi.json"' in client.get("/redoc").text
    assert "fonts.googleapis.com" not in client.get("/redoc").text


def test_the_bundled_swagger_ui_reads_the_openapi_version_fastapi_writes(client: TestClient) -> None:
    """FastAPI writes OpenAPI 3.1, which Swagger UI renders only from version 5 on (4.x shows
    "Unable to render this definition"): the bundle must know 3.1 documents."""
    assert client.get("/openapi.json").json()["openapi"].startswith("3.1")
    bundle = client.get("/static-docs/swagger-ui-bundle.js").text
    assert "isOAS31" in bundle


def test_the_web_page_sources_name_no_other_host() -> None:
    static = Path(__file__).resolve().parents[2] / "server" / "static"
    for f in static.iterdir():
        text = f.read_text(encoding="utf-8")
        assert not re.search(r"(?:https?:)?//[a-z0-9.-]+\.[a-z]{2,}", text, re.I), f"{f.name} names another host"
