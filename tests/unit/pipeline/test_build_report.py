"""The build's BEIR evaluation wiring and the report's search table (no training: a state file
written by hand stands in for a finished build)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from common.errors import NotFound
from pipeline.build import find_eval_beir
from pipeline.report import write_report


def beir_folder(root: Path, with_test: bool = True) -> Path:
    (root / "qrels").mkdir(parents=True)
    (root / "corpus.jsonl").write_text(json.dumps({"_id": "d1", "text": "a document"}) + "\n")
    (root / "queries.jsonl").write_text(json.dumps({"_id": "q1", "text": "a query"}) + "\n")
    if with_test:
        (root / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\t1\n")
    return root


def test_a_beir_corpus_is_its_own_evaluation(tmp_path):
    sci = beir_folder(tmp_path / "scifact")
    docs = tmp_path / "docs"
    docs.mkdir()
    assert find_eval_beir([docs, sci], None) == sci.resolve()
    assert find_eval_beir([sci / "corpus.jsonl"], None) == sci.resolve()
    assert find_eval_beir([docs], None) is None
    no_test = beir_folder(tmp_path / "train-only", with_test=False)
    assert find_eval_beir([no_test], None) is None


def test_a_bad_eval_folder_fails_before_any_training(tmp_path):
    with pytest.raises(NotFound, match="queries.jsonl"):
        find_eval_beir([], tmp_path)
    sci = beir_folder(tmp_path / "scifact", with_test=False)
    with pytest.raises(NotFound, match="test.tsv"):
        find_eval_beir([], sci)


class _State:
    def __init__(self, stages: dict) -> None:
        self.data = {"stages": stages}


def test_report_tables_the_beir_scores(tmp_path):
    def scores(dense: float) -> dict:
        return {m: {"ndcg@10": v, "recall@100": 0.9, "mrr@10": 0.6}
                for m, v in (("bm25", 0.686), ("dense", dense), ("hybrid", 0.73))}

    stages = {"embedder": {"seconds": 60.0, "outputs": {"metrics": {
        "dev_before": {"ndcg@10": 0.5}, "dev_after": {"ndcg@10": 0.6},
        "beir_before": scores(0.644), "beir_after": scores(0.651)}}},
        "reindex": {"seconds": 0.1, "outputs": {"switched": False, "reason": "hybrid nDCG@10 0.72 < 0.73"}}}
    write_report(tmp_path, _State(stages), "standard", ["/data/scifact"], "/data/scifact")
    md = (tmp_path / "report" / "report.md").read_text()
    assert "--eval-beir /data/scifact" in md
    assert "| dense | 0.644 | 0.651 | 0.9 | 0.9 |" in md
    assert (tmp_path / "report" / "beir_ndcg.png").exists()
    assert "serves the base embedder: hybrid nDCG@10 0.72 < 0.73" in md
    assert "0.651" in (tmp_path / "report" / "report.html").read_text()


def test_the_build_keeps_the_base_index_when_the_adapted_embedder_scores_lower():
    from pipeline.stages import regression

    def metrics(before: float, after: float) -> dict:
        return {"beir_before": {"hybrid": {"ndcg@10": before}}, "beir_after": {"hybrid": {"ndcg@10": after}}}

    assert "0.712" in regression(metrics(0.733, 0.712))
    assert regression(metrics(0.733, 0.74)) is None
    assert regression({"dev_before": {"ndcg@10": 0.4}, "dev_after": {"ndcg@10": 0.5}}) is None  # no evaluation split
