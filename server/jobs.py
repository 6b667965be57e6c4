"""Writes as jobs: one writer thread runs upserts, deletes and reindexes in the order they came.

`submit` answers at once with a job (queued); the writer thread runs it and records committed (with
the index generation it made active) or failed (with the reason). The queue is bounded: past
`server.write_queue_size` writes queued or running, `submit` raises Busy (HTTP 429, Retry-After).
A write never fails because another one runs: in this process they queue, and the workspace writer
lock another process holds (a CLI `ragkiln ingest`, another server worker) is waited for, retrying,
up to `server.write_lock_wait_s`.

An Idempotency-Key names one job: a write sent again with the same key and the same request gets
the first one's job back (whatever its state), with another request a Conflict (409). Jobs and keys
live in `<workspace>/jobs.sqlite` (server/job_store.py) for `server.job_retention_h` hours, at most
`server.job_retention_count` of them, so they survive a restart and are shared by server workers.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from common.errors import Busy, Conflict, NotFound, RagkilnError
from server.errors import status_for
from server.job_store import Job, JobStore, KeyTaken, OwnerLock, new_job

log = logging.getLogger(__name__)
__all__ = ["Job", "JobRegistry", "wait_for_job"]

Work = Callable[[], "dict[str, Any] | tuple[dict[str, Any], str | None]"]
# (active documents {doc_id: sha256}, active generation) of the workspace, to settle a stopped process's jobs
Probe = Callable[[], "tuple[dict[str, str], str | None]"]
KEPT_IN_MEMORY = 200
INTERRUPTED = "interrupted"


class JobRegistry:
    def __init__(self, store: JobStore | None = None, owners: Path | None = None, *, queue_size: int = 8,
                 lock_wait_s: float = 600.0, retention_s: float = 86400.0, retention_count: int = 10_000,
                 probe: Probe | None = None, lock_retry_s: float = 0.5) -> None:
        self.store = store or JobStore()
        self.queue_size, self.lock_wait_s, self.lock_retry_s = queue_size, lock_wait_s, lock_retry_s
        self.retention_s, self.retention_count = retention_s, retention_count
        self._owner = OwnerLock(owners)
        self._jobs: dict[str, Job] = {}
        self._lock = threading.Lock()
        self._queue: queue.Queue[tuple[Job, Work] | None] = queue.Queue()
        self._pending = 0  # queued or running in this process
        self._durations: deque[float] = deque(maxlen=20)
        self._stop = threading.Event()
        if probe is not None:
            self.recover(probe)
        self._thread = threading.Thread(target=self._loop, name="writer", daemon=True)
        self._thread.start()

    @classmethod
    def for_workspace(cls, home: Path, cfg: Any, probe: Probe | None = None) -> JobRegistry:
        """The registry of a server over workspace `home`, bounded by `cfg` (a ServerConfig)."""
        return cls(JobStore(Path(home) / "jobs.sqlite"), Path(home) / ".jobs", queue_size=cfg.write_queue_size,
                   lock_wait_s=cfg.write_lock_wait_s, retention_s=cfg.job_retention_h * 3600,
                   retention_count=cfg.job_retention_count, probe=probe)

    # ---- submitting -------------------------------------------------------------------------------
    def find(self, key: str | None, fingerprint: str) -> Job | None:
        """The job an Idempotency-Key holds; Conflict when it was given for another request."""
        if not key:
            return None
        found = self.store.by_key(key)
        if found is None:
            return None
        job, fp = found
        if fp != fingerprint:
            raise Conflict(f"Idempotency-Key {key!r} was used for another request (job {job.id}, a {job.kind}); "
                           "send a new key for a new request")
        return self._jobs.get(job.id, job)

    def submit(self, kind: str, work: Work, *, key: str | None = None, fingerprint: str = "",
               want: dict[str, Any] | None = None, ids: Sequence[str] = ()) -> Job:
        """Queue `work` as a job (or return the job `key` already names); Busy when the queue is full."""
        with self._lock:
            known = self.find(key, fingerprint)
            if known is not None:
                return known
            if self._pending >= self.queue_size:
                raise Busy(f"{self._pending} writes are queued or running (server.write_queue_size); retry later",
                           retry_after_s=self._retry_after())
            job = new_job(kind, list(ids))
            try:
                self.store.insert(job, key, fingerprint, want, self._owner.id)
            except KeyTaken:  # another worker stored this key between find and insert
                known = self.find(key, fingerprint)
                if known is not None:
                    return known
                raise
            self._jobs[job.id] = job
            self._pending += 1
            self._queue.put((job, work))
        return job

    def _retry_after(self) -> float:
        mean = sum(self._durations) / len(self._durations) if self._durations else 5.0
        return min(60.0, max(1.0, mean * self._pending / 2))

    # ---- reading ----------------------------------------------------------------------------------
    def get(self, job_id: str) -> Job:
        job = self._jobs.get(job_id) or self.store.get(job_id)
        if job is None:
            raise NotFound(f"no job with id {job_id!r}")
        return job

    def running(self) -> int:
        """Writes queued or running in this process."""
        return self._pending

    # ---- the writer thread ------------------------------------------------------------------------
    def _loop(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            job, work = item
            try:
                if self._stop.is_set():
                    self._fail(job, INTERRUPTED, "the server stopped before this write ran; nothing was written", 503)
                else:
                    self._run(job, work)
            finally:
                with self._lock:
                    self._pending -= 1
                    self._forget_old()
                job.finish()

    def _run(self, job: Job, work: Work) -> None:
        job.state, job.started_at = "running", time.time()
        self.store.update(job)
        try:
            result = self._with_lock_wait(work)
            counts, generation = result if isinstance(result, tuple) else (result, None)
            job.counts, job.generation = counts, generation
            job.state, job.progress, job.finished_at = "committed", 1.0, time.time()
            self._durations.append(job.finished_at - job.started_at)
            self.store.update(job)
        except RagkilnError as e:
            self._fail(job, e.code, str(e).splitlines()[0] if str(e) else type(e).__name__, status_for(e))
        except Exception as e:  # noqa: BLE001 - recorded on the job, never raised into the server
            ref = uuid.uuid4().hex[:12]
            log.error("job %s failed (ref %s)", job.id, ref, exc_info=e)
            self._fail(job, "internal", f"internal error (ref {ref}); see the server log", 500)

    def _with_lock_wait(self, work: Work) -> Any:
        """Run `work`, retrying while another process holds the workspace writer lock (Conflict)."""
        deadline = time.monotonic() + self.lock_wait_s
        while True:
            try:
                return work()
            except Conflict as e:
                if time.monotonic() + self.lock_retry_s > deadline or self._stop.is_set():
                    raise Conflict(f"{str(e).splitlines()[0]} for over {self.lock_wait_s:g}s "
                                   "(server.write_lock_wait_s); nothing was written") from e
                time.sleep(self.lock_retry_s)

    def _fail(self, job: Job, code: str, message: str, http_status: int) -> None:
        job.state, job.finished_at, job.http_status = "failed", time.time(), http_status
        job.error = {"code": code, "type": code, "message": message}
        self.store.update(job)

    def _forget_old(self) -> None:
        done = [j for j in self._jobs.values() if j.finished]
        for j in sorted(done, key=lambda j: j.created_at)[: max(0, len(done) - KEPT_IN_MEMORY)]:
            del self._jobs[j.id]
        self.store.trim(self.retention_s, self.retention_count)

    # ---- a stopped process's jobs -----------------------------------------------------------------
    def recover(self, probe: Probe) -> int:
        """Settle the queued/running jobs of server processes that stopped, from the docstore: an upsert
        whose document versions are all active, or a delete whose document is gone, committed; anything
        else failed (not written: the commit is atomic)."""
        stale = [(job, want) for job, owner, want in self.store.unfinished(self._owner.id)
                 if self._owner.is_gone(owner)]
        if not stale:
            return 0
        active, generation = probe()
        for job, want in stale:
            want = want or {}
            docs, deleted = want.get("docs"), want.get("deleted")
            if docs is not None or deleted is not None:
                done = (all(active.get(i) == sha for i, sha in (docs or {}).items())
                        and not any(i in active for i in deleted or ()))
                if done:
                    job.state, job.progress, job.generation, job.finished_at = "committed", 1.0, generation, time.time()
                    self.store.update(job)
                else:
                    self._fail(job, INTERRUPTED, "the server stopped before this write committed; nothing was "
                               "written: send it again", 503)
            else:
                self._fail(job, INTERRUPTED, f"the server stopped while this {job.kind} ran (active index now "
                           f"{generation}); it is safe to run again", 503)
            log.warning("job %s of a stopped server: %s", job.id, job.state)
        return len(stale)

    def close(self, timeout: float = 0.0) -> None:
        """Stop taking work: queued jobs fail (nothing written); a running one finishes if the process lives."""
        self._stop.set()
        self._queue.put(None)
        self._thread.join(timeout)
        if not self._thread.is_alive():
            self._owner.release()


async def wait_for_job(job: Job, timeout: float) -> bool:
    """Wait (without blocking the event loop) up to `timeout` s for a job of this process to finish."""
    if job.finished:
        return True
    if not job.live or timeout <= 0:
        return False
    loop = asyncio.get_running_loop()
    done = asyncio.Event()

    def wake() -> None:
        try:
            loop.call_soon_threadsafe(done.set)
        except RuntimeError:  # the loop closed meanwhile
            pass

    job.add_done_callback(wake)
    try:
        await asyncio.wait_for(done.wait(), timeout)
    except asyncio.TimeoutError:
        return job.finished
    return True

