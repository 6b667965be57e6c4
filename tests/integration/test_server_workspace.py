"""GET /v1/workspace on the small real workspace of the server tests: counts, models, GGUF types and
example queries taken from the corpus (titles, informative entities)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from server.app import create_app
sys.path.insert(0, str(Path(__file__).parent))
from server_support import ADMIN, READ, base_workspace, copy_workspace, settings_for  # noqa: E402,F401


@pytest.fixture(scope="module")
def home(base_workspace, tmp_path_factory) -> Path:  # noqa: F811
    return copy_workspace(base_workspace, tmp_path_factory.mktemp("workspace") / "ws")


@pytest.fixture(scope="module")
def client(home):
    with TestClient(create_app(settings_for(home)), raise_server_exceptions=False) as c:
        yield c


def test_workspace_summary_says_what_is_served_and_what_to_try(client):
    r = client.get("/v1/workspace", headers=READ)
    assert r.status_code == 200, r.text
    w = r.json()
    assert w["documents"] == 5 and w["chunks"] > 5 and w["index"]
    assert w["embedder"].startswith("all-MiniLM-L6-v2@") and w["embedding_dim"] == 384 and w["ner"]
    g = w["generator"]
    assert g["loaded"] and g["model"] and [t["type"] for t in g["gguf_types"]] == ["q8_0"]
    assert g["lm_args"]["n_layers"] == 1 and g["source"]
    e = w["entities"]
    assert 0 < e["informative"] <= e["distinct"] <= e["mentions"] and sum(e["labels"].values()) == e["informative"]
    titles = [x["query"] for x in w["examples"] if x["kind"] == "title"]
    entities = [x for x in w["examples"] if x["kind"] == "entity"]
    assert titles and entities and w["problems"] == []
    listed = {(x["label"], x["value"]) for x in client.get("/v1/entities", params={"top": 1000}, headers=READ).json()["entities"]}
    assert all(tuple(x["filter"].split(":", 1)) in listed for x in entities)  # examples are shown facets
    hits = client.post("/v1/search", json={"query": entities[0]["query"], "filters": {"entities": [entities[0]["filter"]]}},
                       headers=READ).json()["hits"]
    assert hits  # every entity example finds something


def test_workspace_summary_needs_a_key_and_takes_no_parameters(client):
    assert client.get("/v1/workspace").status_code == 401
    assert client.get("/v1/workspace", params={"x": 1}, headers=READ).status_code == 422
    assert client.get("/v1/workspace", headers=ADMIN).status_code == 200


def test_the_page_asks_for_the_summary(client):
    assert 'id="workspace"' in client.get("/").text
    assert "/v1/workspace" in client.get("/static/app.js").text
