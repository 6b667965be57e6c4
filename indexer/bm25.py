"""BM25 over chunk texts with bm25s (English stemming and stop words).

bm25s scores documents by position; `ids.npy` maps each position to its chunk id. The index is built from a
stream of texts (`BM25Index.build`): each text is tokenized, counted and dropped, so the build holds the postings
as flat numpy arrays (a few bytes per distinct term of each chunk, the size of the finished index) and never the
corpus's token lists, which bm25s's own `index` keeps as Python lists of strings and then of ints.
"""

from __future__ import annotations

import functools
import re
from array import array
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

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
        self._sorted: tuple[np.ndarray, np.ndarray] | None = None  # (argsort of ids, sorted ids), made on demand

    @classmethod
    def build(cls, texts: Iterable[str], ids: np.ndarray, k1: float, b: float, language: str) -> "BM25Index":
        """The index of `texts` (any iterable, consumed once, one text in memory at a time), position i
        scored as chunk `ids[i]`. Scores are those of `bm25s.BM25.index` over the same token lists."""
        retriever = bm25s.BM25(k1=k1, b=b)
        postings = _Postings()
        for t in texts:
            postings.add(tokenize(t, language) or ["\u2205"])
        if postings.n_docs != len(ids):
            raise ValueError(f"BM25 build: {postings.n_docs} texts for {len(ids)} ids")
        if postings.n_docs:
            retriever.scores, retriever.vocab_dict = postings.scores(retriever)
            retriever.unique_token_ids_set = set(retriever.vocab_dict.values())
            retriever.nonoccurrence_array = None  # what bm25s sets for its lucene method
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

    def score_text(self, query: str, text: str) -> float:
        """The BM25 score `text` would get for `query` as a passage of this index (its IDFs), taken to be of
        average length: for a text the index does not hold, such as a training positive with its query
        sentence cut out."""
        weights = self.term_weights(query)
        tf = Counter(tokenize(text, self.language))
        k1 = float(getattr(self.retriever, "k1", 1.5))
        return float(sum(w * tf[t] / (tf[t] + k1) for t, w in weights.items() if tf[t]))

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
            pos = self._positions(allowed)
            sub = s[pos] if len(pos) else np.zeros(0, np.float32)
            top = _topk(sub, k)
            return sub[top], self.ids[pos[top]]
        top = _topk(s, k)
        return s[top], self.ids[top]

    def _positions(self, chunk_ids: np.ndarray) -> np.ndarray:
        """The positions of those of `chunk_ids` the index holds, in their order (a binary search over the
        sorted ids: 16 bytes a chunk, where a dict of them took about a hundred)."""
        if self._sorted is None:
            order = np.argsort(self.ids, kind="stable")
            self._sorted = (order, self.ids[order])
        order, sorted_ids = self._sorted
        want = np.asarray(chunk_ids, dtype=np.int64).reshape(-1)
        if len(sorted_ids) == 0 or len(want) == 0:
            return np.zeros(0, np.int64)
        j = np.minimum(np.searchsorted(sorted_ids, want), len(sorted_ids) - 1)
        return order[j[sorted_ids[j] == want]].astype(np.int64)

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


class _Postings:
    """Term counts of a stream of token lists, kept as flat arrays: per document its length and number of
    distinct terms, per (document, term) pair the term's id (first-seen order) and its count."""

    def __init__(self) -> None:
        self.vocab: dict[str, int] = {}
        self.doc_len = array("q")
        self.doc_terms = array("q")
        self.term = array("i")
        self.tf = array("i")

    @property
    def n_docs(self) -> int:
        return len(self.doc_len)

    def add(self, tokens: list[str]) -> None:
        vocab = self.vocab
        counts = Counter(vocab.setdefault(t, len(vocab)) for t in tokens)  # bm25s counts with Counter too
        self.doc_len.append(len(tokens))
        self.doc_terms.append(len(counts))
        self.term.extend(counts.keys())
        self.tf.extend(counts.values())

    def scores(self, retriever: bm25s.BM25) -> tuple[dict[str, Any], dict[str, int]]:
        """bm25s's score matrix and vocabulary, computed as `BM25.build_index_from_ids` does (the same idf and
        term-frequency functions, per document, in float32), from the counts instead of token-id lists."""
        from bm25s.scoring import _select_idf_scorer, _select_tfc_scorer

        if retriever.method in retriever.methods_requiring_nonoccurrence:
            raise ValueError(f"BM25 method {retriever.method!r} is not supported by the streamed build")
        n_docs, n_vocab = self.n_docs, len(self.vocab)
        doc_len = np.frombuffer(self.doc_len, dtype=np.int64)
        doc_terms = np.frombuffer(self.doc_terms, dtype=np.int64)
        term = np.frombuffer(self.term, dtype=np.int32).astype(retriever.int_dtype, copy=False)
        tf = np.frombuffer(self.tf, dtype=np.int32).astype(retriever.dtype)
        self.tf = array("i")  # the counts live on as floats only
        avg_doc_len = doc_len.mean()
        df = np.bincount(term, minlength=n_vocab)
        idf_fn = _select_idf_scorer(retriever.idf_method)
        idf = np.zeros(n_vocab, dtype=retriever.dtype)
        for v in np.unique(df):
            if v != 0:
                idf[df == v] = idf_fn(int(v), N=n_docs)
        tfc_fn = _select_tfc_scorer(retriever.method)
        data = np.empty(len(term), dtype=retriever.dtype)
        ends = np.cumsum(doc_terms)
        start = 0
        for n_tokens, end in zip(doc_len.tolist(), ends.tolist()):
            tfc = tfc_fn(tf_array=tf[start:end], l_d=n_tokens, l_avg=avg_doc_len, k1=retriever.k1, b=retriever.b,
                         delta=retriever.delta)
            data[start:end] = idf[term[start:end]] * tfc
            start = end
        del tf
        if retriever.csc_backend == "numpy":
            data, indices, indptr = _csc(data, term, ends, n_vocab, np.dtype(retriever.int_dtype))
        else:
            import scipy.sparse as sp

            rows = np.repeat(np.arange(n_docs, dtype=retriever.int_dtype), doc_terms)
            m = sp.csc_matrix((data, (rows, term)), shape=(n_docs, n_vocab), dtype=retriever.dtype)
            data, indices, indptr = m.data, m.indices, m.indptr
        vocab = self.vocab
        if "" not in vocab:  # bm25s's empty token, after the matrix's columns
            vocab[""] = n_vocab
        return {"data": data, "indices": indices, "indptr": indptr, "num_docs": n_docs}, vocab


def _csc(data: np.ndarray, cols: np.ndarray, ends: np.ndarray, n_cols: int, int_dtype: np.dtype,
         step: int = 1 << 20) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The (data, row indices, indptr) of bm25s's `_np_csc` for (row, col) pairs given row by row (`ends[r]`:
    where row r's pairs end), sorted into columns `step` pairs at a time instead of with one argsort over packed
    64-bit keys of every pair (about 4 times the matrix in temporaries). The arrays are the same: each column's
    rows stay in increasing order, as the pairs come."""
    indptr = np.zeros(n_cols + 1, dtype=np.int64)
    np.cumsum(np.bincount(cols, minlength=n_cols), out=indptr[1:])
    out_data = np.empty(len(cols), dtype=data.dtype)
    out_rows = np.empty(len(cols), dtype=int_dtype)
    heads = indptr[:-1].copy()  # the next free slot of each column
    for s in range(0, len(cols), step):
        c = cols[s:s + step]
        order = np.argsort(c, kind="stable")
        sc = c[order]
        rank = np.arange(len(sc)) - np.searchsorted(sc, sc, side="left")  # place among this slice's pairs of its column
        dest = heads[sc] + rank
        out_data[dest] = data[s:s + step][order]
        out_rows[dest] = np.searchsorted(ends, np.arange(s, s + len(c)), side="right")[order]
        heads += np.bincount(c, minlength=n_cols)
    return out_data, out_rows, indptr


def _lucene_idf(df: int, n_docs: int) -> float:
    return float(np.log(1.0 + (n_docs - df + 0.5) / (df + 0.5)))


def _topk(scores: np.ndarray, k: int) -> np.ndarray:
    nz = np.flatnonzero(scores > 0)
    if len(nz) > k:
        part = np.argpartition(-scores[nz], k - 1)[:k]
        nz = nz[part]
    return nz[np.argsort(-scores[nz], kind="stable")]
