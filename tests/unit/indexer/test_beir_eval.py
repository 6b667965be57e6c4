"""How the BEIR evaluation turns chunk rankings into document rankings."""

from __future__ import annotations

from types import SimpleNamespace

from indexer.beir_eval import doc_ranking
from indexer.fusion import weighted_fuse


class _DepthSensitiveSearcher:
    """Min-max fusion of two fixed score lists cut at the fetch depth: the floor, and so the order of
    the head, moves with how many hits are fetched (as the real Searcher's does)."""

    def __init__(self, candidates: int) -> None:
        n = 400
        # chunk 0 leads dense, chunk 1 leads BM25; the dense tail falls to 0 while BM25's stays flat, so a
        # deeper fetch lowers only the dense floor, which shrinks chunk 0's lead there: the head reorders
        tail = range(n - 2)
        self.dense = ([0, 1] + list(range(2, n)), [1.0, 0.8] + [0.79 - 0.79 * j / (n - 3) for j in tail])
        self.bm25 = ([1, 0] + list(range(2, n)), [10.0, 5.0] + [1.9 - 0.1 * j / (n - 3) for j in tail])
        self.cfg = SimpleNamespace(candidates=candidates)
        self.size = n
        self.calls: list[int] = []
        self.store = SimpleNamespace(get_chunks=lambda ids: {c: SimpleNamespace(doc_id=f"d{c}") for c in ids})

    def ranked_ids(self, query, mode, n, query_vec=None):  # type: ignore[no-untyped-def]
        self.calls.append(n)
        per = {"dense": (self.dense[0][:n], self.dense[1][:n]), "bm25": (self.bm25[0][:n], self.bm25[1][:n])}
        return [c for c, _ in weighted_fuse(per, {"dense": 0.5, "bm25": 0.5})], {}


def test_the_head_of_a_document_ranking_is_the_served_ranking_and_the_tail_reaches_the_depth():
    s = _DepthSensitiveSearcher(candidates=20)
    served = [f"d{c}" for c in s.ranked_ids("q", "hybrid", 20)[0]]
    deep = [f"d{c}" for c in s.ranked_ids("q", "hybrid", 300)[0]]
    assert served[:10] != deep[:10]  # the fixture really is depth-sensitive
    s.calls.clear()
    docs = doc_ranking(s, "q", "hybrid", depth=100)  # type: ignore[arg-type]
    assert docs[:20] == served
    assert len(docs) == 100 and len(set(docs)) == 100
    assert s.calls[0] == 20 and s.calls[-1] >= 300


def test_the_selection_split_is_dev_else_an_untrained_train_split_never_test(tmp_path):
    from indexer.beir_eval import selection_split

    beir = tmp_path / "beir"
    (beir / "qrels").mkdir(parents=True)
    (beir / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n")
    assert selection_split(beir) is None  # test only reports: nothing to choose on, the probe decides
    (beir / "qrels" / "train.tsv").write_text("query-id\tcorpus-id\tscore\n")
    assert selection_split(beir) == "train"
    assert selection_split(beir, trained_on=tmp_path / "beir" / ".." / "beir") is None  # trained on it: not a judge
    assert selection_split(beir, trained_on=tmp_path / "other") == "train"
    (beir / "qrels" / "dev.tsv").write_text("query-id\tcorpus-id\tscore\n")
    assert selection_split(beir, trained_on=beir) == "dev"
