"""Frozen value types shared by the indexer and everything that reads the index."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Document:
    """One source document as ingested: stable id, full text, content hash and metadata."""

    doc_id: str  # relative path for files, `_id` for BEIR
    text: str
    sha256: str
    title: str = ""
    source: str = ""  # path of the file it came from
    mtime: float = 0.0
    metadata: dict[str, Any] = field(default_factory=dict)
    code: tuple[tuple[int, int], ...] = ()  # (start, end) of each code block in `text` (indexer.markup.split_code)


@dataclass(frozen=True)
class ChunkSpan:
    """A chunk as cut by `chunk_document`: character offsets into the document text."""

    ord: int
    start: int
    end: int
    n_tokens: int


@dataclass(frozen=True)
class Entity:
    """A named entity in a chunk; offsets are both chunk-relative and document-relative."""

    text: str
    label: str
    norm: str
    start: int
    end: int
    doc_start: int
    doc_end: int


@dataclass(frozen=True)
class Chunk:
    """A stored chunk. `id` is the int64 FAISS id; `key` is stable across runs ("doc_id#sha12:ord")."""

    id: int
    key: str
    doc_id: str
    ord: int
    start: int
    end: int
    text: str
    title: str = ""


@dataclass(frozen=True)
class Hit:
    """One search result: the chunk, its fused score and the rank it had in each retriever (1-based)."""

    chunk: Chunk
    score: float
    ranks: dict[str, int] = field(default_factory=dict)
    scores: dict[str, float] = field(default_factory=dict)
    entities: tuple[Entity, ...] = ()
    also_in: tuple[str, ...] = ()  # other documents holding a near-duplicate of this chunk, folded into it


@dataclass(frozen=True)
class Skipped:
    """A file the ingest could not use, and why (the run goes on)."""

    path: str
    reason: str


@dataclass
class IngestReport:
    """What an ingest run did; `added`/`changed`/`removed`/`unchanged` count documents."""

    added: int = 0
    changed: int = 0
    removed: int = 0
    unchanged: int = 0
    chunks_embedded: int = 0
    chunks_total: int = 0
    documents_total: int = 0
    skipped: list[Skipped] = field(default_factory=list)
    index_dir: str = ""
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "added": self.added,
            "changed": self.changed,
            "removed": self.removed,
            "unchanged": self.unchanged,
            "chunks_embedded": self.chunks_embedded,
            "chunks_total": self.chunks_total,
            "documents_total": self.documents_total,
            "skipped": [{"path": s.path, "reason": s.reason} for s in self.skipped],
            "index_dir": self.index_dir,
            "seconds": round(self.seconds, 3),
        }
