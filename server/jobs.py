"""Background jobs (reindex): one at a time, run on a thread, state kept in memory for /v1/jobs/{id}.

The indexer's writer lock still guards the workspace across processes: a CLI ingest running at the
same time makes the job fail with a Conflict rather than corrupt anything.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from common.errors import Conflict, NotFound, RagkilnError

log = logging.getLogger(__name__)
MAX_KEPT = 100


@dataclass
class Job:
    id: str
    kind: str
    state: str = "queued"  # queued -> running -> succeeded | failed
    progress: float = 0.0
    created_at: float = field(default_factory=time.time)
    started_at: float | None = None
    finished_at: float | None = None
    counts: dict[str, Any] | None = None
    error: dict[str, str] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in ("id", "kind", "state", "progress", "created_at", "started_at",
                                              "finished_at", "counts", "error")}


class JobRegistry:
    def __init__(self) -> None:
        self._jobs: dict[str, Job] = {}
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []

    def submit(self, kind: str, work: Callable[[], dict[str, Any]]) -> Job:
        """Start `work` on a thread; Conflict while another job of the same kind is queued or running."""
        with self._lock:
            busy = [j for j in self._jobs.values() if j.kind == kind and j.state in ("queued", "running")]
            if busy:
                raise Conflict(f"{kind} job {busy[0].id} is still {busy[0].state}; poll /v1/jobs/{busy[0].id}")
            job = Job(uuid.uuid4().hex[:16], kind)
            self._jobs[job.id] = job
            self._trim()
        t = threading.Thread(target=self._run, args=(job, work), name=f"job-{job.id}", daemon=True)
        self._threads.append(t)
        t.start()
        return job

    def _run(self, job: Job, work: Callable[[], dict[str, Any]]) -> None:
        job.state, job.started_at = "running", time.time()
        try:
            job.counts = work()
            job.state, job.progress = "succeeded", 1.0
        except RagkilnError as e:
            job.state, job.error = "failed", {"code": e.code, "type": e.code, "message": str(e).splitlines()[0]}
        except Exception as e:  # noqa: BLE001 - recorded on the job, never raised into the server
            ref = uuid.uuid4().hex[:12]
            log.error("job %s failed (ref %s)", job.id, ref, exc_info=e)
            job.state, job.error = "failed", {"code": "internal", "type": "internal",
                                              "message": f"internal error (ref {ref}); see the server log"}
        finally:
            job.finished_at = time.time()

    def get(self, job_id: str) -> Job:
        job = self._jobs.get(job_id)
        if job is None:
            raise NotFound(f"no job with id {job_id!r}")
        return job

    def running(self) -> int:
        return sum(1 for j in self._jobs.values() if j.state in ("queued", "running"))

    def _trim(self) -> None:
        done = [j for j in self._jobs.values() if j.state in ("succeeded", "failed")]
        for j in sorted(done, key=lambda j: j.created_at)[: max(0, len(self._jobs) - MAX_KEPT)]:
            del self._jobs[j.id]

    def close(self, timeout: float = 0.0) -> None:
        for t in self._threads:
            t.join(timeout)
