"""The build's keep/replace call on the adapted embedder: labels first, then the label-free probe."""

from __future__ import annotations

from pipeline.decisions import keep_base_reason


def test_a_labelled_split_decides_over_the_probe():
    m = {"select": {"split": "train", "before": {"hybrid": {"ndcg@10": 0.70}}, "after": {"hybrid": {"ndcg@10": 0.72}}},
         "probe": {"replace": False, "gain": -0.02, "before": {}, "after": {}}}
    assert keep_base_reason(m) is None
    m["select"]["after"]["hybrid"]["ndcg@10"] = 0.69
    assert "0.69 with the adapted embedder < 0.7 with the current one on the BEIR train split" in keep_base_reason(m)


def test_the_test_split_reports_but_never_decides():
    probe_keeps = {"replace": False, "gain": -0.02, "rule": "bm25-misses", "bm25_misses": 30}
    test_up = {"beir_before": {"hybrid": {"ndcg@10": 0.70}}, "beir_after": {"hybrid": {"ndcg@10": 0.75}}}
    assert "probe queries" in keep_base_reason({**test_up, "probe": probe_keeps})
    test_down = {"beir_before": {"hybrid": {"ndcg@10": 0.75}}, "beir_after": {"hybrid": {"ndcg@10": 0.70}}}
    assert keep_base_reason({**test_down, "probe": {**probe_keeps, "replace": True, "gain": 0.01}}) is None


def test_without_labels_the_probe_decides_not_the_dev_pairs():
    dev_up = {"dev_before": {"ndcg@10": 0.6}, "dev_after": {"ndcg@10": 0.7}}
    keep = keep_base_reason({**dev_up, "probe": {"replace": False, "gain": -0.013, "before": {"title": 0.5},
                                                 "after": {"title": 0.487}}})
    assert keep is not None and "-0.0130" in keep and "probe" in keep
    assert keep_base_reason({"dev_before": {"ndcg@10": 0.7}, "dev_after": {"ndcg@10": 0.6},
                             "probe": {"replace": True, "gain": 0.01}}) is None
    assert "too few probe queries" in keep_base_reason({"probe": {"replace": False, "gain": None}})
    misses = {"rule": "bm25-misses", "bm25_misses": 37, "se": 0.01}
    keep = keep_base_reason({"probe": {**misses, "replace": False, "gain": -0.02}})
    assert "the 37 probe queries BM25 alone misses" in keep and "-0.0200" in keep and "noise" not in keep
    assert "BM25 alone misses (12)" in keep_base_reason({"probe": {**misses, "bm25_misses": 12, "replace": False,
                                                                   "gain": None}})


def test_a_run_from_before_the_probe_falls_back_on_the_dev_pairs():
    assert keep_base_reason({"dev_before": {"ndcg@10": 0.7}, "dev_after": {"ndcg@10": 0.6}}) is not None
    assert keep_base_reason({"dev_before": {"ndcg@10": 0.6}, "dev_after": {"ndcg@10": 0.7}}) is None


def test_qa_tuning_starts_from_the_lm_the_check_chose(tmp_path):
    from pipeline.stages import StageContext, lm_served_dir

    class State:
        def __init__(self, lm: dict) -> None:
            self.lm = lm

        def outputs(self, stage: str) -> dict:
            return self.lm if stage == "lm" else {}

    def ctx(lm: dict) -> StageContext:
        return StageContext(settings=None, home=tmp_path, corpus=[], preset="tiny", qa_steps=1,  # type: ignore[arg-type]
                            state=State(lm))

    assert lm_served_dir(ctx({"served": "plain"})) == tmp_path / "models" / "lm-plain"
    assert lm_served_dir(ctx({"served": "retrieval"})) == tmp_path / "models" / "lm-base"
    assert lm_served_dir(ctx({})) == tmp_path / "models" / "lm-base"  # a build from before the check


def test_an_untrained_embedder_keeps_the_base_index_and_says_why(tmp_path):
    from common.settings import load_settings
    from pipeline.stages import StageContext, stage_reindex

    class State:
        def outputs(self, stage: str) -> dict:
            return {"trained": False, "reason": "this corpus gives 4 (fewer than 20)"} if stage == "embedder" else {}

    ctx = StageContext(settings=load_settings({"home": tmp_path}), home=tmp_path, corpus=[], preset="tiny",
                       qa_steps=1, state=State())
    out, paths = stage_reindex(ctx)
    assert out == {"switched": False, "trained": False, "reason": "this corpus gives 4 (fewer than 20)",
                   "serving": {"path": None, "name": None, "adapted": False}}  # a workspace with no index yet
    assert paths == []


def test_a_build_never_trains_into_the_model_the_index_searches_with(tmp_path):
    from pipeline.stages import embedder_slot

    models = tmp_path / "models"
    assert embedder_slot(models, set()) == models / "embedder"
    assert embedder_slot(models, {tmp_path / "other"}) == models / "embedder"
    assert embedder_slot(models, {(models / "embedder").resolve()}) == models / "embedder-b"
    assert embedder_slot(models, {(models / "embedder-b").resolve(), tmp_path / "export"}) == models / "embedder"
