"""Every route and its errors through FastAPI's TestClient on a small real workspace
(all-MiniLM-L6-v2, spaCy NER, a tiny random Llama served by llama.cpp)."""

from __future__ import annotations

import base64
import json
import sys
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from server.app import create_app
from reader.answer import NO_ANSWER
sys.path.insert(0, str(Path(__file__).parent))
from server_support import ADMIN, READ, base_workspace, copy_workspace, parse_sse, settings_for  # noqa: F401

QUESTION = "How many volunteers did the vaccine trial enroll?"


@pytest.fixture(scope="module")
def home(base_workspace, tmp_path_factory) -> Path:  # noqa: F811
    return copy_workspace(base_workspace, tmp_path_factory.mktemp("api") / "ws")


@pytest.fixture(scope="module")
def client(home):
    with TestClient(create_app(settings_for(home)), raise_server_exceptions=False) as c:
        yield c



def _error(r, status: int, code: str | None = None) -> dict:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    err = r.json()["error"]
    assert err["message"] and "Traceback" not in r.text
    if code:
        assert err["code"] == code
    return err


# ---- health -------------------------------------------------------------------------------------
def test_health_and_readiness(client):
    assert client.get("/healthz").json() == {"status": "ok"}
    r = client.get("/readyz")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["ready"] and body["index"]["chunks"] > 0 and body["generator"]["model"].endswith(".gguf")
    assert body["ner"] and body["problems"] == []
    assert body["need"] == ["search", "answers"]  # a generator is loaded: this deployment serves both
    assert all(c["ready"] for c in body["capabilities"].values())


def test_openapi_docs_and_the_page(client):
    assert client.get("/docs").status_code == 200
    paths = client.get("/openapi.json").json()["paths"]
    for p in ("/v1/search", "/v1/answer", "/v1/documents", "/v1/reindex", "/v1/jobs/{job_id}", "/v1/entities",
              "/v1/chat/completions", "/v1/embeddings", "/v1/models", "/healthz", "/readyz", "/metrics"):
        assert p in paths
    page = client.get("/")
    assert page.status_code == 200 and "ragkiln" in page.text


# ---- search -------------------------------------------------------------------------------------
def test_search_returns_hits_with_offsets_ranks_entities_and_facets(client, home):
    r = client.post("/v1/search", json={"query": "photovoltaic plant electricity", "k": 3}, headers=READ)
    assert r.status_code == 200, r.text
    body = r.json()
    top = body["hits"][0]
    assert top["doc_id"] == "solar.txt" and set(top["ranks"]) == {"dense", "bm25"}
    doc = (Path(__file__).parent / "server_corpus/solar.txt").read_text()
    assert doc[top["start"]:top["end"]] == top["text"]
    assert any(e["label"] == "GPE" and e["norm"] == "spain" for e in top["entities"])
    assert "GPE" in body["facets"] and body["facets"]["GPE"]["count"] >= 1
    assert len(body["hits"]) == 3 and body["took_ms"] > 0
    assert all(h["also_in"] == [] for h in body["hits"])  # no document here repeats another's passage


@pytest.mark.parametrize("mode", ["dense", "bm25"])
def test_single_retriever_modes(client, mode):
    r = client.post("/v1/search", json={"query": "coffee beans Andes", "k": 2, "mode": mode}, headers=READ)
    hits = r.json()["hits"]
    assert r.status_code == 200 and hits[0]["doc_id"] == "coffee.txt" and set(hits[0]["ranks"]) == {mode}


def test_entity_filter_restricts_retrieval(client):
    r = client.post("/v1/search", json={"query": "electricity", "k": 5,
                                        "filters": {"entities": ["GPE:colombia"]}}, headers=READ)
    assert r.status_code == 200, r.text
    hits = r.json()["hits"]
    assert hits and {h["doc_id"] for h in hits} == {"coffee.txt"}
    none = client.post("/v1/search", json={"query": "x", "filters": {"entities": ["NOSUCHLABEL"]}}, headers=READ)
    assert none.status_code == 200 and none.json()["hits"] == []


def test_bad_entity_filter_is_a_422_naming_it(client):
    for spec in ("ORG:", "ORG X", ":pfizer"):
        err = _error(client.post("/v1/search", json={"query": "x", "filters": {"entities": [spec]}}, headers=READ),
                     422, "invalid_request")
        assert err["field"].startswith("filters.entities")


@pytest.mark.parametrize("body,field", [
    ({"query": "x", "k": 0}, "k"),
    ({"query": "x", "k": "many"}, "k"),
    ({"query": ""}, "query"),
    ({"query": "x", "mode": "fuzzy"}, "mode"),
    ({"query": "x", "colour": "red"}, "colour"),
    ({"query": "x", "filters": {"entities": "ORG"}}, "filters.entities"),
    ({}, "query"),
])
def test_validation_errors_are_422_naming_the_field(client, body, field):
    err = _error(client.post("/v1/search", json=body, headers=READ), 422, "invalid_request")
    assert err["field"] == field and field in err["message"]


@pytest.mark.parametrize("path,body,field", [
    ("/v1/search", {"query": "x", "k": "5"}, "k"),  # no string-to-int coercion
    ("/v1/search", {"query": "x", "k": True}, "k"),  # nor bool-to-int
    ("/v1/search", {"query": "x", "k": 5.5}, "k"),  # 5.0 is JSON Schema's integer 5, 5.5 is not
    ("/v1/answer", {"question": "x", "stream": 0}, "stream"),  # nor int-to-bool
    ("/v1/answer", {"question": "x", "temperature": float("inf")}, "temperature"),
    ("/v1/search", {"query": "x", "filters": {"metadata": {"score": float("nan")}}}, "filters.metadata.score"),
])
def test_requests_are_strict_and_refuse_non_finite_numbers(client, path, body, field):
    raw = json.dumps(body).encode()  # json.dumps writes NaN / Infinity, as some clients do
    err = _error(client.post(path, content=raw, headers={**READ, "content-type": "application/json"}), 422,
                 "invalid_request")
    assert err["field"].startswith(field), err


def test_non_finite_metadata_is_refused_and_nothing_is_stored(client):
    body = {"documents": [{"id": "nan-doc", "text": "A document with a bad score.", "metadata": {"score": float("nan")}}]}
    raw = json.dumps(body).encode()
    _error(client.post("/v1/documents", content=raw, headers={**ADMIN, "content-type": "application/json"}), 422,
           "invalid_request")
    _error(client.get("/v1/documents/nan-doc", headers=ADMIN), 404)


def test_auth_is_checked_before_the_body_is_read(client, home):
    bad_json = {"content-type": "application/json"}
    # without a key, a malformed or huge body says nothing but 401
    _error(client.post("/v1/search", content=b"{not json", headers=bad_json), 401, "unauthorized")
    _error(client.post("/v1/documents", content=b"x" * 10, headers={**bad_json, "content-length": str(10**12)}),
           401, "unauthorized")
    # a read key on an admin route: 403 before the body is judged
    _error(client.post("/v1/reindex", content=b"{not json", headers={**READ, **bad_json}), 403, "forbidden")
    assert client.get("/healthz").status_code == 200  # open routes stay open


def test_bad_json_and_huge_bodies(client, home):
    _error(client.post("/v1/search", content=b"{not json", headers={**READ, "content-type": "application/json"}),
           400, "invalid_json")
    with TestClient(create_app(settings_for(home, max_body_mb=0.001)), raise_server_exceptions=False) as small:
        _error(small.post("/v1/search", json={"query": "x" * 5000}, headers=READ), 413, "payload_too_large")


def test_raw_keys_are_not_kept_in_the_app_state(client):
    from server_support import ADMIN_KEY, READ_KEY

    state = client.app.state.ragkiln
    assert state.settings.server.api_keys == "" and state.keys.enabled
    assert ADMIN_KEY not in repr(state.keys) and READ_KEY not in repr(state.settings)


def test_keys_are_required_and_scoped(client):
    _error(client.post("/v1/search", json={"query": "x"}), 401, "unauthorized")
    r = client.post("/v1/search", json={"query": "x"}, headers={"Authorization": "Bearer not-a-key-at-all"})
    assert _error(r, 401) and r.headers["www-authenticate"] == "Bearer"
    _error(client.post("/v1/documents", json={"documents": [{"id": "a", "text": "b"}]}, headers=READ), 403, "forbidden")
    _error(client.post("/v1/reindex", headers=READ), 403)


def test_unknown_routes_and_methods_are_json(client):
    _error(client.get("/v1/nothing-here"), 404, "not_found")
    _error(client.get("/v1/search", headers=READ), 405, "method_not_allowed")


def test_slow_requests_time_out_with_504(home):
    with TestClient(create_app(settings_for(home, request_timeout_s=0.0001)), raise_server_exceptions=False) as c:
        _error(c.post("/v1/search", json={"query": "coffee"}, headers=READ), 504, "timeout")


# ---- answer -------------------------------------------------------------------------------------
def test_answer_has_citations_passages_and_timings(client):
    r = client.post("/v1/answer", json={"question": QUESTION, "k": 3, "max_tokens": 12}, headers=READ)
    assert r.status_code == 200, r.text
    a = r.json()
    assert a["grounded"] and a["model"] == "tiny-lm-q8_0" and a["usage"]["completion_tokens"] >= 1
    assert a["citations"] and a["citations"][0]["doc_id"] == "vaccine.md"
    c = a["citations"][0]
    # Offsets point into the stored text (Markdown rendered to plain text), which citations quote.
    doc = client.get("/v1/documents/vaccine.md", headers=ADMIN).json()["text"]
    assert doc[c["start"]:c["end"]] == c["quote"]
    assert "#" not in doc and doc.startswith("Vaccine trials\n\nPfizer and BioNTech")
    assert any(p["in_prompt"] and p["doc_id"] == "vaccine.md" for p in a["passages"])
    assert a["timings"]["retrieval_ms"] > 0 and a["timings"]["first_token_ms"] is not None


def test_answers_are_spans_of_the_passages_unless_asked_otherwise(client):
    body = {"question": QUESTION, "k": 3, "max_tokens": 12}
    for extractive in (None, True):  # the server's default is extractive
        a = client.post("/v1/answer", json={**body, "extractive": extractive}, headers=READ).json()
        prompt = " ".join(p["text"] for p in a["passages"] if p["in_prompt"])
        assert a["answer"].strip() and a["answer"].strip() in prompt, a["answer"]  # copied, never invented
    free = client.post("/v1/answer", json={**body, "extractive": False}, headers=READ)
    assert free.status_code == 200 and free.json()["usage"]["completion_tokens"] >= 1


def test_streamed_answer_sends_tokens_then_citations_then_done(client):
    with client.stream("POST", "/v1/answer", json={"question": QUESTION, "max_tokens": 6, "stream": True},
                       headers=READ) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        events = parse_sse(r.read().decode())
    names = [e for e, _ in events]
    assert names[-2:] == ["citations", "done"] and set(names[:-2]) == {"token"}
    text = "".join(d["text"] for e, d in events if e == "token")
    assert events[-1][1]["answer"] == text and events[-2][1]["citations"]


def test_a_model_tuned_on_focused_passages_reads_only_their_best_sentences(client):
    from dataclasses import replace

    from trainer.lm.qa import plan_prompt
    from trainer.lm.qa_focus import focus_contexts

    state = client.app.state.ragkiln
    loaded = state.generator
    # as a manifest's training.qa.context_sentences sets it; generated (extractive answers are read, not prompted)
    whole = replace(loaded, context_sentences=0, generative=True)
    body = {"question": QUESTION, "max_tokens": 2, "extractive": False}
    try:
        state.generator = whole
        plain = client.post("/v1/answer", json=body, headers=READ).json()
        state.generator = replace(whole, context_sentences=1)
        focused = client.post("/v1/answer", json=body, headers=READ).json()
    finally:
        state.generator = loaded
    used = [p["text"] for p in focused["passages"] if p["in_prompt"]]
    want = plan_prompt(whole.tokenizer, focus_contexts(used, QUESTION, 1), QUESTION, whole.runtime.n_ctx, 2,
                       whole.passage_len)
    assert used and focused["usage"]["prompt_tokens"] == len(want.ids) < plain["usage"]["prompt_tokens"]
    assert focused["citations"]  # cited from the whole passages, with document offsets


def test_nothing_relevant_says_so_instead_of_answering(client):
    r = client.post("/v1/answer", json={"question": "What is the melting point of tungsten carbide?"}, headers=READ)
    a = r.json()
    assert r.status_code == 200 and a["answer"] == NO_ANSWER and not a["grounded"] and a["citations"] == []
    assert a["usage"]["completion_tokens"] == 0


def test_full_generation_queue_is_429_with_retry_after(client):
    from dataclasses import replace

    state = client.app.state.ragkiln
    loaded = state.generator
    gen = loaded.runtime
    held = []
    try:
        while True:  # take every context and queue slot
            try:
                held.append(gen.stream([1, 5, 6], _params()))
            except Exception:  # noqa: BLE001 - Busy once all are taken
                break
        state.generator = replace(loaded, generative=True)  # a generated answer needs a context
        r = client.post("/v1/answer", json={"question": QUESTION, "extractive": False}, headers=READ)
        _error(r, 429, "busy")
        assert int(r.headers["retry-after"]) >= 1
        read = client.post("/v1/answer", json={"question": QUESTION}, headers=READ)  # the reader needs none
        assert read.status_code == 200 and read.json()["mode"] == "extractive", read.text
    finally:
        state.generator = loaded
        for s in held:
            s.close()
    assert client.post("/v1/answer", json={"question": QUESTION, "max_tokens": 2}, headers=READ).status_code == 200


def _params():
    from quantize.runtime import SamplingParams

    return SamplingParams(max_tokens=1)


def test_without_a_generator_answers_are_503_with_the_fix(home):
    s = settings_for(home, generator="none").model_copy(
        update={"ner": settings_for(home).ner.model_copy(update={"enabled": False})})
    with TestClient(create_app(s), raise_server_exceptions=False) as c:
        err = _error(c.post("/v1/answer", json={"question": QUESTION}, headers=READ), 503, "model_unavailable")
        assert "ragkiln quantize" in err["message"]
        # a search-only deployment is ready for search; asked for answers, it says why not
        ready = c.get("/readyz")
        assert ready.status_code == 200 and ready.json()["need"] == ["search"], ready.text
        assert ready.json()["capabilities"]["answers"]["ready"] is False
        answers = c.get("/readyz", params={"need": "answers"})
        assert answers.status_code == 503 and any("generator" in p for p in answers.json()["problems"])
        _error(c.get("/readyz", params={"need": "everything"}), 422)
        chat = c.post("/v1/chat/completions", json={"model": "x", "messages": [{"role": "user", "content": "hi"}]},
                      headers=READ)
        _error(chat, 503)


def test_a_workspace_without_a_model_answers_with_the_reader(base_workspace, tmp_path):  # noqa: F811
    """After `ingest` alone (no GGUF, server.generator "auto") /v1/answer reads spans: the reader needs no LM."""
    import shutil

    home = copy_workspace(base_workspace, tmp_path / "ws")
    shutil.rmtree(home / "gguf")
    s = settings_for(home).model_copy(update={"ner": settings_for(home).ner.model_copy(update={"enabled": False})})
    with TestClient(create_app(s), raise_server_exceptions=False) as c:
        r = c.post("/v1/answer", json={"question": QUESTION}, headers=READ)
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["mode"] == "extractive" and body["grounded"] and body["model"] is None
        assert body["answer"].strip() and body["citations"][0]["doc_id"] == "vaccine.md"
        assert body["usage"]["completion_tokens"] > 0 and body["usage"]["prompt_tokens"] == 0
        streamed = parse_sse(c.post("/v1/answer", json={"question": QUESTION, "stream": True}, headers=READ).text)
        assert streamed[-1][0] == "done" and streamed[-1][1]["answer"] == body["answer"]
        # free text needs a model: asked for, it is 503 with what to run
        err = _error(c.post("/v1/answer", json={"question": QUESTION, "extractive": False}, headers=READ), 503,
                     "model_unavailable")
        assert "ragkiln quantize" in err["message"] and "extractive" in err["message"]
        _error(c.post("/v1/answer", json={"question": QUESTION, "model": "qwen"}, headers=READ), 503)  # none served
        named = c.post("/v1/answer", json={"question": QUESTION, "model": "ragkiln"}, headers=READ)  # the alias
        assert named.status_code == 200 and named.json()["answer"] == body["answer"], named.text
        # OpenAI clients: the reader is listed under the default's alias, extractive only, and answers chat
        cards = [m for m in c.get("/v1/models", headers=READ).json()["data"] if m["kind"] == "generator"]
        assert [(m["id"], m["generative"]) for m in cards] == [("ragkiln", False)] and cards[0]["gate"]
        msgs = [{"role": "user", "content": QUESTION}]
        chat = c.post("/v1/chat/completions", json={"model": "ragkiln", "messages": msgs}, headers=READ)
        assert chat.status_code == 200, chat.text
        reply = chat.json()
        assert reply["choices"][0]["message"]["content"] == body["answer"] and reply["mode"] == "extractive"
        assert reply["model"] == "ragkiln" and reply["citations"][0]["doc_id"] == "vaccine.md"
        streamed_chat = c.post("/v1/chat/completions", json={"model": "ragkiln", "messages": msgs, "stream": True},
                               headers=READ).text
        assert body["answer"] in streamed_chat and streamed_chat.rstrip().endswith("data: [DONE]")
        _error(c.post("/v1/chat/completions", json={"model": "ragkiln", "messages": msgs, "rag": False},
                      headers=READ), 503, "model_unavailable")  # without passages there is nothing to read
        _error(c.post("/v1/chat/completions", json={"model": "x", "messages": msgs}, headers=READ), 404)
        ready = c.get("/readyz")
        assert ready.status_code == 200 and ready.json()["need"] == ["search", "answers"], ready.text
        assert all(cap["ready"] for cap in ready.json()["capabilities"].values())


# ---- documents and jobs -------------------------------------------------------------------------
def test_document_upsert_get_update_delete(client):
    doc = {"id": "notes/tea.txt", "title": "Tea", "text": "Darjeeling tea grows on the slopes of the Himalayas in India.",
           "metadata": {"lang": "en", "year": 2024}}
    r = client.post("/v1/documents", json={"documents": [doc]}, headers=ADMIN)
    assert r.status_code == 200, r.text
    assert r.json()["ids"] == ["notes/tea.txt"] and r.json()["report"]["added"] == 1
    assert r.json()["report"]["seconds"] > 0  # the write's own time, as ingest and reindex report theirs
    got = client.get("/v1/documents/notes/tea.txt", headers=ADMIN).json()
    assert got["text"] == doc["text"] and got["metadata"] == doc["metadata"] and got["chunks"]
    hits = client.post("/v1/search", json={"query": "Darjeeling tea", "k": 1}, headers=READ).json()["hits"]
    assert hits[0]["doc_id"] == "notes/tea.txt"
    meta = client.post("/v1/search", json={"query": "mountains", "k": 5, "filters": {"metadata": {"year": 2024}}},
                       headers=READ).json()["hits"]
    assert [h["doc_id"] for h in meta] == ["notes/tea.txt"]
    r = client.post("/v1/documents", json={"documents": [{**doc, "text": "Assam tea grows in the lowlands."}]},
                    headers=ADMIN)
    assert r.json()["report"]["changed"] == 1
    r = client.delete("/v1/documents/notes/tea.txt", headers=ADMIN)
    assert r.status_code == 200 and r.json()["report"]["removed"] == 1
    _error(client.get("/v1/documents/notes/tea.txt", headers=ADMIN), 404, "not_found")
    _error(client.delete("/v1/documents/notes/tea.txt", headers=ADMIN), 404)


def test_multipart_upload_is_checked_by_content_and_stays_in_the_workspace(client, home):
    before = client.get("/readyz").json()["index"]["chunks"]
    files = {"file": ("../../outside.txt", b"Kiwi birds live in New Zealand forests.", "application/pdf")}
    r = client.post("/v1/documents", files=files, headers=ADMIN)
    assert r.status_code == 200, r.text
    assert r.json()["ids"] == ["outside.txt"]
    assert not (home.parent / "outside.txt").exists() and not (home.parent.parent / "outside.txt").exists()
    assert list((home / "uploads").iterdir()) == []
    assert client.get("/v1/documents/outside.txt", headers=ADMIN).json()["source"] == "upload:text"
    bad = {"file": ("report.txt", b"\x7fELF\x02\x01\x01\x00\x00\x00binary", "text/plain")}
    _error(client.post("/v1/documents", files=bad, headers=ADMIN), 400, "invalid_input")
    extra = client.post("/v1/documents", files=files, data={"colour": "red"}, headers=ADMIN)
    assert _error(extra, 422)["field"] == "colour"
    assert client.delete("/v1/documents/outside.txt", headers=ADMIN).status_code == 200
    notepad = {"file": ("menu.txt", "Caf\u00e9 menu: cr\u00e8me br\u00fbl\u00e9e.".encode("utf-16"), "text/plain")}
    assert client.post("/v1/documents", files=notepad, headers=ADMIN).status_code == 200  # Windows "Unicode" text
    assert client.get("/v1/documents/menu.txt", headers=ADMIN).json()["text"] == "Caf\u00e9 menu: cr\u00e8me br\u00fbl\u00e9e."
    assert client.delete("/v1/documents/menu.txt", headers=ADMIN).status_code == 200
    assert client.get("/readyz").json()["index"]["chunks"] == before


def test_document_body_errors(client):
    _error(client.post("/v1/documents", content=b"id=1", headers={**ADMIN, "content-type": "text/plain"}), 415)
    _error(client.post("/v1/documents", json={"documents": []}, headers=ADMIN), 422)
    dup = {"documents": [{"id": "a", "text": "x"}, {"id": "a", "text": "y"}]}
    _error(client.post("/v1/documents", json=dup, headers=ADMIN), 400)
    err = _error(client.post("/v1/documents", json={"documents": [{"id": "a\nb", "text": "x"}]}, headers=ADMIN), 422)
    assert err["field"] == "documents.0.id"


def test_reindex_runs_as_a_job(client):
    before = client.get("/readyz").json()["index"]["name"]
    # naming the embedder forces a rebuild (a plain reindex of an unchanged corpus is a no-op)
    r = client.post("/v1/reindex", json={"ner": False, "embedder": "all-MiniLM-L6-v2"}, headers=ADMIN)
    assert r.status_code == 202, r.text
    job = r.json()
    assert r.headers["location"] == f"/v1/jobs/{job['id']}"
    deadline = time.time() + 120
    while job["state"] in ("queued", "running") and time.time() < deadline:
        time.sleep(0.2)
        job = client.get(f"/v1/jobs/{job['id']}", headers=ADMIN).json()
    assert job["state"] == "committed", job
    assert job["counts"]["documents_total"] == 5 and job["progress"] == 1.0
    assert client.get("/readyz").json()["index"]["name"] != before
    _error(client.get("/v1/jobs/nope", headers=ADMIN), 404)
    for bad in ("/no/such/model", "/etc"):  # refused before a job is queued, the index untouched
        err = _error(client.post("/v1/reindex", json={"embedder": bad}, headers=ADMIN), 404, "not_found")
        assert bad in err["message"] and "model" in err["message"]
    assert client.get("/readyz").json()["index"]["name"] != before


# ---- entities, metrics --------------------------------------------------------------------------
def test_entities_lists_labels_and_counts(client):
    r = client.get("/v1/entities", params={"label": "GPE", "top": 3}, headers=READ)
    assert r.status_code == 200
    ents = r.json()["entities"]
    assert 1 <= len(ents) <= 3 and all(e["label"] == "GPE" and e["count"] >= 1 for e in ents)
    assert _error(client.get("/v1/entities", params={"top": 0}, headers=READ), 422)["field"] == "top"
    assert _error(client.get("/v1/entities", params={"lable": "GPE"}, headers=READ), 422)["field"] == "lable"


def test_metrics_expose_routes_index_size_and_queues(client):
    client.post("/v1/search", json={"query": "coffee"}, headers=READ)
    text = client.get("/metrics").text
    assert 'ragkiln_http_requests_total{method="POST",route="/v1/search",status="200"}' in text
    assert 'ragkiln_http_request_seconds_bucket{le="0.1",route="/v1/search"}' in text
    assert "ragkiln_index_chunks " in text and 'ragkiln_queue_depth{queue="generation"}' in text
    assert 'ragkiln_queue_depth{queue="embedding"}' in text and "ragkiln_generation_tokens_total" in text


# ---- OpenAI-compatible --------------------------------------------------------------------------
def test_models_and_embeddings(client):
    ids = {m["id"]: m["kind"] for m in client.get("/v1/models", headers=READ).json()["data"]}
    assert ids == {"tiny-lm-q8_0": "generator", "all-MiniLM-L6-v2": "embedder"}
    r = client.post("/v1/embeddings", json={"model": "all-MiniLM-L6-v2", "input": ["tea", "coffee"]}, headers=READ)
    assert r.status_code == 200, r.text
    data = r.json()["data"]
    assert len(data) == 2 and len(data[0]["embedding"]) == 384 and r.json()["usage"]["prompt_tokens"] >= 2
    b64 = client.post("/v1/embeddings", json={"model": "all-MiniLM-L6-v2", "input": "tea",
                                              "encoding_format": "base64"}, headers=READ).json()["data"][0]
    import numpy as np

    vec = np.frombuffer(base64.b64decode(b64["embedding"]), dtype="<f4")
    assert np.allclose(vec, data[0]["embedding"], atol=1e-5)
    _error(client.post("/v1/embeddings", json={"model": "text-embedding-3-small", "input": "x"}, headers=READ), 404)
    _error(client.post("/v1/embeddings", json={"model": "all-MiniLM-L6-v2", "input": "x", "dimensions": 3},
                       headers=READ), 400)


def test_chat_completion_answers_over_the_index(client):
    body = {"model": "tiny-lm-q8_0", "messages": [{"role": "user", "content": QUESTION}], "max_tokens": 5}
    r = client.post("/v1/chat/completions", json=body, headers=READ)
    assert r.status_code == 200, r.text
    c = r.json()
    assert c["object"] == "chat.completion" and c["choices"][0]["message"]["role"] == "assistant"
    assert c["usage"]["completion_tokens"] >= 1 and c["citations"][0]["doc_id"] == "vaccine.md"
    _error(client.post("/v1/chat/completions", json={**body, "model": "gpt-4o"}, headers=READ), 404)
    _error(client.post("/v1/chat/completions", json={**body, "n": 2}, headers=READ), 422)
    _error(client.post("/v1/chat/completions", json={**body, "logit_bias": {}}, headers=READ), 422)


def test_bf16_query_vectors_stay_within_fp32_rounding(client):
    from indexer.embedder import bf16_supported
    from server.encoding import QueryEncoder

    if not bf16_supported():
        pytest.skip("this CPU has no native bf16 (AVX512-BF16/AMX): queries stay fp32")
    embedder = client.app.state.ragkiln.searcher().embedder
    texts = ["how many volunteers enrolled", "solar power in Spain", "a much longer question about coffee growers"]
    a, b = QueryEncoder(embedder, "fp32").encode(texts), QueryEncoder(embedder, "bf16").encode(texts)
    assert a.shape == b.shape == (3, 384)
    assert (a * b).sum(1).min() > 0.999
