"""BM25 over chunk texts with bm25s (English stemming and stop words).

bm25s scores documents by position; `ids.npy` maps each position to its chunk id.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from pathlib import Path

import bm25s
import numpy as np

SUBDIR = "bm25"
_TOKEN = re.compile(r"(?u)\b\w\w+\b")


@functools.lru_cache(maxsize=4)
def _stemmer(language: str):  # type: ignore[no-untyped-def]
    import Stemmer

    return Stemmer.Stemmer(language)


@functools.lru_cache(maxsize=1)
def _stopwords() -> frozenset[str]:
    from bm25s.stopwords import STOPWORDS_EN

    return frozenset(STOPWORDS_EN)


def tokenize(text: str, language: str = "english") -> list[str]:
    """Lowercase word tokens, stop words dropped, stemmed; the same function for corpus and queries."""
    stop = _stopwords()
    words = [w for w in _TOKEN.findall(text.lower()) if w not in stop]
    return _stemmer(language).stemWords(words)


class BM25Index:
    def __init__(self, retriever: bm25s.BM25, ids: np.ndarray, language: str) -> None:
        self.retriever = retriever
        self.ids = ids
        self.language = language
        self._pos = {int(c): i for i, c in enumerate(ids)}

    @classmethod
    def build(cls, texts: Sequence[str], ids: np.ndarray, k1: float, b: float, language: str) -> "BM25Index":
        retriever = bm25s.BM25(k1=k1, b=b)
        corpus_tokens = [tokenize(t, language) or ["\u2205"] for t in texts]
        if corpus_tokens:
            retriever.index(corpus_tokens, show_progress=False)
        return cls(retriever, ids.astype(np.int64), language)

    def scores(self, query: str) -> np.ndarray:
        if len(self.ids) == 0:
            return np.zeros(0, np.float32)
        toks = [t for t in tokenize(query, self.language) if t in self.retriever.vocab_dict]
        if not toks:
            return np.zeros(len(self.ids), np.float32)
        return self.retriever.get_scores(toks)

    def search(self, query: str, k: int, allowed: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (scores, chunk ids), best first; zero-score chunks are not hits."""
        s = self.scores(query)
        if allowed is not None:
            pos = np.array([self._pos[int(c)] for c in allowed if int(c) in self._pos], dtype=np.int64)
            sub = s[pos] if len(pos) else np.zeros(0, np.float32)
            top = _topk(sub, k)
            return sub[top], self.ids[pos[top]]
        top = _topk(s, k)
        return s[top], self.ids[top]

    def save(self, directory: Path) -> None:
        d = directory / SUBDIR
        d.mkdir(parents=True, exist_ok=True)
        if len(self.ids):
            self.retriever.save(str(d))
        np.save(d / "ids.npy", self.ids)

    @classmethod
    def load(cls, directory: Path, language: str) -> "BM25Index":
        d = directory / SUBDIR
        ids = np.load(d / "ids.npy")
        retriever = bm25s.BM25.load(str(d), mmap=False) if len(ids) else bm25s.BM25()
        return cls(retriever, ids, language)


def _topk(scores: np.ndarray, k: int) -> np.ndarray:
    nz = np.flatnonzero(scores > 0)
    if len(nz) > k:
        part = np.argpartition(-scores[nz], k - 1)[:k]
        nz = nz[part]
    return nz[np.argsort(-scores[nz], kind="stable")]
