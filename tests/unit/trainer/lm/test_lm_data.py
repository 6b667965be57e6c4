from dataclasses import dataclass

import numpy as np
import torch
import pytest

from common.errors import InvalidInput
from trainer.lm.data import DataSpec, LmDataset, build_dataset, heldout_doc_ids, searcher_neighbours
from trainer.lm.tokenizer import BOS_ID


def test_heldout_split_is_by_document_and_stable():
    ids = [f"d{i}" for i in range(50)]
    a = heldout_doc_ids(ids, 0.2, seed=1)
    assert a == heldout_doc_ids(reversed(ids), 0.2, seed=1) and len(a) == 10
    assert a != heldout_doc_ids(ids, 0.2, seed=2)
    assert len(heldout_doc_ids(["x", "y"], 0.01, 0)) == 1
    with pytest.raises(InvalidInput):
        heldout_doc_ids(["only"], 0.5, 0)


def _other_doc_neighbours(chunks):
    def neighbours(chunk):
        return [c.text for c in chunks if c.doc_id != chunk.doc_id][:3]
    return neighbours


def test_rows_keep_targets_and_mask_only_targets(corpus_chunks, tokenizer, tmp_path):
    spec = DataSpec(target_len=16, n_neighbours=2, neighbour_len=8)
    meta = build_dataset(corpus_chunks, tokenizer, tmp_path, spec, _other_doc_neighbours(corpus_chunks))
    ds = LmDataset(tmp_path)
    assert meta["target_tokens"] == sum(len(tokenizer.encode(c.text)) for c in corpus_chunks)
    assert ds.has_context and len(ds) == meta["rows"]
    rows = list(range(len(ds)))
    xc, yc, mc = ds.batch(rows, True)
    xp, yp, mp = ds.batch(rows, False)
    assert int(mc.sum()) == int(mp.sum()) == meta["target_tokens"]
    for b in rows:  # the same target tokens with and without context
        assert yc[b][mc[b]].tolist() == yp[b][mp[b]].tolist()
    assert (xc[:, 0] == BOS_ID).all() and (yc[mc] >= 0).all()
    assert (xc == tokenizer.ctx_open).any() and not (xp == tokenizer.ctx_open).any()
    assert xc.shape[1] <= spec.max_row


def test_plain_dataset_has_no_prefix(corpus_chunks, tokenizer, tmp_path):
    build_dataset(corpus_chunks, tokenizer, tmp_path, DataSpec(target_len=16), None)
    ds = LmDataset(tmp_path)
    assert not ds.has_context and ds.prefix.shape[1] == 0
    x, _, _ = ds.batch([0, 1], True)  # asking for context on a plain set is harmless
    assert not (x == tokenizer.ctx_open).any()


@dataclass(frozen=True)
class _Chunk:
    doc_id: str
    text: str


@dataclass(frozen=True)
class _Hit:
    chunk: _Chunk


class _LeakySearcher:
    """A searcher that ignores exclude_doc_ids: the data builder must still drop the own document."""

    def __init__(self, chunks):
        self.chunks = chunks
        self.calls = []

    def search(self, query, k=10, mode="hybrid", allowed_ids=None, exclude_doc_ids=None):
        self.calls.append(exclude_doc_ids)
        return [_Hit(_Chunk(c.doc_id, c.text)) for c in self.chunks][: k + 2]


def test_retrieval_prefix_never_includes_own_document(corpus_chunks, tokenizer, tmp_path):
    searcher = _LeakySearcher(corpus_chunks)
    neighbours = searcher_neighbours(searcher, k=2, mode="bm25")
    for chunk in corpus_chunks:
        got = neighbours(chunk)
        own = {c.text for c in corpus_chunks if c.doc_id == chunk.doc_id}
        assert got and not own & set(got)
    assert all(call == {c.doc_id} for call, c in zip(searcher.calls, corpus_chunks))
    # and through the stored prefixes: no own-document token run appears in a row's context
    build_dataset(corpus_chunks, tokenizer, tmp_path, DataSpec(16, 2, 64), neighbours)
    ds = LmDataset(tmp_path)
    texts = []
    for i in range(len(ds)):
        p_len = int(ds.lens[i, 1])
        texts.append(tokenizer.decode(np.asarray(ds.prefix[i, :p_len]).tolist()))
    row = 0
    for chunk in corpus_chunks:
        n = -(-len(tokenizer.encode(chunk.text)) // 16)
        for _ in range(n):
            for other in corpus_chunks:
                if other.doc_id == chunk.doc_id:
                    assert other.text[:30] not in texts[row]
            row += 1


def test_context_loss_scores_neighbour_tokens_but_not_markers_and_targets_stay_the_same(corpus_chunks, tokenizer,
                                                                                       tmp_path):
    spec = DataSpec(target_len=16, n_neighbours=2, neighbour_len=8)
    meta = build_dataset(corpus_chunks, tokenizer, tmp_path, spec, _other_doc_neighbours(corpus_chunks))
    ds = LmDataset(tmp_path)
    rows = list(range(len(ds)))
    _, y0, m0 = ds.batch(rows, True)
    x1, y1, m1 = ds.batch(rows, True, context_loss=True)
    assert torch.equal(y0, y1) and bool((m1 | ~m0).all())  # every target position is still scored
    for b in rows:
        p_len = int(ds.lens[b, 1])
        prefix = np.asarray(ds.prefix[b, :p_len]).tolist()
        scored = y1[b][m1[b] & ~m0[b]].tolist()  # the extra positions: the neighbour text, in order
        assert scored == [t for t in prefix if t not in (tokenizer.ctx_open, tokenizer.ctx_close)]
        assert scored and x1[b, 0] == BOS_ID
    ctx = np.ones(len(rows), dtype=bool)
    assert ds.loss_tokens(np.asarray(rows), ctx, True) == int(m1.sum())
    assert ds.loss_tokens(np.asarray(rows), ctx, False) == int(m0.sum()) == meta["target_tokens"]
    _, _, mp = ds.batch(rows, False, context_loss=True)  # rows drawn without context score their targets only
    assert int(mp.sum()) == ds.loss_tokens(np.asarray(rows), ~ctx, True) == meta["target_tokens"]


def test_context_repeats_scores_each_passage_in_its_first_rows_only(corpus_chunks, tokenizer, tmp_path):
    spec = DataSpec(target_len=16, n_neighbours=2, neighbour_len=8, context_repeats=1)
    meta = build_dataset(corpus_chunks, tokenizer, tmp_path, spec, _other_doc_neighbours(corpus_chunks))
    ds = LmDataset(tmp_path)
    rows = list(range(len(ds)))
    _, y0, m0 = ds.batch(rows, True)
    _, y1, m1 = ds.batch(rows, True, context_loss=True)
    assert torch.equal(y0, y1) and bool((m1 | ~m0).all())  # targets are scored as before
    seen: dict[tuple[int, ...], int] = {}
    for b in rows:  # every passage of the data is scored exactly once, in the first row it prefixes
        p_len = int(ds.lens[b, 1])
        prefix = np.asarray(ds.prefix[b, :p_len]).tolist()
        scored_pos = (m1[b] & ~m0[b]).nonzero().flatten().tolist()
        opens = [j for j, t in enumerate(prefix) if t == tokenizer.ctx_open]
        closes = [j for j, t in enumerate(prefix) if t == tokenizer.ctx_close]
        for o, c in zip(opens, closes):
            key = tuple(prefix[o + 1:c])
            first = key not in seen
            seen[key] = seen.get(key, 0) + 1
            assert all((j in scored_pos) == first for j in range(o + 1, c))
    assert len(rows) > len(seen) and max(seen.values()) > 1  # the fixture repeats passages, so the cap bites
    scored = sum(len(k) for k in seen)
    assert int(m1.sum()) - int(m0.sum()) == scored == meta["context_tokens_scorable"]
    assert ds.loss_tokens(np.asarray(rows), np.ones(len(rows), dtype=bool), True) == int(m1.sum())
    uncapped = build_dataset(corpus_chunks, tokenizer, tmp_path / "all", DataSpec(target_len=16, n_neighbours=2,
                             neighbour_len=8), _other_doc_neighbours(corpus_chunks))
    assert uncapped["context_tokens_scorable"] > scored


def test_the_context_cap_follows_the_passages_expected_exposures_over_the_run(corpus_chunks, tokenizer, tmp_path):
    spec = DataSpec(context_exposures=4.0)
    assert spec.repeats(7444, 600 * 16) == 3  # the small preset on the SciFact dev half: 1.29 epochs
    assert spec.repeats(7444, 200 * 16) == 9  # the tiny preset: 0.43 epochs
    assert spec.repeats(100, 80 * 16) == 1  # many epochs: each passage still scored in its first row
    assert spec.repeats(7444, 0) == 0 and DataSpec().repeats(7444, 9600) == 0  # unknown run, or no cap: every row
    assert DataSpec(context_exposures=4.0, context_repeats=2).repeats(7444, 9600) == 2  # a fixed cap overrides
    capped = DataSpec(target_len=16, n_neighbours=2, neighbour_len=8, context_exposures=1.0)
    nb = _other_doc_neighbours(corpus_chunks)
    few = build_dataset(corpus_chunks, tokenizer, tmp_path / "a", capped, nb, rows_trained=10_000)
    assert few["context_repeats"] == 1
    many = build_dataset(corpus_chunks, tokenizer, tmp_path / "b", capped, nb, rows_trained=1)
    assert many["context_repeats"] == many["rows"] and many["context_tokens_scorable"] > few["context_tokens_scorable"]


def test_training_neighbours_never_come_from_excluded_documents(corpus_chunks):
    from trainer.lm.data import excluding

    class EverythingSearcher(_LeakySearcher):  # ignores exclude_doc_ids and returns every chunk
        def search(self, query, k=10, mode="hybrid", allowed_ids=None, exclude_doc_ids=None):
            self.calls.append(exclude_doc_ids)
            return [_Hit(_Chunk(c.doc_id, c.text)) for c in self.chunks]

    searcher = EverythingSearcher(corpus_chunks)
    held = {corpus_chunks[0].doc_id, corpus_chunks[2].doc_id}  # returned first for every query
    nb = excluding(searcher_neighbours(searcher, k=2, mode="bm25"), held)
    banned = {c.text for c in corpus_chunks if c.doc_id in held}
    for chunk in corpus_chunks:
        got = nb(chunk)
        assert len(got) == 2 and not banned & set(got)
        assert searcher.calls[-1] == held | {chunk.doc_id}
    plain = _other_doc_neighbours(corpus_chunks)  # a callable without `excluding` is used as it is
    assert excluding(plain, held) is plain


def test_concatenated_rows_score_what_they_scored_apart(corpus_chunks, tokenizer, tmp_path):
    from trainer.lm.data import concat_datasets
    from trainer.lm.qa import QaExample, build_qa_dataset

    qa = [QaExample("Where was the piano invented?", "Italy", ("The piano was invented in Italy.",))]
    build_qa_dataset(qa, tokenizer, tmp_path / "qa", passage_len=64)
    lm_meta = build_dataset(corpus_chunks, tokenizer, tmp_path / "lm", DataSpec(target_len=16, n_neighbours=2,
                            neighbour_len=8), _other_doc_neighbours(corpus_chunks))
    meta = concat_datasets([tmp_path / "qa", tmp_path / "lm"], tmp_path / "both", {"qa": True})
    both, parts = LmDataset(tmp_path / "both"), [LmDataset(tmp_path / "qa"), LmDataset(tmp_path / "lm")]
    assert len(both) == meta["rows"] == 1 + lm_meta["rows"] and meta["qa"] is True
    i = 0
    for part in parts:
        for j in range(len(part)):
            for ctx in (True, False):
                x, y, m = both.batch([i], ctx)
                xp, yp, mp = part.batch([j], ctx)
                assert x.tolist() == xp.tolist() and y[m].tolist() == yp[mp].tolist()
            i += 1
    # the document rows are scored on their targets only: no neighbour token, even with context_loss
    answer = len(tokenizer.encode("Italy")) + 1  # and </s>
    assert both.loss_tokens(np.arange(len(both)), np.ones(len(both), bool), True) == answer + lm_meta["target_tokens"]
