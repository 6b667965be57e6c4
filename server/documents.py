"""Documents given over HTTP: JSON bodies and uploaded files become `Document`s, then one upsert.

Uploads are judged by their bytes, never by their name: `%PDF-` is a PDF, valid UTF-8 without NUL
bytes is text (HTML when it looks like HTML), anything else is refused. The bytes go to a file the
server names itself under `<workspace>/uploads/` (the client's file name is never a path) and the
file is removed once parsed.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path, PurePosixPath
from typing import Any

from common.errors import InvalidInput, NotFound
from common.hashing import sha256_text
from common.settings import Settings
from indexer import service
from indexer.loaders import load_file
from indexer.types import Document, IngestReport
from indexer.workspace import Workspace
from server.schemas import ChunkRef, DocumentIn, DocumentOut, IngestOut

_HTML = re.compile(rb"^\s*(<!doctype\s+html|<html[\s>]|<head[\s>]|<body[\s>])", re.IGNORECASE)
_MD_HEADING = re.compile(r"^#{1,6}\s+\S", re.MULTILINE)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def sniff_kind(data: bytes) -> str:
    """'pdf', 'html', 'markdown' or 'text' from the content; InvalidInput for anything else."""
    if not data:
        raise InvalidInput("the uploaded file is empty")
    if data.startswith(b"%PDF-"):
        return "pdf"
    if b"\x00" in data[:65536]:
        raise InvalidInput("the uploaded file is binary (NUL bytes); send text, Markdown, HTML or PDF")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise InvalidInput(f"the uploaded file is neither PDF nor UTF-8 text (invalid byte at {e.start})") from None
    if _HTML.match(data[:4096].lstrip(b"\xef\xbb\xbf")):
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


def report_out(r: IngestReport) -> IngestOut:
    d = r.to_dict()
    return IngestOut(**{k: d[k] for k in IngestOut.model_fields})


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
