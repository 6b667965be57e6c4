"""A document of two chunks, another document's chunk and a fake embedder: what the reader.answer and
server.answering unit tests read (fakes live only in tests)."""

from __future__ import annotations

import numpy as np

from indexer.types import Chunk

DOC = "Intro line here. The trial enrolled 43,000 volunteers in 2020. It measured infections in Germany."
CHUNK_START = 17  # the chunk is DOC[17:], as a second chunk of its document
CHUNK = Chunk(7, "vaccine.md#abc:1", "vaccine.md", 1, CHUNK_START, len(DOC), DOC[CHUNK_START:], "Vaccine")
OTHER = Chunk(9, "bridge.txt#def:0", "bridge.txt", 0, 0, 40, "Joseph Strauss was the chief engineer.", "Bridge")


class Emb:
    id, dim = "fake", 8

    def encode(self, texts, is_query=False, **_kw):
        rng = [np.random.default_rng(abs(hash(t)) % 2**32).normal(size=self.dim) for t in texts]
        return np.asarray([v / np.linalg.norm(v) for v in rng], np.float32)
