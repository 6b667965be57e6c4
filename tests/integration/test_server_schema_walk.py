"""Generated bad inputs for every operation of the OpenAPI schema (schemathesis, negative mode)
against a live server: each answer is a JSON 4xx error, and nothing stored changes."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, given, reject, settings  # noqa: E402
from hypothesis.errors import Unsatisfiable  # noqa: E402
from schemathesis.generation.modes import GenerationMode  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from server_support import ADMIN, base_workspace, served_copy  # noqa: E402,F401

from indexer.docstore import DocStore  # noqa: E402

pytestmark = pytest.mark.slow
EXAMPLES = 25


@pytest.fixture(scope="module")
def live(base_workspace, tmp_path_factory):  # noqa: F811
    yield from served_copy(base_workspace, tmp_path_factory, "walk")


def _stored(home: Path) -> tuple:
    store = DocStore(home / "docstore.sqlite")
    try:
        docs = sorted(store.active_documents().items())
        return docs, store.get_meta("active_index"), sorted(p.name for p in home.iterdir())
    finally:
        store.close()


def _valid_once_sent_as_form(case) -> bool:  # noqa: ANN001
    """Multipart sends every field as text: a negative upload whose fields only have the wrong JSON type
    (doc_id -1343, file "à") reaches the server as a valid upload, so it proves nothing (and adds a
    document). Cases that stay invalid as text (no file, unknown field, bad length) are still walked."""
    body = case.body
    if case.media_type != "multipart/form-data" or not isinstance(body, dict):
        return False
    if "file" not in body or set(body) - {"file", "doc_id", "title"}:
        return False
    if any(isinstance(v, (dict, list)) for v in body.values()):
        return False
    doc_id, title = body.get("doc_id"), body.get("title")
    return (doc_id is None or 1 <= len(str(doc_id).strip()) <= 256) and (title is None or len(str(title)) <= 1000)


def test_generated_bad_inputs_get_json_4xx_and_change_nothing(live):
    schema = schemathesis.openapi.from_url(live.url + "/openapi.json")
    before = _stored(live.home)
    walked: list[str] = []
    failures: list[str] = []
    for result in schema.get_all_operations():
        op = result.ok()
        has_input = bool(op.body) or any(True for _ in op.iter_parameters())
        if not has_input:
            continue
        walked.append(f"{op.method.upper()} {op.path}")

        @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
                  suppress_health_check=list(HealthCheck))
        @given(case=op.as_strategy(generation_mode=GenerationMode.NEGATIVE))
        def walk(case) -> None:  # noqa: ANN001
            if _valid_once_sent_as_form(case):
                reject()
            r = case.call(base_url=live.url, headers=ADMIN, timeout=60)
            ctype = (r.headers.get("content-type") or [""])[0]  # schemathesis keeps header values as lists
            ok = 400 <= r.status_code < 500 and ctype.startswith("application/json")
            if ok:
                err = r.json().get("error", {})
                ok = bool(err.get("code")) and bool(err.get("message")) and "Traceback" not in r.text
            if not ok:
                failures.append(f"{case.method} {case.formatted_path} body={str(case.body)[:120]!r} "
                                f"query={case.query} -> {r.status_code} {r.text[:200]}")

        try:
            walk()
        except Unsatisfiable:  # every value of its inputs is valid (e.g. a free-form path id)
            walked.remove(f"{op.method.upper()} {op.path}")
    assert {"POST /v1/search", "POST /v1/answer", "POST /v1/documents", "POST /v1/chat/completions",
            "POST /v1/embeddings", "GET /v1/entities", "POST /v1/reindex"} <= set(walked), walked
    assert failures == [], "\n".join(failures[:20])
    assert _stored(live.home) == before
