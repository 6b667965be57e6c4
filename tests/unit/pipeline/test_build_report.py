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
        "beir_before": scores(0.644), "beir_after": scores(0.651),
        "select": {"split": "train", "before": scores(0.66), "after": scores(0.67)}}}},
        "reindex": {"seconds": 0.1, "outputs": {"switched": False, "reason": "hybrid nDCG@10 0.72 < 0.73"}}}
    write_report(tmp_path, _State(stages), "standard", ["/data/scifact"], "/data/scifact")
    md = (tmp_path / "report" / "report.md").read_text()
    assert "--eval-beir /data/scifact" in md
    assert ("| search, BEIR test split, dense | nDCG@10 0.644 → 0.651 (+0.007); Recall@100 0.9 (no change) "
            "(base → adapted embedder) |") in md
    assert (tmp_path / "report" / "beir_ndcg_at_10.png").exists()
    assert not (tmp_path / "report" / "beir_recall_at_100.png").exists()  # equal before and after: no plot
    assert "the base embedder: the adapted one was not kept: hybrid nDCG@10 0.72 < 0.73" in md
    assert "| search, BEIR train split, dense (decides the embedder) | nDCG@10 0.66 → 0.67 (+0.01)" in md
    assert "0.651" in (tmp_path / "report" / "report.html").read_text()


def test_the_build_keeps_the_base_index_when_the_adapted_embedder_scores_lower():
    from pipeline.decisions import keep_base_reason

    def metrics(before: float, after: float) -> dict:
        return {"select": {"split": "dev", "before": {"hybrid": {"ndcg@10": before}},
                           "after": {"hybrid": {"ndcg@10": after}}}}

    assert "0.712" in keep_base_reason(metrics(0.733, 0.712)) and "dev split" in keep_base_reason(metrics(0.733, 0.712))
    assert keep_base_reason(metrics(0.733, 0.74)) is None
    # no evaluation split: the held-out dev pairs decide, the same judgement the trainer logs
    assert keep_base_reason({"dev_before": {"ndcg@10": 0.4}, "dev_after": {"ndcg@10": 0.5}}) is None
    assert "did not improve" in keep_base_reason({"dev_before": {"ndcg@10": 0.5}, "dev_after": {"ndcg@10": 0.5}})
    # a labelled split overrides the dev pairs
    assert keep_base_reason({**metrics(0.7, 0.72), "dev_before": {"ndcg@10": 0.5}, "dev_after": {"ndcg@10": 0.4}}) is None


def full_stages(home: str = "/ws") -> dict:
    """A whole build's state as the stages record it (numbers shaped like a small real build)."""
    return {
        "ingest": {"seconds": 12.3, "finished_at": "2025-01-01T00:00:00Z", "outputs": {
            "added": 13, "changed": 0, "removed": 0, "unchanged": 0, "chunks_embedded": 412, "chunks_total": 412,
            "documents_total": 13, "skipped": [], "index_dir": f"{home}/indexes/a", "seconds": 12.1}},
        "embedder": {"seconds": 95.0, "outputs": {
            "metrics": {"dev_before": {"ndcg@10": 0.5123, "mrr@10": 0.45, "recall@100": 0.9},
                        "dev_after": {"ndcg@10": 0.5479, "mrr@10": 0.47, "recall@100": 0.9}},
            "training": {"train_seconds": 80.2, "steps": 4, "world_size": 1, "train_loss": 1.23456,
                         "pairs_per_second": 3.2, "resumed_from": None, "precision": "fp32"},
            "data": {"sources": ["ict"], "pairs_total": 300, "train_pairs": 64, "dev_pairs": 40,
                     "train_by_source": {"ict": 64}, "dev_by_source": {"ict": 40}},
            "loss_curve": [], "dev_curve": []}},
        "reindex": {"seconds": 20.0, "outputs": {"switched": True, "added": 0, "chunks_total": 412,
                                                 "documents_total": 13, "skipped": [], "seconds": 19.9}},
        "lm": {"seconds": 300.0, "outputs": {"steps": 30, "final_train_loss": 5.1, "heldout_loss": 5.3,
                                             "n_params": 1_234_567, "heldout_ppl": 200.33, "tokens_per_s": 1234.56,
                                             "mfu": 0.0123, "out": f"{home}/models/lm-base"}},
        "qa": {"seconds": 100.0, "outputs": {"steps": 20, "heldout_loss": 4.2, "n_params": 1_234_567,
                                             "synthetic_questions": 826}},
        "quantize": {"seconds": 5.0, "outputs": {"out_dir": f"{home}/gguf/lm", "source_sha256": "ab" * 32, "files": [
            {"type": "f32", "file": "model-f32.gguf", "size_bytes": 5_000_000, "tensor_types": {"F32": 20},
             "fallbacks": []},
            {"type": "q8_0", "file": "model-q8_0.gguf", "size_bytes": 1_400_000,
             "tensor_types": {"F32": 5, "Q8_0": 15}, "fallbacks": []}], "tokenizer_notes": []}},
        "verify": {"seconds": 30.0, "outputs": {
            "tokenizer_match": 1.0, "f32_max_abs_diff": 1.2e-5,
            "torch": {"ppl": 180.0, "gen_tok_s": 150.0, "pp_tok_s": 900.0, "size_bytes": 4_900_000},
            "types": {"f32": {"ppl": 180.0001, "ppl_delta_pct": 0.0, "top1": 1.0, "kl": 0.0, "size_bytes": 5_000_000,
                              "gen_tok_s": 700.5, "gen_speedup_vs_torch": 4.67},
                      "q8_0": {"ppl": 180.0005, "ppl_delta_pct": 0.0003, "top1": 0.85, "kl": 0.001,
                               "size_bytes": 1_400_000, "gen_tok_s": 1500.2, "gen_speedup_vs_torch": 10.0}}}},
        "evaluate": {"seconds": 10.0, "outputs": {
            "latency": {m: {"p50_ms": p, "p99_ms": 2 * p, "samples_ms": [p + i % 7 * 0.1 for i in range(50)]}
                        for m, p in (("bm25", 0.4), ("dense", 3.1), ("hybrid", 3.9))},
            "entity_labels": {"LIB": 40, "FUNC": 12},
            "perplexity": {"retrieval_lm": {"ppl_no_context": 210.0, "tokens": 900, "ppl_with_context": 150.0},
                           "qa_lm": {"ppl_no_context": 230.0, "tokens": 900, "ppl_with_context": 160.0}},
            "queries": 50}},
        "report": {"seconds": 1.0, "outputs": {"html": f"{home}/report/report.html"}},
    }


def _tds(page: str) -> list[str]:
    import re

    return re.findall(r"<td>(.*?)</td>", page, flags=re.S)


def test_report_reads_as_summary_then_stage_tables(tmp_path):
    lm = tmp_path / "models" / "lm"
    lm.mkdir(parents=True)
    (lm / "manifest.json").write_text(json.dumps({"model_args": {"vocab_size": 400}}))
    write_report(tmp_path, _State(full_stages(str(tmp_path))), "tiny", ["/data/docs"])
    md = (tmp_path / "report" / "report.md").read_text()
    page = (tmp_path / "report" / "report.html").read_text()
    assert md.index("## Summary") < md.index("## Stages")
    assert "| corpus | 13 documents, 412 chunks |" in md
    assert "nDCG@10 0.512 → 0.548 (+0.0356)" in md
    assert "recall@100 0.9 (no change)" in md
    assert "the adapted embedder" in md and "no labelled dev split" in md
    assert "f32 5 MB, q8_0 1.4 MB" in md
    assert "hybrid p50 3.9 ms" in md
    assert "1.23 M parameters" in md
    # warnings: the QA LM (vocab 400, best ppl 160 > 40) and q8_0's top-1 agreement
    assert "QA-tuned LM is too weak to generate" in md
    assert "GGUF type q8_0 does not behave like the trained model: top-1 agreement with torch 85 %" in md
    assert "retrieval-trained LM is too weak" not in md  # no manifest, no vocabulary size: no claim
    # no raw JSON anywhere in a cell, figures rounded
    assert not [c for c in _tds(page) if "{" in c or "[" in c]
    assert "1234.56" not in md and "1,235" in md
    assert "| out dir | gguf/lm |" in md  # workspace paths relative to the workspace
    # figures: no embedder curves (nothing logged), no flat perplexity bars, the rest drawn and embedded
    pngs = sorted(p.name for p in (tmp_path / "report").glob("*.png"))
    assert pngs == ["embedder_dev.png", "entities.png", "latency.png", "quant_size.png", "quant_speed.png"]
    assert page.count("data:image/png;base64,") == len(pngs)


def test_an_unchanged_embedder_gets_no_before_after_plot(tmp_path):
    stages = full_stages()
    m = stages["embedder"]["outputs"]["metrics"]
    m["dev_after"] = dict(m["dev_before"], **{"ndcg@10": 0.51231})
    write_report(tmp_path, _State(stages), "tiny", ["/data/docs"])
    md = (tmp_path / "report" / "report.md").read_text()
    assert "ndcg@10 0.512 (no change)" in md
    assert "On held-out dev pairs, the adapted embedder scores the same as the base within rounding: no change" in md
    assert not (tmp_path / "report" / "embedder_dev.png").exists()


def test_planned_figures_always_have_data(tmp_path):
    from pipeline.report_figures import plan_figures
    from pipeline.report_format import distinct

    stages = full_stages()
    stages["embedder"]["outputs"]["loss_curve"] = [{"step": 1, "loss": 2.0}, {"step": 2, "loss": 2.0}]  # flat
    run = tmp_path / "models" / "lm-base"
    run.mkdir(parents=True)
    rows = [{"event": "step", "step": s, "loss": 6.0 - s / 10} for s in range(1, 11)] + [
        {"event": "heldout", "step": 10, "loss": 5.5}, {"event": "summary", "steps": 10}]
    (run / "train.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    figs = {f.file: f for f in plan_figures(stages, tmp_path)}
    assert "embedder_loss.png" not in figs
    assert list(figs["lm-base_loss.png"].series) == ["train"]  # one held-out point is not a curve
    assert figs["lm-base_loss.png"].stage == "lm"
    assert all(distinct(f.values()) >= 2 for f in figs.values())


def test_an_embedder_that_was_not_kept_is_a_warning(tmp_path):
    stages = full_stages()
    stages["reindex"]["outputs"] = {"switched": False, "reason": "hybrid nDCG@10 0.7 with the adapted embedder < 0.73"}
    write_report(tmp_path, _State(stages), "tiny", ["/data/docs"])
    md = (tmp_path / "report" / "report.md").read_text()
    assert "> **Warning:** The adapted embedder was not kept (hybrid nDCG@10 0.7" in md
    assert "the base embedder: the adapted one was not kept" in md


def test_an_embedder_too_small_a_corpus_could_not_judge_is_a_warning_that_says_so(tmp_path):
    stages = full_stages()
    why = "this corpus gives 4 probe queries that BM25 alone misses"
    stages["embedder"]["outputs"] = {"trained": False, "reason": why}
    stages["reindex"]["outputs"] = {"switched": False, "trained": False, "reason": why}
    write_report(tmp_path, _State(stages), "tiny", ["/data/docs"])
    md = (tmp_path / "report" / "report.md").read_text()
    assert f"> **Warning:** No adapted embedder was trained: {why}. Search serves the base embedder." in md
    assert f"| embedder served | the base embedder: no adapted one was trained: {why} |" in md
    assert "was not kept (" not in md


def test_a_rebuild_that_keeps_an_earlier_adapted_embedder_says_so_not_the_base(tmp_path):
    stages = full_stages()
    serving = {"path": str(tmp_path / "models" / "embedder"), "name": "embedder", "adapted": True}
    stages["reindex"]["outputs"] = {"switched": False, "reason": "the probe gains -0.01", "serving": serving}
    write_report(tmp_path, _State(stages), "tiny", ["/data/docs"])
    md = (tmp_path / "report" / "report.md").read_text()
    assert ("> **Warning:** The adapted embedder was not kept (the probe gains -0.01); search serves an earlier "
            "adapted embedder (models/embedder).") in md
    assert "| embedder served | an earlier adapted embedder (models/embedder): the adapted one was not kept" in md
    assert "the base embedder" not in md


def test_a_rebuild_compared_with_an_earlier_adapted_embedder_labels_the_comparison_so(tmp_path):
    stages = full_stages()
    scores = {"hybrid": {"ndcg@10": 0.7}}
    stages["embedder"]["outputs"]["metrics"]["select"] = {"split": "dev", "before": scores, "after": scores}
    stages["embedder"]["outputs"]["serving"] = {"path": str(tmp_path / "models" / "embedder"), "adapted": True}
    write_report(tmp_path, _State(stages), "tiny", ["/data/docs"])
    md = (tmp_path / "report" / "report.md").read_text()
    assert "(earlier adapted → new adapted embedder) |" in md
    assert "(base → adapted embedder)" not in md


def test_the_lm_check_is_summarised_and_a_plain_model_served_is_a_warning(tmp_path):
    from trainer.lm.gate import lm_served

    stages = full_stages()
    pay = {"documents": 14, "tokens": 12522, "retrieval_ppl_with_context": 407.4, "plain_ppl": 397.3,
           "ratio": 407.4 / 397.3}
    served, why = lm_served(pay)
    stages["lm"]["outputs"].update(payoff=pay, served=served, reason=why, plain={"steps": 30, "heldout_ppl": 390.0})
    stages["evaluate"]["outputs"]["perplexity"]["plain_lm"] = {"ppl_no_context": 397.3, "tokens": 12522}
    write_report(tmp_path, _State(stages), "tiny", ["/data/docs"])
    md = (tmp_path / "report" / "report.md").read_text()
    assert "| LM tuned for answers | the plain model: held-out perplexity 407.4 with retrieved context" in md
    assert "> **Warning:** The retrieval-trained LM was not kept (held-out perplexity 407.4" in md
    assert "held-out perplexity, plain LM (trained to check the retrieval one)" in md

    stages["lm"]["outputs"].update(served="retrieval", reason="held-out perplexity 122.1 with retrieved context")
    write_report(tmp_path, _State(stages), "tiny", ["/data/docs"])
    md = (tmp_path / "report" / "report.md").read_text()
    assert "| LM tuned for answers | the retrieval-trained model: held-out perplexity 122.1" in md
    assert "retrieval-trained LM was not kept" not in md
