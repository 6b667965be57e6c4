"""One index generation on disk: FAISS + BM25 + manifest, immutable once renamed into place."""

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


@dataclass
class Generation:
    path: Path
    manifest: dict[str, Any]
    dense: faiss.Index
    bm25: BM25Index

    @property
    def embedder(self) -> dict[str, Any]:
        return self.manifest["embedder"]


def new_name() -> str:
    return f"gen-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}-{uuid.uuid4().hex[:8]}"


def write_generation(final: Path, manifest_fields: dict[str, Any], index: faiss.Index, bm25: BM25Index) -> None:
    manifest = make_manifest(KIND, FORMAT_VERSION, **manifest_fields)
    with atomic_artifact_dir(final, manifest) as tmp:
        dense.save(index, tmp)
        bm25.save(tmp)


def load_generation(path: Path) -> Generation:
    manifest = read_manifest(path, KIND, FORMAT_VERSION)
    index = dense.load(path)
    bm25 = BM25Index.load(path, manifest["config"]["stemmer_language"])
    return Generation(path, manifest, index, bm25)


def chunk_ids_of(index: faiss.Index) -> np.ndarray:
    return faiss.vector_to_array(index.id_map).astype(np.int64) if index.ntotal else np.zeros(0, np.int64)
