"""Domain errors: raised once in the core, mapped once per front end (CLI exit codes, HTTP status).

Front ends map on the class, never on message text. Every message is one line a user can act on.
"""

from __future__ import annotations


class RagkilnError(Exception):
    """Base of every error a user can cause or fix."""

    code = "error"


class InvalidInput(RagkilnError):
    """The request or file given is malformed (bad JSON, wrong type, unknown field...)."""

    code = "invalid_input"


class NothingIngested(InvalidInput):
    """Every input of an ingest was refused (unsupported, unreadable, too large): nothing was stored."""

    code = "nothing_ingested"


class TooLittleData(InvalidInput):
    """The corpus is too small for a training step (pairs to split, queries to judge): a command that asked for
    it fails with the reason; the build skips the step, says why, and goes on."""

    code = "too_little_data"


class NotFound(RagkilnError):
    """A document, job, model or workspace artifact that was asked for does not exist."""

    code = "not_found"


class ManifestMismatch(RagkilnError):
    """An artifact was built with something other than what is being used to read it."""

    code = "manifest_mismatch"


class ArtifactCorrupt(RagkilnError):
    """An artifact on disk is missing files, has a wrong format version or a bad hash."""

    code = "artifact_corrupt"


class ModelUnavailable(RagkilnError):
    """A model (embedder, spaCy pipeline, GGUF) is not installed or cannot be loaded."""

    code = "model_unavailable"


class ContextOverflow(RagkilnError):
    """A prompt does not fit the model's context window."""

    code = "context_overflow"


class Busy(RagkilnError):
    """A bounded queue is full; retry later."""

    code = "busy"

    def __init__(self, message: str, retry_after_s: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class Conflict(RagkilnError):
    """The operation conflicts with work in progress (e.g. a reindex already running)."""

    code = "conflict"


class Unauthorized(RagkilnError):
    """No or an unknown API key."""

    code = "unauthorized"


class Forbidden(RagkilnError):
    """A known key without the scope the operation needs."""

    code = "forbidden"


class ProcessDied(RagkilnError):
    """A worker process (a build stage's) ended without a result: killed by a signal (the kernel's
    out-of-memory killer sends SIGKILL) or exited outright."""

    code = "process_died"
