"""The workspace folder: docstore, index generations, models and reports, with a writer lock."""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from common.errors import Conflict, NotFound
from common.settings import Settings
from indexer.docstore import DocStore
from indexer.embedder import load_embedder
from indexer.generation import generation_manifest, load_generation
from indexer.search import Searcher

log = logging.getLogger(__name__)


def home_of(settings: Settings) -> Path:
    return Path(settings.home).expanduser().resolve()


class Workspace:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.home = home_of(settings)
        self.home.mkdir(parents=True, exist_ok=True)
        self.indexes = self.home / "indexes"
        self.indexes.mkdir(exist_ok=True)
        self.store = DocStore(self.home / "docstore.sqlite")
        self._searcher: Searcher | None = None
        self._lock = threading.Lock()

    @classmethod
    def open(cls, settings: Settings) -> "Workspace":
        return cls(settings)

    @classmethod
    def existing(cls, settings: Settings) -> "Workspace":
        """The workspace for a command that only reads (search, ask, entities): a mistyped `--workspace` is an
        error, not a new empty workspace left at that path."""
        home = home_of(settings)
        if not (home / "docstore.sqlite").is_file():
            raise NotFound(f"no workspace at {home}: run `ragkiln ingest PATH` there first (or pass --workspace)")
        return cls(settings)

    @property
    def models(self) -> Path:
        return self.home / "models"

    def active_index_name(self) -> str | None:
        return self.store.get_meta("active_index")

    def active_index_path(self) -> Path | None:
        name = self.active_index_name()
        return self.indexes / name if name else None

    def active_embedder(self) -> dict[str, Any] | None:
        """The active index manifest's `embedder` section: the model its vectors came from."""
        active = self.active_index_path()
        return generation_manifest(active)["embedder"] if active is not None else None

    def served_model_dirs(self) -> set[Path]:
        """The model directories the active index reads its query embedder from (an int8 export and the torch
        model it was made from): overwriting one leaves the index unable to search until a reindex."""
        section = self.active_embedder() or {}
        paths = [section.get("path"), (section.get("base") or {}).get("path")]
        return {Path(p).expanduser().resolve() for p in paths if p}

    def searcher(self, embedder_override: str | None = None) -> Searcher:
        """The searcher over the active generation, reloaded when another process switched it."""
        name = self.active_index_name()
        if name is None:
            raise NotFound(f"workspace {self.home} has no index yet; run `ragkiln ingest PATH` first")
        with self._lock:
            if self._searcher is None or self._searcher.name != name:
                gen = load_generation(self.indexes / name)
                emb_path = gen.embedder["path"]
                embedder = load_embedder(emb_path, self.settings.indexer.threads)
                if embedder.id != gen.embedder["id"]:
                    from common.errors import ManifestMismatch

                    raise ManifestMismatch(
                        f"index {name} was built with embedder {gen.embedder['id']}, but {emb_path} now holds "
                        f"{embedder.id}; run `ragkiln reindex --embedder DIR`"
                    )
                self._searcher = Searcher(gen, embedder, self.store, self.settings.indexer)
                log.debug("loaded index %s (%d chunks)", name, self._searcher.size)
            searcher = self._searcher
        if embedder_override is not None:
            other = load_embedder(embedder_override, self.settings.indexer.threads)
            if other.id != searcher.embedder.id:
                from common.errors import ManifestMismatch

                raise ManifestMismatch(
                    f"the index was built with embedder {searcher.embedder.id}; refusing to query it with "
                    f"{other.id} (reindex with `ragkiln reindex --embedder {embedder_override}`)"
                )
        return searcher

    @contextlib.contextmanager
    def writer(self) -> Iterator[None]:
        """Exclusive lock for ingest/reindex across processes; a second writer gets Conflict."""
        path = self.home / ".writer.lock"
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError as e:
                raise Conflict(f"another ingest or reindex is running in {self.home}") from e
            yield
        finally:
            os.close(fd)

    def remove_stale_generations(self) -> None:
        """Delete temporary and inactive generation directories (call with the writer lock held)."""
        active = self.active_index_name()
        for p in self.indexes.iterdir():
            if p.name != active and p.is_dir():
                shutil.rmtree(p, ignore_errors=True)
