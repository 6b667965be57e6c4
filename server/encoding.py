"""The batcher's view of an embedder: queries at the workspace's precision (`indexer.query_precision`).

The precision itself (fp32, or bf16 weights where the CPU computes bf16 natively) lives in the indexer's
embedder so the CLI, evaluation and the server embed queries identically; bench/server.py measures the
top-10 agreement of the two on the served index.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


class QueryEncoder:
    """Wraps an indexer embedder for the batcher: same `id`, queries encoded at `precision`."""

    def __init__(self, embedder: Any, precision: str) -> None:
        self.embedder, self.precision = embedder, precision
        self.id = embedder.id

    def encode(self, texts: Sequence[str], is_query: bool = True) -> np.ndarray:
        return self.embedder.encode(list(texts), is_query=True, precision=self.precision)
