"""One index generation on disk: FAISS (chunks, and their sentences when built with them) + BM25 + manifest,
immutable once renamed into place."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from common.artifacts import atomic_artifact_dir, make_manifest, read_manifest
from indexer import dense
from indexer.bm25 import BM25Index

KIND = "index"
FORMAT_VERSION = 1
SENTENCE_FILE = "sentences.faiss"


@dataclass
class Generation:
    path: Path
    manifest: dict[str, Any]
    dense: faiss.Index
    bm25: BM25Index
    sentences: faiss.Index | None = None  # sentence vectors under their chunk's id (`dense.search_with_sentences`)

    @property
    def embedder(self) -> dict[str, Any]:
        return self.manifest["embedder"]


def new_name() -> str:
    return f"gen-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}-{uuid.uuid4().hex[:8]}"


def write_generation(final: Path, manifest_fields: dict[str, Any], index: faiss.Index, bm25: BM25Index,
                     sentences: faiss.Index | None = None) -> None:
    manifest = make_manifest(KIND, FORMAT_VERSION, **manifest_fields)
    with atomic_artifact_dir(final, manifest) as tmp:
        dense.save(index, tmp)
        if sentences is not None:
            dense.save(sentences, tmp, SENTENCE_FILE)
        bm25.save(tmp)


def generation_manifest(path: Path) -> dict[str, Any]:
    """A generation's manifest alone, without loading its indexes."""
    return read_manifest(path, KIND, FORMAT_VERSION)


def load_generation(path: Path) -> Generation:
    manifest = generation_manifest(path)
    index = dense.load(path)
    sentences = dense.load(path, SENTENCE_FILE) if has_sentences(manifest) else None
    bm25 = BM25Index.load(path, manifest["config"]["stemmer_language"])
    return Generation(path, manifest, index, bm25, sentences)


def has_sentences(manifest: dict[str, Any]) -> bool:
    """Whether a generation holds sentence vectors (indexes from before them do not)."""
    return "sentences" in manifest.get("counts", {})


def chunk_ids_of(index: faiss.Index) -> np.ndarray:
    return faiss.vector_to_array(index.id_map).astype(np.int64) if index.ntotal else np.zeros(0, np.int64)
