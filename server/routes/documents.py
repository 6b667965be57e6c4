"""Documents (upsert as JSON or multipart upload, get, delete), reindex jobs and their status.

Writes are jobs (server/jobs.py): a small upsert or a delete waits in its request for its job and
answers 200 when it commits in time (server.write_sync_wait_s); a large upsert
(server.write_sync_max_chars), a reindex, or a small write still queued or running then, answers
202 with the job at once. Writes queue behind one another (429 with Retry-After when the queue is
full). An `Idempotency-Key` header makes a write safe to send again: the same key and request get
the first attempt's job back.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Annotated

from fastapi import APIRouter, Header, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from common.errors import InvalidInput
from server import documents as docs_core
from server.deps import ADMIN
from server.errors import error_response
from server.jobs import Job, wait_for_job
from server.middleware import ACCEPTED, DEADLINE
from server.schemas import (DeleteResponse, DocumentOut, ErrorResponse, JobOut, ReindexRequest, UpsertRequest,
                            UpsertResponse)
from server.state import ServerState

router = APIRouter(tags=["documents"], responses={401: {"model": ErrorResponse}, 403: {"model": ErrorResponse},
                                                  409: {"model": ErrorResponse}})
IdempotencyKey = Annotated[str | None, Header(
    alias="Idempotency-Key", min_length=1, max_length=255, pattern=r"^[\x21-\x7e]+$",
    description="Any unique string (a UUID) naming this write: sent again with the same request, it gets the first "
    "attempt's job back instead of a second write; with another request, 409. Kept for server.job_retention_h hours "
    "(server.job_retention_count keys at most) in the workspace, so across restarts; a failed job releases its key.")]
_WRITE_RESPONSES: dict[int | str, dict] = {
    202: {"model": JobOut, "description": "Accepted: the write runs as a job; poll the Location (/v1/jobs/{id})."},
    429: {"model": ErrorResponse, "description": "The write queue is full (server.write_queue_size); see Retry-After."},
}

_UPLOAD_FIELDS = {"file", "doc_id", "title"}
_UPSERT_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/UpsertRequest"}},
            "multipart/form-data": {"schema": {
                "type": "object", "required": ["file"], "additionalProperties": False,
                "properties": {"file": {"type": "string", "format": "binary"},
                               "doc_id": {"type": "string", "minLength": 1, "maxLength": 256},
                               "title": {"type": "string", "maxLength": 1000}}}},
        },
    }
}


@router.post("/v1/documents", response_model=UpsertResponse, openapi_extra=_UPSERT_BODY,
             responses={**_WRITE_RESPONSES, 400: {"model": ErrorResponse}, 413: {"model": ErrorResponse},
                        415: {"model": ErrorResponse}, 422: {"model": ErrorResponse}})
async def upsert_documents(request: Request, state: ServerState = ADMIN,
                           idempotency_key: IdempotencyKey = None) -> UpsertResponse | Response:
    """Add or replace documents by id: a JSON body `{documents: [{id, text, title, metadata}]}` or a
    multipart upload (`file`, optional `doc_id`, `title`; PDF, HTML, Markdown or text in UTF-8, UTF-16 or
    Windows-1252, judged by content). 200 once committed when the text is small (server.write_sync_max_chars
    characters in all) and it commits within server.write_sync_wait_s; else 202 with the job to poll."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype == "multipart/form-data":
        docs = [await _from_upload(request, state)]
    elif ctype in ("application/json", ""):
        raw = await request.body()
        try:
            req = UpsertRequest.model_validate_json(raw or b"null")
        except ValidationError as e:
            raise RequestValidationError(e.errors(include_url=False)) from None
        docs = [docs_core.document_from_json(d) for d in req.documents]
    else:
        return _unsupported(ctype)
    job, replayed = docs_core.submit_upsert(state.jobs, state.settings, docs, state.enricher, idempotency_key)
    small = docs_core.text_chars(docs) <= state.settings.server.write_sync_max_chars
    return await _write_response(request, state, job, replayed, small, lambda j: UpsertResponse(
        ids=j.ids, report=docs_core.report_out(j.counts or {}), job=docs_core.job_out(j)))


async def _from_upload(request: Request, state: ServerState):  # noqa: ANN202
    form = await request.form(max_files=1, max_fields=4)
    try:
        unknown = sorted(set(form.keys()) - _UPLOAD_FIELDS)
        if unknown:
            raise RequestValidationError([{"loc": ("form", unknown[0]), "msg": "unknown field",
                                           "type": "extra_forbidden"}])
        file = form.get("file")
        if not isinstance(file, UploadFile):
            raise RequestValidationError([{"loc": ("form", "file"), "msg": "a file is required",
                                           "type": "missing"}])
        doc_id, title = form.get("doc_id"), form.get("title")
        if not isinstance(doc_id, (str, type(None))) or not isinstance(title, (str, type(None))):
            raise InvalidInput("doc_id and title must be plain form fields")
        # a doc_id field given empty is refused like any bad id (minLength 1), not replaced by the file name
        doc_id = doc_id.strip() if doc_id is not None else docs_core.doc_id_from_filename(file.filename)
        if not doc_id or len(doc_id) > 256 or any(ord(c) < 32 or ord(c) == 127 for c in doc_id):
            raise RequestValidationError([{"loc": ("form", "doc_id"), "msg": "1-256 characters, no control characters",
                                           "type": "value_error"}])
        if title is not None and len(title) > 1000:
            raise RequestValidationError([{"loc": ("form", "title"), "msg": "at most 1000 characters",
                                           "type": "value_error"}])
        data = await file.read()
        max_bytes = int(state.settings.indexer.max_file_mb * 2**20)
        return await run_in_threadpool(docs_core.parse_upload, state.workspace.home, data, doc_id, title, max_bytes)
    finally:
        await form.close()


def _unsupported(ctype: str) -> Response:
    from server.errors import error_response

    return error_response(415, "unsupported_media_type",
                          f"content type {ctype!r}: send application/json or multipart/form-data")


@router.get("/v1/documents/{doc_id:path}", response_model=DocumentOut, responses={404: {"model": ErrorResponse}})
def get_document(doc_id: str, state: ServerState = ADMIN) -> DocumentOut:
    """A stored document with its text, metadata and chunk offsets."""
    return docs_core.get_document(state.workspace, doc_id)


@router.delete("/v1/documents/{doc_id:path}", response_model=DeleteResponse,
               responses={**_WRITE_RESPONSES, 404: {"model": ErrorResponse}})
async def delete_document(request: Request, doc_id: str, state: ServerState = ADMIN,
                          idempotency_key: IdempotencyKey = None) -> DeleteResponse | Response:
    """Remove a document from the index (a new generation without it; searches switch atomically).
    200 once committed within server.write_sync_wait_s, else 202 with the job to poll."""
    job, replayed = docs_core.submit_delete(state.jobs, state.settings, doc_id, idempotency_key)
    return await _write_response(request, state, job, replayed, True, lambda j: DeleteResponse(
        deleted=doc_id, report=docs_core.report_out(j.counts or {}), job=docs_core.job_out(j)))


@router.post("/v1/reindex", response_model=JobOut, status_code=202,
             responses={404: {"model": ErrorResponse, "description": "The embedder named is no model."},
                        429: _WRITE_RESPONSES[429], 422: {"model": ErrorResponse}})
async def reindex(request: Request, req: ReindexRequest, state: ServerState = ADMIN,
                  idempotency_key: IdempotencyKey = None) -> Response:
    """Rebuild the index from the stored documents in the background (body `{}` for the defaults, or
    another embedder); searches keep using the old index until the new one is switched in. 202 with the
    job (queued behind writes before it); 404 when the embedder named is neither a built-in name nor a model
    directory."""
    job, replayed = docs_core.submit_reindex(state.jobs, state.settings, req, state.enricher, idempotency_key)
    return await _write_response(request, state, job, replayed, False, docs_core.job_out)


@router.get("/v1/jobs/{job_id}", response_model=JobOut, responses={404: {"model": ErrorResponse}})
def get_job(job_id: str, state: ServerState = ADMIN) -> JobOut:
    """A write job: queued, running, committed (with the index generation it made active) or failed
    (with the reason; nothing of it was written). Jobs are kept server.job_retention_h hours."""
    return docs_core.job_out(state.jobs.get(job_id))


async def _write_response(request: Request, state: ServerState, job: Job, replayed: bool, sync: bool,
                          ok: Callable[[Job], BaseModel]) -> BaseModel | Response:
    """200 with `ok(job)` once a synchronous write committed in time, its error if it failed, else 202."""
    request.scope[ACCEPTED] = lambda: (docs_core.job_out(job).model_dump(mode="json"), f"/v1/jobs/{job.id}")
    headers = {"Location": f"/v1/jobs/{job.id}", **({"Idempotent-Replayed": "true"} if replayed else {})}
    if sync:
        await wait_for_job(job, docs_core.sync_wait_s(state.settings, request.scope.get(DEADLINE), time.monotonic()))
        if job.state == "committed":
            return JSONResponse(ok(job).model_dump(mode="json"), headers=headers)
        if job.state == "failed" and job.error:
            return error_response(job.http_status or 500, job.error["code"], job.error["message"],
                                  headers={"Location": f"/v1/jobs/{job.id}"})
    return JSONResponse(docs_core.job_out(job).model_dump(mode="json"), status_code=202, headers=headers)
