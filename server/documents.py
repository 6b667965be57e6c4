"""Documents given over HTTP: JSON bodies and uploaded files become `Document`s, then one upsert.

Uploads are judged by their bytes, never by their name: `%PDF-` is a PDF, text as `indexer.encoding` reads
it (UTF-8, UTF-16 with its mark, a declared charset, Western Windows-1252) is text (HTML when it looks like
HTML), anything else is refused. The bytes go to a file the
server names itself under `<workspace>/uploads/` (the client's file name is never a path) and the
file is removed once parsed.

Every write (upsert, delete, reindex) runs as a job on the server's writer thread (server/jobs.py);
`submit_*` queue one and say what it touches, so that an Idempotency-Key can be matched to the
request and a stopped server's job settled from the docstore.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path, PurePosixPath
from typing import Any

from common.errors import InvalidInput, ModelUnavailable, NotFound
from common.hashing import sha256_text
from common.settings import Settings
from indexer import service
from indexer.embedder import resolve_embedder_path
from indexer.encoding import Undecodable, decode_text
from indexer.loaders import load_file
from indexer.types import Document, IngestReport
from indexer.workspace import Workspace
from server.jobs import Job, JobRegistry
from server.schemas import ChunkRef, DocumentIn, DocumentOut, IngestOut, JobOut, ReindexRequest

_HTML = re.compile(r"^\s*(<!doctype\s+html|<html[\s>]|<head[\s>]|<body[\s>])", re.IGNORECASE)
_MD_HEADING = re.compile(r"^#{1,6}\s+\S", re.MULTILINE)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def sniff_kind(data: bytes) -> str:
    """'pdf', 'html', 'markdown' or 'text' from the content; InvalidInput for anything else."""
    if not data:
        raise InvalidInput("the uploaded file is empty")
    if data.startswith(b"%PDF-"):
        return "pdf"
    try:
        text, _encoding = decode_text(data)
    except Undecodable as e:
        raise InvalidInput(f"the uploaded file is neither PDF nor text ({e}); send text, Markdown, HTML or PDF") from None
    if _HTML.match(text[:4096]):
        return "html"
    return "markdown" if _MD_HEADING.search(text[:20000]) else "text"


_SUFFIX = {"pdf": ".pdf", "html": ".html", "markdown": ".md", "text": ".txt"}


def doc_id_from_filename(filename: str | None) -> str:
    """The last path component of the client's name (a document id, never a path on disk)."""
    name = PurePosixPath((filename or "").replace("\\", "/")).name
    name = _CONTROL.sub("", name).strip()
    if not name or name in (".", ".."):
        raise InvalidInput("give a doc_id form field or a file name for the uploaded document")
    return name[:256]


def parse_upload(workspace_home: Path, data: bytes, doc_id: str, title: str | None, max_bytes: int) -> Document:
    """Turn uploaded bytes into a Document via the indexer's own loaders (a temporary file in the workspace)."""
    kind = sniff_kind(data)
    uploads = Path(workspace_home) / "uploads"
    uploads.mkdir(parents=True, exist_ok=True)
    tmp = uploads / f"{uuid.uuid4().hex}{_SUFFIX[kind]}"
    try:
        tmp.write_bytes(data)
        res = load_file(tmp, doc_id, max_bytes)
    finally:
        tmp.unlink(missing_ok=True)
    if not res.documents:
        reason = res.skipped[0].reason if res.skipped else "no text content"
        raise InvalidInput(f"the uploaded {kind} file cannot be used: {reason}")
    doc = res.documents[0]
    derived = "" if doc.title == tmp.stem else doc.title  # loaders fall back to the (server-chosen) file name
    new_title = title or derived
    return replace(doc, doc_id=doc_id, title=new_title, source=f"upload:{kind}", mtime=time.time(),
                   sha256=sha256_text(new_title + "\x00" + doc.text))


def document_from_json(d: DocumentIn) -> Document:
    text = d.text.replace("\r\n", "\n").replace("\r", "\n")
    if not text.strip():
        raise InvalidInput(f"document {d.id!r}: text is blank")
    return Document(doc_id=d.id, text=text, sha256=sha256_text(d.title + "\x00" + text), title=d.title,
                    source="api", mtime=time.time(), metadata=dict(d.metadata))


def check_unique(docs: Sequence[Document]) -> None:
    seen: set[str] = set()
    for d in docs:
        if d.doc_id in seen:
            raise InvalidInput(f"document id {d.doc_id!r} appears twice in one request")
        seen.add(d.doc_id)


def upsert(settings: Settings, docs: Sequence[Document], enricher: Any) -> IngestReport:
    check_unique(docs)
    return service.upsert_documents(settings, docs, enricher=enricher)


def delete(settings: Settings, doc_id: str) -> IngestReport:
    return service.upsert_documents(settings, [], delete_ids=[doc_id])


def report_out(r: IngestReport | dict[str, Any]) -> IngestOut:
    d = r if isinstance(r, dict) else r.to_dict()
    return IngestOut(**{k: d[k] for k in IngestOut.model_fields})


def job_out(job: Job) -> JobOut:
    return JobOut(**job.to_dict())


def committed(report: IngestReport) -> tuple[dict[str, Any], str | None]:
    """A write job's result: the ingest report and the index generation active after it."""
    return report.to_dict(), (Path(report.index_dir).name if report.index_dir else None)


def text_chars(docs: Sequence[Document]) -> int:
    return sum(len(d.text) for d in docs)


def submit_upsert(jobs: JobRegistry, settings: Settings, docs: Sequence[Document], enricher: Any,
                  key: str | None) -> tuple[Job, bool]:
    """Queue an upsert (or find the job `key` names); (job, whether it is a replay of an earlier request)."""
    check_unique(docs)
    fingerprint = sha256_text("upsert\x00" + json.dumps([[d.doc_id, d.sha256, d.metadata] for d in docs],
                                                        sort_keys=True, default=str))
    return _submit(jobs, "upsert", lambda: committed(upsert(settings, docs, enricher)), key, fingerprint,
                   {"docs": {d.doc_id: d.sha256 for d in docs}}, [d.doc_id for d in docs])


def submit_delete(jobs: JobRegistry, settings: Settings, doc_id: str, key: str | None) -> tuple[Job, bool]:
    return _submit(jobs, "delete", lambda: committed(delete(settings, doc_id)), key,
                   sha256_text("delete\x00" + doc_id), {"deleted": [doc_id]}, [doc_id])


def submit_reindex(jobs: JobRegistry, settings: Settings, req: ReindexRequest, enricher: Any,
                   key: str | None) -> tuple[Job, bool]:
    """Queue the reindex; an embedder that names no model is refused now (404), not as a failed job later."""
    if req.embedder is not None:
        try:
            resolve_embedder_path(req.embedder)
        except ModelUnavailable as e:
            raise NotFound(str(e)) from None
    work = lambda: committed(service.reindex(settings, embedder=req.embedder,  # noqa: E731
                                             enricher=enricher if req.ner else None, progress=False))
    return _submit(jobs, "reindex", work, key, sha256_text("reindex\x00" + req.model_dump_json()), None, [])


def _submit(jobs: JobRegistry, kind: str, work: Any, key: str | None, fingerprint: str,
            want: dict[str, Any] | None, ids: list[str]) -> tuple[Job, bool]:
    known = jobs.find(key, fingerprint)
    if known is not None:
        return known, True
    job = jobs.submit(kind, work, key=key, fingerprint=fingerprint, want=want, ids=ids)
    return job, False


def sync_wait_s(settings: Settings, deadline: float | None, now: float) -> float:
    """How long a small write may wait for its job in the request: server.write_sync_wait_s, ending
    well before the request timeout (`deadline`, monotonic) so the answer is 200 or 202, never 504."""
    wait = settings.server.write_sync_wait_s
    if deadline is not None:
        margin = min(2.0, 0.1 * settings.server.request_timeout_s)
        wait = min(wait, deadline - now - margin)
    return max(0.0, wait)


def get_document(ws: Workspace, doc_id: str) -> DocumentOut:
    doc = ws.store.get_document(doc_id)
    if doc is None:
        raise NotFound(f"no document with id {doc_id!r}")
    active = ws.store.active_documents().get(doc_id)
    ids = ws.store.chunk_ids_for(doc_id, doc.sha256, active[1]) if active else []
    chunks = ws.store.get_chunks(ids)
    return DocumentOut(id=doc.doc_id, title=doc.title, text=doc.text, sha256=doc.sha256, source=doc.source,
                       metadata=doc.metadata,
                       chunks=[ChunkRef(chunk_id=i, start=chunks[i].start, end=chunks[i].end) for i in ids if i in chunks])
