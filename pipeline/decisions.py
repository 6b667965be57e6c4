"""The build's calls between an adapted model and the one it would replace, as pure functions of the stage
outputs: the reindex stage makes them and the report explains them from the same code."""

from __future__ import annotations

from typing import Any

from pipeline.report_format import change


def embedder_call(metrics: dict[str, Any], mode: str = "hybrid") -> tuple[bool, str]:
    """(serve the adapted embedder?, why), from the embedder stage's metrics.

    A labelled dev (or untrained-on train) split decides when the BEIR folder has one (the mode search serves by
    default); its test split only reports, so the figure it gives is not the one the choice was made on.
    Without one, the label-free probe decides (trainer/embedder/gate.py: held-out documents found from queries
    of other kinds than the training pairs, in the served mode; the trainer's dev pairs are the
    trained kind and measured misleading); a run from before the probe falls back on the dev pairs."""
    select = metrics.get("select") or {}
    before, after = ((select.get(k) or {}).get(mode, {}).get("ndcg@10") for k in ("before", "after"))
    if before is not None and after is not None:
        if after >= before:
            return True, (f"it scores {mode} nDCG@10 {change(before, after)} on the BEIR {select.get('split')} split "
                          "(kept unless it scores lower)")
        return False, (f"{mode} nDCG@10 {after} with the adapted embedder < {before} with the current one on the BEIR "
                       f"{select.get('split')} split")
    probe = metrics.get("probe")
    if probe is not None:
        misses = probe.get("rule") == "bm25-misses"
        if probe.get("gain") is None:
            few = (f"too few probe queries that BM25 alone misses ({probe.get('bm25_misses')})" if misses
                   else "too few probe queries")
            return False, f"no labelled evaluation split, and the corpus gave {few} to judge the adapted embedder"
        if probe.get("replace"):
            return True, (f"no labelled dev split; on the {probe.get('bm25_misses')} probe queries about held-out "
                          f"documents that BM25 alone misses it gained {probe['gain']:+.4f} hybrid nDCG@10")
        noise = (f", standard error {probe['se']}: not beyond the probe's noise"
                 if probe.get("se") is not None and not misses else "")
        which = (f"the {probe.get('bm25_misses')} probe queries BM25 alone misses (titles, keywords, questions "
                 f"about held-out documents; hybrid search)" if misses else
                 f"probe queries about held-out documents (titles, keywords, questions; "
                 f"{probe.get('mode', 'dense')} search)")
        return False, (f"no labelled evaluation split, and on {which} the adapted embedder gained {probe['gain']:+.4f} "
                       f"nDCG@10 against the current one{noise}")
    dev_before, dev_after = (metrics.get(k, {}).get("ndcg@10") for k in ("dev_before", "dev_after"))
    if dev_before is not None and dev_after is not None and dev_after <= dev_before:
        return False, (f"no labelled evaluation split, and held-out dev nDCG@10 {dev_after} with the adapted "
                       f"embedder did not improve on {dev_before} with the one it was trained from")
    return True, f"no labelled dev split; on held-out dev pairs it improved nDCG@10 {change(dev_before, dev_after)}"


def keep_base_reason(metrics: dict[str, Any], mode: str = "hybrid") -> str | None:
    """Why the adapted embedder must not be served, or None to switch to it (`embedder_call`)."""
    switch, why = embedder_call(metrics, mode)
    return None if switch else why
