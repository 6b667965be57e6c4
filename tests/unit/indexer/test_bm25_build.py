"""The streamed BM25 build: the scores of bm25s's own list build, without holding the corpus's token lists."""

from __future__ import annotations

import random
import weakref

import bm25s
import numpy as np
import pytest

from indexer import bm25 as bm25_mod
from indexer.bm25 import BM25Index, tokenize

WORDS = ("python module import class function object method string list dict tuple set file path error "
         "exception raise return yield generator iterator async await thread process socket server client "
         "request response header body json parse format encode decode unicode byte buffer stream").split()


def corpus(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    texts = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(5, 60))) for _ in range(n)]
    texts[3] = "a an the of"  # only stop words: indexed as the placeholder token
    return texts


def list_build(texts: list[str]) -> bm25s.BM25:
    """What `BM25Index.build` did before: bm25s's `index` over every chunk's token list."""
    r = bm25s.BM25(k1=1.5, b=0.75)
    r.index([tokenize(t) or ["\u2205"] for t in texts], show_progress=False)
    return r


def test_streamed_build_scores_equal_bm25s_list_build() -> None:
    texts = corpus(300)
    ref = list_build(texts)
    got = BM25Index.build(iter(texts), np.arange(300, dtype=np.int64) * 7, 1.5, 0.75, "english")
    assert set(got.retriever.vocab_dict) == set(ref.vocab_dict)
    assert got.retriever.scores["num_docs"] == ref.scores["num_docs"] == 300
    for term, tid in ref.vocab_dict.items():  # every column of the score matrix, bit for bit
        if term == "":
            continue
        mine = got.retriever.vocab_dict[term]
        a0, a1 = ref.scores["indptr"][tid:tid + 2]
        b0, b1 = got.retriever.scores["indptr"][mine:mine + 2]
        np.testing.assert_array_equal(got.retriever.scores["indices"][b0:b1], ref.scores["indices"][a0:a1])
        np.testing.assert_array_equal(got.retriever.scores["data"][b0:b1], ref.scores["data"][a0:a1])
    for q in ("python thread socket", "unicode decode error", "json", "zebra python", "\u2205"):
        toks = [t for t in tokenize(q) or ["\u2205"] if t in ref.vocab_dict]
        np.testing.assert_array_equal(got.scores(q) if q != "\u2205" else got.retriever.get_scores(toks),
                                      ref.get_scores(toks) if toks else np.zeros(300, np.float32))
    s, ids = got.search("python thread socket", k=5)
    ref_s = ref.get_scores(tokenize("python thread socket"))
    order = np.argsort(-ref_s, kind="stable")[:5]
    np.testing.assert_array_equal(s, ref_s[order])
    np.testing.assert_array_equal(ids, order * 7)


def test_streamed_build_saves_and_loads(tmp_path) -> None:
    texts = corpus(50, seed=1)
    built = BM25Index.build((t for t in texts), np.arange(50, dtype=np.int64), 1.5, 0.75, "english")
    built.save(tmp_path)
    loaded = BM25Index.load(tmp_path, "english")
    for q in ("python generator", "byte buffer stream"):
        np.testing.assert_array_equal(loaded.scores(q), built.scores(q))
        assert loaded.max_score(q) == pytest.approx(built.max_score(q))


class _Tokens(list):
    """A token list that can be watched with a weak reference."""


def test_build_holds_one_token_list_at_a_time(monkeypatch) -> None:
    """The old build kept every chunk's token list (then bm25s a list of ids per chunk) until the end: memory
    grew with the corpus. The streamed build drops each text's tokens before the next text is read."""
    alive: list[weakref.ref] = []
    most = 0

    def watched(text: str, language: str = "english") -> list[str]:
        toks = _Tokens(tokenize(text, language))
        alive.append(weakref.ref(toks))
        return toks

    def texts():
        nonlocal most
        for t in corpus(200, seed=2):
            most = max(most, sum(r() is not None for r in alive))
            yield t

    monkeypatch.setattr(bm25_mod, "tokenize", watched)
    BM25Index.build(texts(), np.arange(200, dtype=np.int64), 1.5, 0.75, "english")
    assert len(alive) == 200
    assert most <= 1


def test_build_rejects_ids_of_another_length() -> None:
    with pytest.raises(ValueError, match="3 texts for 4 ids"):
        BM25Index.build(iter(["a cat", "a dog", "a bird"]), np.arange(4), 1.5, 0.75, "english")


def test_empty_build_and_restricted_search() -> None:
    empty = BM25Index.build(iter([]), np.zeros(0, np.int64), 1.5, 0.75, "english")
    assert empty.scores("python").shape == (0,)
    idx = BM25Index.build(iter(["python thread", "python socket", "thread pool", "socket server"]),
                          np.array([40, 10, 30, 20]), 1.5, 0.75, "english")
    s, ids = idx.search("python socket", k=5, allowed=np.array([20, 10, 99]))
    assert list(ids) == [10, 20]  # 99 is not indexed; 40 is not allowed
    assert s[0] > s[1] > 0
    s, ids = idx.search("python", k=5, allowed=np.zeros(0, np.int64))
    assert len(ids) == 0


@pytest.mark.parametrize("step", [1, 7, 1 << 20])
def test_column_sort_equals_bm25s_csc(step: int) -> None:
    """The slice-by-slice column sort gives bm25s's `_np_csc` arrays exactly, however the pairs are sliced."""
    from bm25s.scoring import _np_csc_python

    rng = np.random.default_rng(0)
    cols, rows = [], []
    for r in range(60):  # rows in order, each with distinct columns, as documents give their terms
        c = rng.choice(25, size=rng.integers(0, 12), replace=False)
        cols.extend(c)
        rows.extend([r] * len(c))
    cols_a = np.array(cols, dtype=np.int32)
    rows_a = np.array(rows, dtype=np.int32)
    data = rng.random(len(cols_a)).astype(np.float32)
    ends = np.cumsum(np.bincount(rows_a, minlength=60))
    got = bm25_mod._csc(data, cols_a, ends, 25, np.dtype(np.int32), step=step)
    ref = _np_csc_python(data, rows_a, cols_a, (60, 25))
    for g, r in zip(got, ref):
        assert g.dtype == r.dtype
        np.testing.assert_array_equal(g, r)


def test_score_text_equals_the_index_score_of_an_average_length_passage() -> None:
    rng = random.Random(5)
    texts = [" ".join(rng.choice(WORDS) for _ in range(12)) for _ in range(40)]  # every passage average length
    idx = BM25Index.build(iter(texts), np.arange(40, dtype=np.int64), 1.5, 0.75, "english")
    query = "python exception stream header"
    scores = idx.scores(query)
    for i in (0, 7, 39):
        assert idx.score_text(query, texts[i]) == pytest.approx(float(scores[i]), rel=1e-5)
    assert idx.score_text(query, "nothing shared here") == 0.0
