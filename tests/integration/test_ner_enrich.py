"""The enricher's worker pool gives exactly what the in-process path gives, in order."""

from __future__ import annotations

import json
from pathlib import Path

from ner.enrich import PipelineSpec, SpacyEnricher


def test_worker_pool_matches_in_process(tmp_path: Path) -> None:
    patterns = tmp_path / "p.jsonl"
    patterns.write_text(
        "\n".join(json.dumps(p) for p in [{"label": "ORG", "pattern": "Pfizer"}, {"label": "DRUG", "pattern": "aspirin"}])
    )
    texts = [f"Text {i}: " + ("Pfizer sells aspirin." if i % 3 == 0 else "nothing here.") for i in range(50)]
    spec = PipelineSpec("blank:en", str(patterns))
    serial = SpacyEnricher(spec=spec, n_process=1)(texts)
    with SpacyEnricher(spec=spec, n_process=2, batch_size=8, min_texts_per_process=4) as pooled:
        assert pooled.processes_for(len(texts)) == 2
        got = pooled(texts)
        assert pooled._pool is not None  # the work really went to the workers
        assert pooled(texts[:3]) == serial[:3]  # small calls stay in-process
    assert got == serial
    assert sum(len(e) for e in got) == 2 * 17
    assert pooled._pool is None  # closed on exit


def test_each_worker_runs_one_blas_thread() -> None:
    """The limit is set after the pipeline loads OpenBLAS: set before, it reached no library and each of two
    workers ran a BLAS pool as wide as the machine (bench/results/ner-speed.json: 15.8k against 23.5k words/s)."""
    from threadpoolctl import threadpool_info

    with SpacyEnricher(spec=PipelineSpec("blank:en"), n_process=2) as pooled:
        pools = pooled._workers().apply(threadpool_info)
    blas = [p for p in pools if p["user_api"] == "blas"]
    assert blas, "numpy's BLAS is loaded in the worker"
    assert {p["num_threads"] for p in pools} == {1}
