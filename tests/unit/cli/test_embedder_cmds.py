"""`ragkiln train embedder`'s summary says whether a build would serve the model, by the build's own call."""

from cli.embedder_cmds import render_train_report


def _report(probe: dict) -> dict:
    return {"out": "/m", "data": {"train_pairs": 128, "train_by_source": {"ict": 128}, "dev_pairs": 53,
                                  "dev_documents": 16},
            "training": {"steps": 4, "train_seconds": 32.0, "world_size": 1},
            "metrics": {"dev_before": {"ndcg@10": 0.4011}, "dev_after": {"ndcg@10": 0.3949}, "probe": probe}}


def test_the_summary_follows_the_probe_not_the_trainers_dev_pairs():
    probe = {"rule": "bm25-misses", "bm25_misses": 84, "replace": True, "gain": 0.0038}
    text = render_train_report(_report(probe))
    assert "dev nDCG@10 0.4011 -> 0.3949" in text  # reported
    assert "ragkiln build would serve it" in text and "84 probe queries" in text and "+0.0038" in text
    assert text.splitlines()[-1] == "next: ragkiln reindex --embedder /m"
    text = render_train_report(_report({**probe, "replace": False, "gain": -0.0121}))
    assert "ragkiln build would keep the base" in text and "-0.0121" in text
    assert text.splitlines()[-1].startswith("next: keep the current index")
