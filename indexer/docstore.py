"""SQLite (WAL) store of documents, chunks, cached embeddings and entities.

Embeddings are cached by the hash of the text the embedder saw (title + chunk) and the embedder id, so
re-chunking, renaming a document or switching back to an earlier embedder re-embeds nothing already seen.
A chunk's sentence vectors are cached under the same key, as one row per chunk.

The active corpus is the `active` table plus `meta.active_index`; both change in one transaction
(`commit_generation`), which is the single commit point of an ingest. Rows of new document versions
are written before it and old ones are garbage-collected after it, so a crash at any moment leaves
the previous index consistent with the store. The corpus of the generation before the active one
(`previous`) is kept one switch longer: a search that started on it in another process (a server
worker) can still fetch its chunks after the switch.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np

from common.errors import ManifestMismatch
from common.hashing import sha256_text
from indexer.chunking import index_text
from indexer.types import Chunk, ChunkSpan, Document, Entity

SCHEMA_VERSION = 2
_IN_BATCH = 500  # values per IN (...): under SQLite's 999-variable limit of releases before 3.32

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS documents (
    doc_id TEXT NOT NULL, sha256 TEXT NOT NULL, title TEXT NOT NULL, source TEXT NOT NULL,
    mtime REAL NOT NULL, metadata TEXT NOT NULL, text TEXT NOT NULL, PRIMARY KEY (doc_id, sha256));
CREATE TABLE IF NOT EXISTS chunks (
    id INTEGER PRIMARY KEY AUTOINCREMENT, key TEXT NOT NULL UNIQUE, doc_id TEXT NOT NULL,
    doc_sha256 TEXT NOT NULL, chunker TEXT NOT NULL, ord INTEGER NOT NULL, start INTEGER NOT NULL,
    "end" INTEGER NOT NULL, n_tokens INTEGER NOT NULL, text TEXT NOT NULL, text_sha TEXT NOT NULL,
    enriched INTEGER NOT NULL DEFAULT 0);
CREATE INDEX IF NOT EXISTS chunks_doc ON chunks (doc_id, doc_sha256, chunker);
CREATE INDEX IF NOT EXISTS chunks_text_sha ON chunks (text_sha);
CREATE TABLE IF NOT EXISTS embeddings (
    text_sha TEXT NOT NULL, embedder TEXT NOT NULL, vec BLOB NOT NULL, PRIMARY KEY (text_sha, embedder));
CREATE TABLE IF NOT EXISTS sentence_vectors (
    text_sha TEXT NOT NULL, embedder TEXT NOT NULL, n INTEGER NOT NULL, vec BLOB NOT NULL,
    PRIMARY KEY (text_sha, embedder));
CREATE TABLE IF NOT EXISTS entities (
    chunk_id INTEGER NOT NULL, label TEXT NOT NULL, text TEXT NOT NULL, norm TEXT NOT NULL,
    start INTEGER NOT NULL, "end" INTEGER NOT NULL, doc_start INTEGER NOT NULL, doc_end INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS entities_chunk ON entities (chunk_id);
CREATE INDEX IF NOT EXISTS entities_label ON entities (label, norm);
CREATE TABLE IF NOT EXISTS code_blocks (
    doc_id TEXT NOT NULL, sha256 TEXT NOT NULL, start INTEGER NOT NULL, "end" INTEGER NOT NULL,
    PRIMARY KEY (doc_id, sha256, start));
CREATE TABLE IF NOT EXISTS active (
    doc_id TEXT PRIMARY KEY, sha256 TEXT NOT NULL, chunker TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS previous (
    doc_id TEXT PRIMARY KEY, sha256 TEXT NOT NULL, chunker TEXT NOT NULL);
"""

_ACTIVE_CHUNKS = (
    "SELECT c.id, c.key, c.doc_id, c.ord, c.start, c.\"end\", c.text, d.title FROM chunks c "
    "JOIN active a ON a.doc_id = c.doc_id AND a.sha256 = c.doc_sha256 AND a.chunker = c.chunker "
    "JOIN documents d ON d.doc_id = c.doc_id AND d.sha256 = c.doc_sha256"
)


class DocStore:
    """One connection per thread; writers serialise through SQLite's own lock."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        conn = self._raw()
        conn.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        conn.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
        found = self.get_meta("schema_version")
        if found != str(SCHEMA_VERSION):
            raise ManifestMismatch(
                f"{self.path} has docstore schema v{found}; this ragkiln reads v{SCHEMA_VERSION}: "
                "ingest into a new workspace")
        conn.executescript(_SCHEMA)

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA foreign_keys=OFF")
            self._local.conn = conn
        return _Tx(conn)  # type: ignore[return-value]

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    # ---- meta -------------------------------------------------------------------------------
    def get_meta(self, key: str) -> str | None:
        row = self._raw().execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def _raw(self) -> sqlite3.Connection:
        """The thread's connection in autocommit mode (reads and single statements)."""
        self._conn()
        return self._local.conn

    def _rows_in(self, sql: str, values: Iterable[object], *before: object) -> Iterator[tuple]:
        """The rows of `sql` for every value, its `IN (?*)` bound to batches of them (SQLite caps a statement's
        variables) after the parameters `before`."""
        values = list(values)
        for i in range(0, len(values), _IN_BATCH):
            part = values[i:i + _IN_BATCH]
            yield from self._raw().execute(sql.replace("(?*)", f"({','.join('?' * len(part))})"), [*before, *part])

    # ---- documents --------------------------------------------------------------------------
    def active_documents(self) -> dict[str, tuple[str, str]]:
        """doc_id -> (sha256, chunker) of the active corpus."""
        rows = self._raw().execute("SELECT doc_id, sha256, chunker FROM active").fetchall()
        return {r[0]: (r[1], r[2]) for r in rows}

    def active_sources(self) -> dict[str, str]:
        rows = self._raw().execute(
            "SELECT a.doc_id, d.source FROM active a JOIN documents d ON d.doc_id = a.doc_id AND d.sha256 = a.sha256"
        ).fetchall()
        return {r[0]: r[1] for r in rows}

    def put_documents(self, docs: Iterable[Document]) -> None:
        with self._conn() as c:
            c.executemany(
                "INSERT OR REPLACE INTO documents VALUES (?, ?, ?, ?, ?, ?, ?)",
                [(d.doc_id, d.sha256, d.title, d.source, d.mtime, json.dumps(d.metadata), d.text) for d in docs],
            )
            _put_code_blocks(c, docs)

    def put_code_blocks(self, docs: Iterable[Document]) -> None:
        """The code blocks of document versions already stored that have none yet (an unchanged file scanned
        again: a workspace ingested before code blocks were kept gets them on its next ingest, and a later
        ingest writes nothing)."""
        docs = [d for d in docs if d.code]
        if not docs:
            return
        have: set[tuple[str, str]] = set()
        for i in range(0, len(docs), 250):
            part = docs[i:i + 250]
            q = ("SELECT DISTINCT doc_id, sha256 FROM code_blocks WHERE "
                 + " OR ".join(["(doc_id = ? AND sha256 = ?)"] * len(part)))
            have.update(self._raw().execute(q, [v for d in part for v in (d.doc_id, d.sha256)]).fetchall())
        todo = [d for d in docs if (d.doc_id, d.sha256) not in have]
        if todo:
            with self._conn() as c:
                _put_code_blocks(c, todo)

    def get_document(self, doc_id: str) -> Document | None:
        row = self._raw().execute(
            "SELECT d.doc_id, d.text, d.sha256, d.title, d.source, d.mtime, d.metadata FROM documents d "
            "JOIN active a ON a.doc_id = d.doc_id AND a.sha256 = d.sha256 WHERE d.doc_id = ?", (doc_id,)
        ).fetchone()
        return _doc(row) if row else None

    def get_document_version(self, doc_id: str, sha256: str) -> Document | None:
        row = self._raw().execute(
            "SELECT doc_id, text, sha256, title, source, mtime, metadata FROM documents WHERE doc_id = ? AND sha256 = ?",
            (doc_id, sha256),
        ).fetchone()
        return _doc(row) if row else None

    def iter_documents(self) -> Iterator[Document]:
        cur = self._raw().execute(
            "SELECT d.doc_id, d.text, d.sha256, d.title, d.source, d.mtime, d.metadata FROM documents d "
            "JOIN active a ON a.doc_id = d.doc_id AND a.sha256 = d.sha256 ORDER BY d.doc_id"
        )
        for row in cur:
            yield _doc(row)

    def count_documents(self) -> int:
        return int(self._raw().execute("SELECT COUNT(*) FROM active").fetchone()[0])

    # ---- chunks -----------------------------------------------------------------------------
    def chunk_ids_for(self, doc_id: str, sha256: str, chunker: str) -> list[int]:
        rows = self._raw().execute(
            "SELECT id FROM chunks WHERE doc_id = ? AND doc_sha256 = ? AND chunker = ? ORDER BY ord",
            (doc_id, sha256, chunker),
        ).fetchall()
        return [r[0] for r in rows]

    def put_chunks(self, doc: Document, chunker: str, spans: Sequence[ChunkSpan]) -> list[int]:
        """Store a document version's chunks (idempotent by key) and return their ids in order."""
        with self._conn() as c:
            for sp in spans:
                key = f"{doc.doc_id}#{doc.sha256[:12]}:{chunker}:{sp.ord}"
                text = doc.text[sp.start:sp.end]
                c.execute(
                    "INSERT OR IGNORE INTO chunks (key, doc_id, doc_sha256, chunker, ord, start, \"end\", n_tokens, "
                    "text, text_sha) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (key, doc.doc_id, doc.sha256, chunker, sp.ord, sp.start, sp.end, sp.n_tokens, text,
                     sha256_text(index_text(doc.title, text))),
                )
        return self.chunk_ids_for(doc.doc_id, doc.sha256, chunker)

    def iter_chunks(self) -> Iterator[Chunk]:
        for row in self._raw().execute(_ACTIVE_CHUNKS + " ORDER BY c.id"):
            yield Chunk(*row)

    def active_chunk_ids(self) -> np.ndarray:
        rows = self._raw().execute(
            "SELECT c.id FROM chunks c JOIN active a ON a.doc_id = c.doc_id AND a.sha256 = c.doc_sha256 "
            "AND a.chunker = c.chunker ORDER BY c.id"
        ).fetchall()
        return np.array([r[0] for r in rows], dtype=np.int64)

    def get_chunks(self, ids: Sequence[int]) -> dict[int, Chunk]:
        """Chunks by id, whether active or not (a loaded older index may still ask for them)."""
        q = ("SELECT c.id, c.key, c.doc_id, c.ord, c.start, c.\"end\", c.text, d.title FROM chunks c "
             "JOIN documents d ON d.doc_id = c.doc_id AND d.sha256 = c.doc_sha256 WHERE c.id IN (?*)")
        return {row[0]: Chunk(*row) for row in self._rows_in(q, ids)}

    def window(self, chunk_id: int, first_ord: int, last_ord: int) -> tuple[list[Chunk], str]:
        """The chunks of `chunk_id`'s document version and chunking whose ord is in [first_ord, last_ord], in
        order, and the document's text from the first one's start to the last one's end (offsets stay the
        document's; the whitespace between chunks is kept). ([], "") for an unknown chunk."""
        rows = self._raw().execute(
            "SELECT c.id, c.key, c.doc_id, c.ord, c.start, c.\"end\", c.text, d.title FROM chunks h "
            "JOIN chunks c ON c.doc_id = h.doc_id AND c.doc_sha256 = h.doc_sha256 AND c.chunker = h.chunker "
            "JOIN documents d ON d.doc_id = c.doc_id AND d.sha256 = c.doc_sha256 "
            "WHERE h.id = ? AND c.ord BETWEEN ? AND ? ORDER BY c.ord", (chunk_id, first_ord, last_ord)).fetchall()
        chunks = [Chunk(*r) for r in rows]
        if not chunks:
            return [], ""
        return chunks, self.document_text(chunk_id, chunks[0].start, max(c.end for c in chunks))

    def code_block_at(self, chunk_id: int, start: int, end: int) -> tuple[int, int, str] | None:
        """The first code block of `chunk_id`'s document version that holds `start` or begins at or after it
        and before `end` (document offsets), with its text; None when there is none (or the document was
        stored before code blocks were kept)."""
        row = self._raw().execute(
            "SELECT b.start, b.\"end\", substr(d.text, b.start + 1, b.\"end\" - b.start) FROM chunks h "
            "JOIN code_blocks b ON b.doc_id = h.doc_id AND b.sha256 = h.doc_sha256 "
            "JOIN documents d ON d.doc_id = h.doc_id AND d.sha256 = h.doc_sha256 "
            "WHERE h.id = ? AND b.\"end\" > ? AND b.start < ? ORDER BY b.start LIMIT 1",
            (chunk_id, start, end)).fetchone()
        return (int(row[0]), int(row[1]), row[2]) if row else None

    def document_text(self, chunk_id: int, start: int, end: int) -> str:
        """The text of `chunk_id`'s document version between two document offsets ("" for an unknown chunk)."""
        row = self._raw().execute(
            "SELECT substr(d.text, ?, ?) FROM chunks h JOIN documents d ON d.doc_id = h.doc_id AND d.sha256 = "
            "h.doc_sha256 WHERE h.id = ?", (start + 1, max(0, end - start), chunk_id)).fetchone()
        return row[0] if row else ""

    def document_lengths(self, chunk_ids: Sequence[int]) -> dict[int, int]:
        """The length of each chunk's document version, by chunk id."""
        q = ("SELECT c.id, length(d.text) FROM chunks c JOIN documents d ON d.doc_id = c.doc_id AND "
             "d.sha256 = c.doc_sha256 WHERE c.id IN (?*)")
        return dict(self._rows_in(q, chunk_ids))

    def unenriched_ids(self, ids: Sequence[int]) -> set[int]:
        """Those of these chunks that have never been through NER (a resumed ingest skips the others)."""
        return {r[0] for r in self._rows_in("SELECT id FROM chunks WHERE enriched = 0 AND id IN (?*)", ids)}

    # ---- embeddings -------------------------------------------------------------------------
    def get_embeddings(self, ids: Sequence[int], embedder: str, dim: int) -> dict[int, np.ndarray]:
        """Cached vectors of these chunks for this embedder, by chunk id (missing ones are absent)."""
        return {cid: v[0] for cid, v in self._cached("embeddings", "1", ids, embedder, dim).items() if len(v) == 1}

    def put_embeddings(self, ids: Sequence[int], embedder: str, vecs: np.ndarray) -> None:
        self._put_cached("embeddings", ids, embedder, [v[None] for v in vecs])

    def get_sentence_vectors(self, ids: Sequence[int], embedder: str, dim: int) -> dict[int, np.ndarray]:
        """Cached (n, dim) sentence vectors of these chunks for this embedder, by chunk id; n is 0 for a chunk of
        one sentence (`chunking.sentence_texts`), absent for one never embedded."""
        return self._cached("sentence_vectors", "t.n", ids, embedder, dim)

    def put_sentence_vectors(self, ids: Sequence[int], embedder: str, vecs: Sequence[np.ndarray]) -> None:
        self._put_cached("sentence_vectors", ids, embedder, vecs)

    def _cached(self, table: str, rows: str, ids: Sequence[int], embedder: str, dim: int) -> dict[int, np.ndarray]:
        """(rows, dim) arrays from a vector cache table by chunk id; a blob of another size is not read."""
        out: dict[int, np.ndarray] = {}
        q = (f"SELECT c.id, {rows}, t.vec FROM chunks c JOIN {table} t ON t.text_sha = c.text_sha AND "
             "t.embedder = ? WHERE c.id IN (?*)")
        for cid, n, blob in self._rows_in(q, ids, embedder):
            v = np.frombuffer(blob, dtype=np.float32)
            if v.shape[0] == n * dim:
                out[cid] = v.reshape(n, dim)
        return out

    def _put_cached(self, table: str, ids: Sequence[int], embedder: str, vecs: Sequence[np.ndarray]) -> None:
        shas = self._text_shas(ids)
        rows = [(shas[int(i)], embedder, np.ascontiguousarray(v, dtype=np.float32)) for i, v in zip(ids, vecs)]
        with self._conn() as c:
            if table == "embeddings":
                c.executemany("INSERT OR REPLACE INTO embeddings VALUES (?, ?, ?)",
                              [(sha, e, v.tobytes()) for sha, e, v in rows])
            else:
                c.executemany("INSERT OR REPLACE INTO sentence_vectors VALUES (?, ?, ?, ?)",
                              [(sha, e, len(v), v.tobytes()) for sha, e, v in rows])

    def _text_shas(self, ids: Sequence[int]) -> dict[int, str]:
        return dict(self._rows_in("SELECT id, text_sha FROM chunks WHERE id IN (?*)", [int(i) for i in ids]))

    # ---- entities ---------------------------------------------------------------------------
    def put_entities(self, items: Iterable[tuple[int, Sequence[Entity]]]) -> None:
        with self._conn() as c:
            for chunk_id, ents in items:
                c.execute("DELETE FROM entities WHERE chunk_id = ?", (chunk_id,))
                c.executemany(
                    "INSERT INTO entities VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    [(chunk_id, e.label, e.text, e.norm, e.start, e.end, e.doc_start, e.doc_end) for e in ents],
                )
                c.execute("UPDATE chunks SET enriched = 1 WHERE id = ?", (chunk_id,))

    def entities_for(self, chunk_ids: Sequence[int]) -> dict[int, list[Entity]]:
        out: dict[int, list[Entity]] = {}
        q = ("SELECT chunk_id, text, label, norm, start, \"end\", doc_start, doc_end FROM entities "
             "WHERE chunk_id IN (?*) ORDER BY chunk_id, start")
        for row in self._rows_in(q, chunk_ids):
            out.setdefault(row[0], []).append(Entity(*row[1:]))
        return out

    def entity_norms(self, label: str, containing: str = "") -> list[str]:
        """The distinct normalised values stored under `label` that contain the text `containing` (active or
        not: callers intersect), so a filter's matching reads only those."""
        q = "SELECT DISTINCT norm FROM entities WHERE label = ? AND instr(norm, ?) > 0"
        return [r[0] for r in self._raw().execute(q, (label, containing))]

    def chunk_ids_with_entity(self, label: str, norms: Sequence[str] | None = None) -> set[int]:
        """Active chunks with an entity of `label`, and with one of `norms` as its value when given."""
        q = (
            "SELECT DISTINCT e.chunk_id FROM entities e JOIN chunks c ON c.id = e.chunk_id "
            "JOIN active a ON a.doc_id = c.doc_id AND a.sha256 = c.doc_sha256 AND a.chunker = c.chunker "
            "WHERE e.label = ?"
        )
        if norms is None:
            return {r[0] for r in self._raw().execute(q, (label,))}
        return {r[0] for r in self._rows_in(q + " AND e.norm IN (?*)", norms, label)}

    def entity_counts(self, label: str | None = None, top: int | None = None) -> list[tuple[str, str, int]]:
        q = (
            "SELECT e.label, e.norm, COUNT(*) AS n FROM entities e JOIN chunks c ON c.id = e.chunk_id "
            "JOIN active a ON a.doc_id = c.doc_id AND a.sha256 = c.doc_sha256 AND a.chunker = c.chunker"
        )
        args: list[object] = []
        if label is not None:
            q += " WHERE e.label = ?"
            args.append(label)
        q += " GROUP BY e.label, e.norm ORDER BY n DESC, e.label, e.norm"
        if top is not None:
            q += " LIMIT ?"
            args.append(top)
        return [(r[0], r[1], int(r[2])) for r in self._raw().execute(q, args)]

    # ---- the commit point -------------------------------------------------------------------
    def commit_generation(self, active: dict[str, tuple[str, str]], index_name: str) -> None:
        """Atomically replace the active corpus and the active index directory name."""
        with self._conn() as c:
            c.execute("DELETE FROM previous")
            c.execute("INSERT INTO previous SELECT doc_id, sha256, chunker FROM active")
            c.execute("DELETE FROM active")
            c.executemany("INSERT INTO active VALUES (?, ?, ?)", [(k, s, ch) for k, (s, ch) in active.items()])
            c.execute("INSERT OR REPLACE INTO meta VALUES ('active_index', ?)", (index_name,))

    def collect_garbage(self) -> int:
        """Drop document versions, chunks, vectors and entities neither active nor of the previous
        generation. Returns chunks removed."""
        with self._conn() as c:
            dead = (
                "SELECT c.id FROM chunks c WHERE NOT EXISTS (SELECT 1 FROM active a WHERE a.doc_id = c.doc_id "
                "AND a.sha256 = c.doc_sha256 AND a.chunker = c.chunker) AND NOT EXISTS (SELECT 1 FROM previous p "
                "WHERE p.doc_id = c.doc_id AND p.sha256 = c.doc_sha256 AND p.chunker = c.chunker)"
            )
            c.execute(f"CREATE TEMP TABLE IF NOT EXISTS dead AS {dead}")
            c.execute("DELETE FROM dead")
            c.execute(f"INSERT INTO dead {dead}")
            n = c.execute("SELECT COUNT(*) FROM dead").fetchone()[0]
            c.execute("DELETE FROM entities WHERE chunk_id IN (SELECT id FROM dead)")
            c.execute("DELETE FROM chunks WHERE id IN (SELECT id FROM dead)")
            # Vectors of texts no chunk holds any more; those of other embedders stay for a switch back.
            c.execute("DELETE FROM embeddings WHERE NOT EXISTS (SELECT 1 FROM chunks WHERE chunks.text_sha = embeddings.text_sha)")
            c.execute("DELETE FROM sentence_vectors WHERE NOT EXISTS "
                      "(SELECT 1 FROM chunks WHERE chunks.text_sha = sentence_vectors.text_sha)")
            c.execute(
                "DELETE FROM documents WHERE NOT EXISTS (SELECT 1 FROM active a WHERE a.doc_id = documents.doc_id "
                "AND a.sha256 = documents.sha256) AND NOT EXISTS (SELECT 1 FROM previous p "
                "WHERE p.doc_id = documents.doc_id AND p.sha256 = documents.sha256)"
            )
            c.execute(
                "DELETE FROM code_blocks WHERE NOT EXISTS (SELECT 1 FROM documents d WHERE d.doc_id = code_blocks.doc_id "
                "AND d.sha256 = code_blocks.sha256)")
            c.execute("DROP TABLE dead")
        return int(n)


def _put_code_blocks(c: sqlite3.Connection, docs: Iterable[Document]) -> None:
    """A version's code blocks come with its text from its file; a document read back from the store (a
    reindex) or sent as JSON carries none and leaves those stored for the same text alone."""
    coded = [d for d in docs if d.code]
    c.executemany("DELETE FROM code_blocks WHERE doc_id = ? AND sha256 = ?", [(d.doc_id, d.sha256) for d in coded])
    c.executemany("INSERT INTO code_blocks VALUES (?, ?, ?, ?)",
                  [(d.doc_id, d.sha256, a, b) for d in coded for a, b in d.code])


class _Tx:
    """`with store._conn() as c:` runs the block in one IMMEDIATE transaction."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def __enter__(self) -> sqlite3.Connection:
        self.conn.execute("BEGIN IMMEDIATE")
        return self.conn

    def __exit__(self, exc_type: object, *rest: object) -> None:
        if exc_type is None:
            self.conn.execute("COMMIT")
        else:
            self.conn.execute("ROLLBACK")

    def __getattr__(self, name: str) -> object:
        return getattr(self.conn, name)


def _doc(row: tuple) -> Document:
    return Document(doc_id=row[0], text=row[1], sha256=row[2], title=row[3], source=row[4], mtime=row[5],
                    metadata=json.loads(row[6]))
