"""Write jobs and their Idempotency-Keys, kept in `<workspace>/jobs.sqlite` so they outlive the process.

One row per job: its state (queued -> running -> committed | failed), the index generation it made
active, the reason it failed, and the Idempotency-Key it was submitted with (unique, so two server
workers given the same key agree on one job). A failed job releases its key: a failed write changed
nothing, so sending it again under the same key runs it again.

Each server process owns its jobs through a lock file it holds for its lifetime
(`<workspace>/.jobs/<owner>.lock`). A job still queued or running whose owner's lock is free belongs
to a process that stopped; `JobStore.recover` settles it from what the docstore shows (see
`JobRegistry`), so no job stays "running" forever and none is called failed once committed.
"""

from __future__ import annotations

import fcntl
import json
import os
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

FINISHED = ("committed", "failed")
_PUBLIC = ("id", "kind", "state", "progress", "created_at", "started_at", "finished_at", "counts", "error",
           "generation", "ids")
_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY, kind TEXT NOT NULL, state TEXT NOT NULL, progress REAL NOT NULL,
    created_at REAL NOT NULL, started_at REAL, finished_at REAL, counts TEXT, error TEXT, generation TEXT,
    ids TEXT NOT NULL, http_status INTEGER, idem_key TEXT UNIQUE, fingerprint TEXT NOT NULL, want TEXT,
    owner TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS jobs_state ON jobs (state, finished_at);
"""


@dataclass
class Job:
    id: str
    kind: str  # upsert | delete | reindex
    state: str = "queued"  # queued -> running -> committed | failed
    progress: float = 0.0
    created_at: float = field(default_factory=time.time)
    started_at: float | None = None
    finished_at: float | None = None
    counts: dict[str, Any] | None = None
    error: dict[str, str] | None = None
    generation: str | None = None  # the index generation active once the job committed
    ids: list[str] = field(default_factory=list)  # documents the write touches
    http_status: int | None = None  # what a failed write answers when its request is still waiting
    live: bool = False  # run by this process (so waiting on it ends); False for rows read from the store
    _callbacks: list[Callable[[], None]] = field(default_factory=list, repr=False)
    _cb_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def finished(self) -> bool:
        return self.state in FINISHED

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in _PUBLIC}

    def add_done_callback(self, fn: Callable[[], None]) -> None:
        """Call `fn` (on the writer thread) once the job is committed or failed; at once if it already is."""
        with self._cb_lock:
            if not self.finished:
                self._callbacks.append(fn)
                return
        fn()

    def finish(self) -> None:
        with self._cb_lock:
            callbacks, self._callbacks = self._callbacks, []
        for fn in callbacks:
            fn()


def new_job(kind: str, ids: list[str]) -> Job:
    return Job(uuid.uuid4().hex[:16], kind, ids=list(ids), live=True)


class KeyTaken(Exception):
    """Another request (maybe in another worker) stored a job under this Idempotency-Key first."""


class JobStore:
    """The jobs table; every call is one short transaction under a process-wide lock."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(path) if path else ":memory:", timeout=30, check_same_thread=False,
                                   isolation_level=None)
        self._lock = threading.Lock()
        with self._lock:
            if path is not None:
                self._db.execute("PRAGMA journal_mode=WAL")
            self._db.executescript(_SCHEMA)

    def insert(self, job: Job, key: str | None, fingerprint: str, want: dict[str, Any] | None, owner: str) -> None:
        try:
            with self._lock:
                self._db.execute(
                    "INSERT INTO jobs (id, kind, state, progress, created_at, ids, idem_key, fingerprint, want, owner) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (job.id, job.kind, job.state, job.progress, job.created_at, json.dumps(job.ids), key, fingerprint,
                     json.dumps(want) if want is not None else None, owner))
        except sqlite3.IntegrityError as e:
            raise KeyTaken(key) from e

    def update(self, job: Job) -> None:
        """Write the job's state; a failed job releases its Idempotency-Key."""
        with self._lock:
            self._db.execute(
                "UPDATE jobs SET state=?, progress=?, started_at=?, finished_at=?, counts=?, error=?, generation=?, "
                "http_status=?, idem_key=CASE WHEN ?='failed' THEN NULL ELSE idem_key END WHERE id=?",
                (job.state, job.progress, job.started_at, job.finished_at, _dumps(job.counts), _dumps(job.error),
                 job.generation, job.http_status, job.state, job.id))

    def get(self, job_id: str) -> Job | None:
        with self._lock:
            row = self._db.execute(f"SELECT {_COLUMNS} FROM jobs WHERE id=?", (job_id,)).fetchone()
        return _job(row) if row else None

    def by_key(self, key: str) -> tuple[Job, str] | None:
        """(job, request fingerprint) stored under an Idempotency-Key that is still held."""
        with self._lock:
            row = self._db.execute(f"SELECT {_COLUMNS}, fingerprint FROM jobs WHERE idem_key=?", (key,)).fetchone()
        return (_job(row[:-1]), row[-1]) if row else None

    def unfinished(self, exclude_owner: str) -> list[tuple[Job, str, dict[str, Any] | None]]:
        """(job, owner, want) of every job queued or running in another process."""
        with self._lock:
            rows = self._db.execute(f"SELECT {_COLUMNS}, owner, want FROM jobs WHERE state IN ('queued', 'running') "
                                    "AND owner != ?", (exclude_owner,)).fetchall()
        return [(_job(r[:-2]), r[-2], json.loads(r[-1]) if r[-1] else None) for r in rows]

    def trim(self, max_age_s: float, max_count: int) -> int:
        """Forget finished jobs (and their keys) older than `max_age_s` or beyond the newest `max_count`."""
        with self._lock:
            cur = self._db.execute(
                "DELETE FROM jobs WHERE state IN ('committed', 'failed') AND (finished_at < ? OR id IN ("
                "SELECT id FROM jobs WHERE state IN ('committed', 'failed') ORDER BY finished_at DESC LIMIT -1 OFFSET ?))",
                (time.time() - max_age_s, max_count))
            return cur.rowcount

    def close(self) -> None:
        with self._lock:
            self._db.close()


_COLUMNS = ", ".join(("id", "kind", "state", "progress", "created_at", "started_at", "finished_at", "counts", "error",
                      "generation", "ids", "http_status"))


def _dumps(v: Any) -> str | None:
    return json.dumps(v) if v is not None else None


def _job(row: tuple) -> Job:
    (id_, kind, state, progress, created, started, finished, counts, error, generation, ids, http_status) = row
    return Job(id_, kind, state, progress, created, started, finished, json.loads(counts) if counts else None,
               json.loads(error) if error else None, generation, json.loads(ids), http_status)


class OwnerLock:
    """This process's claim on its jobs: a lock file held while the process lives."""

    def __init__(self, folder: Path | None) -> None:
        self.id = uuid.uuid4().hex[:12]
        self.folder = folder
        self._fd: int | None = None
        if folder is not None:
            folder.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(folder / f"{self.id}.lock", os.O_RDWR | os.O_CREAT, 0o644)
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)

    def is_gone(self, owner: str) -> bool:
        """True when `owner`'s process no longer holds its lock (it stopped); its lock file is removed."""
        if self.folder is None:
            return False
        path = self.folder / f"{owner}.lock"
        try:
            fd = os.open(path, os.O_RDWR)
        except FileNotFoundError:
            return True
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        finally:
            os.close(fd)
        path.unlink(missing_ok=True)
        return True

    def release(self) -> None:
        if self._fd is not None and self.folder is not None:
            (self.folder / f"{self.id}.lock").unlink(missing_ok=True)
            os.close(self._fd)
            self._fd = None
