"""Documents (upsert as JSON or multipart upload, get, delete), reindex jobs and their status."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from common.errors import InvalidInput
from indexer import service
from server import documents as docs_core
from server.deps import ADMIN
from server.schemas import (DeleteResponse, DocumentOut, ErrorResponse, JobOut, ReindexRequest, UpsertRequest,
                            UpsertResponse)
from server.state import ServerState

router = APIRouter(tags=["documents"], responses={401: {"model": ErrorResponse}, 403: {"model": ErrorResponse},
                                                  409: {"model": ErrorResponse}})

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
             responses={400: {"model": ErrorResponse}, 413: {"model": ErrorResponse}, 415: {"model": ErrorResponse},
                        422: {"model": ErrorResponse}})
async def upsert_documents(request: Request, state: ServerState = ADMIN) -> UpsertResponse:
    """Add or replace documents by id: a JSON body `{documents: [{id, text, title, metadata}]}` or a
    multipart upload (`file`, optional `doc_id`, `title`; PDF, HTML, Markdown or text, judged by content)."""
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
    report = await run_in_threadpool(docs_core.upsert, state.settings, docs, state.enricher)
    return UpsertResponse(ids=[d.doc_id for d in docs], report=docs_core.report_out(report))


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
        doc_id = doc_id.strip() if doc_id else docs_core.doc_id_from_filename(file.filename)
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


@router.delete("/v1/documents/{doc_id:path}", response_model=DeleteResponse, responses={404: {"model": ErrorResponse}})
def delete_document(doc_id: str, state: ServerState = ADMIN) -> DeleteResponse:
    """Remove a document from the index (a new generation without it; searches switch atomically)."""
    report = docs_core.delete(state.settings, doc_id)
    return DeleteResponse(deleted=doc_id, report=docs_core.report_out(report))


@router.post("/v1/reindex", response_model=JobOut, status_code=202, responses={422: {"model": ErrorResponse}})
def reindex(req: ReindexRequest, response: Response, state: ServerState = ADMIN) -> JobOut:
    """Rebuild the index from the stored documents in the background (body `{}` for the defaults, or
    another embedder); searches keep using the old index until the new one is switched in."""
    enricher = state.enricher if req.ner else None
    job = state.jobs.submit("reindex", lambda: service.reindex(state.settings, embedder=req.embedder,
                                                               enricher=enricher, progress=False).to_dict())
    response.headers["Location"] = f"/v1/jobs/{job.id}"
    return JobOut(**job.to_dict())


@router.get("/v1/jobs/{job_id}", response_model=JobOut, responses={404: {"model": ErrorResponse}})
def get_job(job_id: str, state: ServerState = ADMIN) -> JobOut:
    """State, progress, counts (the ingest report) and error of a background job."""
    return JobOut(**state.jobs.get(job_id).to_dict())
