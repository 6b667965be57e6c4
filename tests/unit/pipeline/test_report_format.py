"""The report's pure formatting: rounding, sizes, durations, labels and nested outputs as tables."""

from __future__ import annotations

from pipeline.report_format import (change, curve_text, distinct, format_value, human_bytes, human_duration,
                                    inline_dict, label, matrix, sig, summarize_list, tables_of)


def test_sig_rounds_to_three_significant_figures():
    assert sig(0.123456) == "0.123"
    assert sig(12.3456) == "12.3"
    assert sig(200.0) == "200"
    assert sig(1234.56) == "1,235"
    assert sig(0.5) == "0.5"
    assert sig(0) == "0"
    assert sig(1.234e-5) == "1.23e-05"
    assert sig(1.2e-5) == "1.2e-05"
    assert sig(-0.0356) == "-0.0356"
    assert sig(float("inf")) == "∞"


def test_sizes_and_durations_read_like_a_person_writes_them():
    assert human_bytes(512) == "512 B"
    assert human_bytes(1_400_000) == "1.4 MB"
    assert human_bytes(2_345_678_901) == "2.35 GB"
    assert human_duration(0.0123) == "12.3 ms"
    assert human_duration(4.256) == "4.26 s"
    assert human_duration(125) == "2 min 5 s"
    assert human_duration(3725) == "1 h 2 min"


def test_values_take_their_unit_from_the_field_name():
    assert (label("size_bytes"), format_value("size_bytes", 1_400_000)) == ("size (MB)", "1.4")
    assert (label("top1"), format_value("top1", 0.8512)) == ("top-1 agreement (%)", "85.1")
    assert (label("n_params"), format_value("n_params", 1_234_567)) == ("parameters (M)", "1.23")
    assert format_value("train_seconds", 83.2) == "1 min 23 s"
    assert format_value("ppl_delta_pct", 0.5) == "+0.5"
    assert label("index_bytes") == "index (MB)" and label("p50_ms") == "p50 (ms)"
    assert format_value("chunks_total", 12345) == "12,345"
    assert format_value("switched", True) == "yes" and format_value("x", None) == "–"


def test_nested_values_never_show_as_json():
    assert inline_dict({"F32": 5, "Q8_0": 15}) == "F32: 5, Q8_0: 15"
    assert inline_dict({}) == "–"
    assert format_value("sources", ["ict", "claim"]) == "ict, claim"
    assert summarize_list("samples_ms", [float(i) for i in range(200)]) == "200 values, 0–199"
    assert summarize_list("skipped", []) == "none"
    assert summarize_list("files", [{"a": 1}, {"a": 2}]) == "2 entries"


def test_change_says_no_change_within_rounding():
    assert change(0.5123, 0.5479) == "0.512 → 0.548 (+0.0356)"
    assert change(0.5123, 0.51231) == "0.512 (no change)"
    assert change(None, 0.5) == "–"
    assert distinct([180.0001, 180.0005]) == 1 and distinct([1.0, 2.0, 2.0]) == 2


def test_curves_are_described_not_dumped():
    assert curve_text([{"step": 1, "loss": 2.0}, {"step": 9, "loss": 1.5}]) == "2 points, loss 2 → 1.5 (-0.5)"
    assert curve_text([{"step": 1, "loss": 2.0}]) == "1 point, loss 2"


def test_outputs_become_tables_with_sub_tables_for_nested_dicts():
    out = {"switched": True, "seconds": 4.2,
           "metrics": {"dev_before": {"ndcg@10": 0.5}, "dev_after": {"ndcg@10": 0.6},
                       "beir_after": {"bm25": {"ndcg@10": 0.7}, "dense": {"ndcg@10": 0.65}}},
           "files": [{"type": "f32", "size_bytes": 5_000_000, "tensor_types": {"F32": 20}}],
           "loss_curve": [{"step": 1, "loss": 3.0}, {"step": 2, "loss": 2.5}],
           "empty": {}}
    tables = tables_of("st", out)
    by_title = {t.title: t for t in tables}
    assert by_title["st"].rows == [["switched", "yes"], ["time", "4.2 s"],
                                   ["loss curve", "2 points, loss 3 → 2.5 (-0.5)"]]
    dev = by_title["st › metrics › dev pairs, base / dev pairs, adapted"]
    assert dev.headers == ["", "ndcg@10"] and dev.rows == [["dev pairs, base", "0.5"], ["dev pairs, adapted", "0.6"]]
    assert by_title["st › metrics › BEIR test, adapted"].rows == [["bm25", "0.7"], ["dense", "0.65"]]
    assert by_title["st › files"].headers == ["type", "size (MB)", "tensor types"]
    assert by_title["st › files"].rows == [["f32", "5", "F32: 20"]]
    cells = [c for t in tables for r in t.rows for c in r]
    assert not [c for c in cells if "{" in c or "[" in c]


def test_a_wide_table_of_few_rows_is_transposed():
    d = {"f32": {f"m{i}": i for i in range(10)}, "q8_0": {f"m{i}": i + 1 for i in range(10)}}
    t = matrix("types", d)
    assert t.headers == ["", "f32", "q8_0"] and t.rows[0] == ["m0", "0", "1"] and len(t.rows) == 10
    narrow = matrix("types", {k: {"ppl": 1.0} for k in ("f32", "q8_0")})
    assert narrow.headers == ["", "perplexity"] and narrow.rows == [["f32", "1"], ["q8_0", "1"]]
