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

    def term_weights(self, query: str) -> dict[str, float]:
        """Each of the query's terms (as `tokenize` makes them) with its IDF times its count in the query,
        the most it can add to a passage's score. The IDF is bm25s's "lucene" one, log(1 + (N - df + 0.5) /
        (df + 0.5)); a term no passage holds counts with df = 0, the highest IDF, so a question about words
        the corpus never uses is not mistaken for one about the few words it shares with it."""
        n_docs = len(self.ids)
        out: dict[str, float] = {}
        for t in tokenize(query, self.language):
            out[t] = out.get(t, 0.0) + _lucene_idf(self._doc_freq(t), n_docs)
        return out

    def max_score(self, query: str) -> float:
        """The BM25 score no passage can exceed for `query`: the sum of its term weights (bm25s's lucene
        term-frequency factor tf / (tf + k1 * (1 - b + b * len / avg_len)) stays below 1). A hit's score
        divided by it is comparable across queries and corpora; 0.0 for a query without terms."""
        return float(sum(self.term_weights(query).values()))

    def _doc_freq(self, term: str) -> int:
        """Passages holding `term`: the length of its column in bm25s's CSC score matrix."""
        tid = self.retriever.vocab_dict.get(term) if len(self.ids) else None
        if tid is None:
            return 0
        indptr = self.retriever.scores["indptr"]
        return int(indptr[tid + 1] - indptr[tid])

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


def _lucene_idf(df: int, n_docs: int) -> float:
    return float(np.log(1.0 + (n_docs - df + 0.5) / (df + 0.5)))


def _topk(scores: np.ndarray, k: int) -> np.ndarray:
    nz = np.flatnonzero(scores > 0)
    if len(nz) > k:
        part = np.argpartition(-scores[nz], k - 1)[:k]
        nz = nz[part]
    return nz[np.argsort(-scores[nz], kind="stable")]
