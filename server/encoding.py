"""Query embedding as the server runs it: fp32, or bf16 autocast where the CPU computes bf16 natively.

Why: a search costs one transformer pass per query and the pass is compute-bound; with AVX512-BF16
(or AMX) bf16 autocast makes it about 2.5x cheaper while the normalised vectors stay within
cosine 0.9999 of fp32 (bench/server.py measures both the speed and the top-10 agreement on the
served index). Documents are always embedded in fp32 by the indexer; only queries take this path.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


def bf16_supported() -> bool:
    import torch

    return bool(torch.cpu._is_avx512_bf16_supported() or getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)())


def resolve_precision(setting: str) -> str:
    """'auto' -> 'bf16' on CPUs with native bf16, else 'fp32'."""
    if setting == "auto":
        return "bf16" if bf16_supported() else "fp32"
    return setting


class QueryEncoder:
    """Wraps an indexer embedder for the batcher: same `id`, queries encoded at `precision`."""

    def __init__(self, embedder: Any, precision: str) -> None:
        self.embedder, self.precision = embedder, precision
        self.id = embedder.id

    def encode(self, texts: Sequence[str], is_query: bool = True) -> np.ndarray:
        if self.precision == "fp32" or not hasattr(self.embedder, "model"):
            return self.embedder.encode(list(texts), is_query=True)
        import torch

        model = self.embedder.model
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
            features = model.preprocess(list(texts)) if hasattr(model, "preprocess") else model.tokenize(list(texts))
            emb = model.forward(features)["sentence_embedding"]  # (n, dim) bf16
        emb = torch.nn.functional.normalize(emb.float(), p=2, dim=1)
        return emb.numpy().astype(np.float32, copy=False)
