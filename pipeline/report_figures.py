"""The build report's figures: which ones have something to show (`plan_figures`, no drawing) and
how to draw them (`draw`).

A figure is planned only from logged numbers (the stage outputs in `build/state.json` and the
LM's `train.jsonl` event log), never from a PNG that happens to exist, and only when its data have
at least two distinct values at three significant figures: an empty or flat plot is left out
and the text says so instead. Bars start at zero so small differences look small; a before/after
pair of bars is drawn only when some pair differs within rounding.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.report_format import MB, distinct, sig


@dataclass
class Figure:
    title: str
    file: str  # PNG name in the report folder
    command: str  # the command whose numbers the figure shows
    kind: str  # "bar": one series over `labels`; "grouped": several series over `labels`; "lines": x/y series; "hist"
    series: dict[str, list[float]]  # series name -> y values (hist: samples)
    labels: list[str] = field(default_factory=list)  # bar categories
    xs: dict[str, list[float]] = field(default_factory=dict)  # lines: series name -> x values
    xlabel: str = ""
    ylabel: str = ""
    stage: str = ""  # the build stage whose section shows the figure


    def values(self) -> list[float]:
        return [v for s in self.series.values() for v in s]


def _keep(fig: Figure) -> bool:
    """Data worth a plot: every series non-empty (lines: 2+ points) and 2+ distinct values in all."""
    if not fig.series or any(not s for s in fig.series.values()):
        return False
    if fig.kind == "lines" and all(len(s) < 2 for s in fig.series.values()):
        return False
    return distinct(fig.values()) >= 2


def _differs(before: list[float], after: list[float]) -> bool:
    return any(sig(b) != sig(a) for b, a in zip(before, after))


def read_curve(path: Path) -> dict[str, tuple[list[float], list[float]]]:
    """Train and held-out loss per step from an LM `train.jsonl` (the last record of a step wins,
    since a resumed run appends)."""
    if not path.is_file():
        return {}
    train: dict[int, float] = {}
    held: dict[int, float] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            r = json.loads(line)
        except json.JSONDecodeError:
            continue
        if r.get("event") == "step" and r.get("loss") is not None:
            train[int(r["step"])] = float(r["loss"])
        elif r.get("event") == "heldout" and r.get("loss") is not None:
            held[int(r["step"])] = float(r["loss"])
    out = {}
    for name, d in (("train", train), ("held-out", held)):
        if d:
            steps = sorted(d)
            out[name] = ([float(s) for s in steps], [d[s] for s in steps])
    return out


def _before_after(title: str, file: str, command: str, before: dict[str, Any], after: dict[str, Any],
                  keys: list[str], ylabel: str) -> Figure | None:
    keys = [k for k in keys if before.get(k) is not None and after.get(k) is not None]
    b, a = [float(before[k]) for k in keys], [float(after[k]) for k in keys]
    if not keys or not _differs(b, a):
        return None
    return Figure(title, file, command, "grouped", {"base": b, "adapted": a}, labels=keys, ylabel=ylabel)


def plan_figures(stages: dict[str, Any], home: Path) -> list[Figure]:
    """Every figure the report will show, with its data (tests check them; `draw` renders them)."""
    figs: list[Figure | None] = []
    emb = stages.get("embedder", {}).get("outputs", {})
    metrics = emb.get("metrics", {})
    figs.append(_before_after("Embedder on held-out dev pairs: base and adapted", "embedder_dev.png",
                              "ragkiln train embedder", metrics.get("dev_before") or {},
                              metrics.get("dev_after") or {}, ["ndcg@10", "mrr@10", "recall@100", "accuracy@1"],
                              "score"))
    for metric in ("ndcg@10", "recall@100"):
        before, after = metrics.get("beir_before") or {}, metrics.get("beir_after") or {}
        modes = [m for m in ("bm25", "dense", "hybrid") if m in before and m in after]
        figs.append(_before_after(f"Search {metric} on the BEIR test split: base and adapted embedder",
                                  f"beir_{metric.replace('@', '_at_')}.png", "ragkiln train embedder --eval-beir DIR",
                                  {m: before[m].get(metric) for m in modes}, {m: after[m].get(metric) for m in modes},
                                  modes, metric))
    lc = emb.get("loss_curve") or []
    figs.append(Figure("Embedder training loss", "embedder_loss.png", "ragkiln train embedder", "lines",
                       {"train": [float(r["loss"]) for r in lc]}, xs={"train": [float(r["step"]) for r in lc]},
                       xlabel="step", ylabel="loss"))
    dc = emb.get("dev_curve") or []
    if dc and (metrics.get("dev_before") or {}).get("ndcg@10") is not None:
        dc = [{"step": 0, "ndcg@10": metrics["dev_before"]["ndcg@10"]}] + dc
    figs.append(Figure("Embedder dev nDCG@10 during training", "embedder_dev_curve.png", "ragkiln train embedder",
                       "lines", {"dev": [float(r["ndcg@10"]) for r in dc]}, xs={"dev": [float(r["step"]) for r in dc]},
                       xlabel="step", ylabel="nDCG@10"))
    for title, sub, cmd in (("LM training loss (retrieval-augmented)", "lm-base", "ragkiln train lm --retrieval"),
                            ("LM training loss (plain, the check)", "lm-plain", "ragkiln train lm --no-retrieval"),
                            ("LM QA fine-tuning loss", "lm", "ragkiln train lm --qa FILE")):
        curve = {k: v for k, v in read_curve(home / "models" / sub / "train.jsonl").items() if len(v[0]) >= 2}
        figs.append(Figure(title, f"{sub}_loss.png", cmd, "lines", {k: v[1] for k, v in curve.items()},
                           xs={k: v[0] for k, v in curve.items()}, xlabel="step", ylabel="loss (nats/token)"))
    verify = stages.get("verify", {}).get("outputs", {})
    types = verify.get("types") or {}
    if types:
        names = list(types)
        sizes = [types[t].get("size_bytes") for t in names]
        if all(s is not None for s in sizes):
            figs.append(Figure("GGUF file size per type", "quant_size.png", "ragkiln quantize", "bar",
                               {"size": [s / MB for s in sizes]}, labels=names, ylabel="MB"))
        speed = {t: types[t].get("gen_tok_s") for t in names}
        torch_rate = (verify.get("torch") or {}).get("gen_tok_s")
        if torch_rate:
            speed = {"torch": torch_rate, **speed}
        if all(v is not None for v in speed.values()):
            figs.append(Figure("Generation speed: torch and each GGUF type", "quant_speed.png",
                               "ragkiln quantize verify", "bar", {"tokens/s": [float(v) for v in speed.values()]},
                               labels=list(speed), ylabel="generated tokens/s"))
        ppl = [types[t].get("ppl") for t in names]
        if all(p is not None for p in ppl):
            figs.append(Figure("Held-out perplexity per GGUF type", "quant_ppl.png", "ragkiln quantize verify", "bar",
                               {"perplexity": [float(p) for p in ppl]}, labels=names, ylabel="perplexity"))
    ev = stages.get("evaluate", {}).get("outputs", {})
    lat = {f"{m} (p50 {sig(d.get('p50_ms') or 0)} ms)": d.get("samples_ms") or []
           for m, d in (ev.get("latency") or {}).items()}
    lat = {m: s for m, s in lat.items() if distinct(s) >= 2}
    figs.append(Figure("Search latency per mode", "latency.png", "ragkiln build (evaluate stage)", "hist", lat,
                       xlabel="ms per query (embedding, retrieval, fusion, chunk fetch)", ylabel="queries"))
    labels = sorted((ev.get("entity_labels") or {}).items(), key=lambda kv: -kv[1])[:15]
    figs.append(Figure("Entity mentions per label", "entities.png", "ragkiln entities --json", "bar",
                       {"mentions": [float(v) for _, v in labels]}, labels=[k for k, _ in labels], ylabel="mentions"))
    for f in figs:
        if f is not None and not f.stage:
            f.stage = _STAGE_OF.get(f.file.split("_")[0].split(".")[0], "evaluate")
    return [f for f in figs if f is not None and _keep(f)]


_STAGE_OF = {"embedder": "embedder", "beir": "embedder", "lm-base": "lm", "lm-plain": "lm", "lm": "qa",
             "quant": "verify", "latency": "evaluate", "entities": "evaluate"}


def draw(fig: Figure, out: Path) -> Path:
    """Render one planned figure to `out/fig.file`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    f, ax = plt.subplots(figsize=(6.4, 3.2))
    if fig.kind == "bar":
        (vals,) = fig.series.values()
        bars = ax.bar(fig.labels, vals, color="#b5532c")
        ax.bar_label(bars, labels=[sig(v) for v in vals], fontsize=8)
        ax.set_ylim(0, max(vals) * 1.15)
    elif fig.kind == "grouped":
        n = len(fig.series)
        width = 0.8 / n
        for i, (name, vals) in enumerate(fig.series.items()):
            xs = [x + (i - (n - 1) / 2) * width for x in range(len(fig.labels))]
            bars = ax.bar(xs, vals, width, label=name)
            ax.bar_label(bars, labels=[sig(v) for v in vals], fontsize=8)
        ax.set_xticks(range(len(fig.labels)), fig.labels)
        ax.set_ylim(0, max(fig.values()) * 1.15)
        ax.legend()
    elif fig.kind == "lines":
        for name, ys in fig.series.items():
            ax.plot(fig.xs[name], ys, marker="." if len(ys) < 50 else None, lw=1, label=name)
        ax.grid(alpha=0.3)
        if len(fig.series) > 1:
            ax.legend()
    else:  # hist
        for name, samples in fig.series.items():
            ax.hist(samples, bins=40, alpha=0.5, label=name)
        ax.legend()
    ax.set_title(fig.title, fontsize=11)
    ax.set_xlabel(fig.xlabel)
    ax.set_ylabel(fig.ylabel)
    if fig.kind == "bar" and len(fig.labels) > 4:
        plt.setp(ax.get_xticklabels(), rotation=30, ha="right")
    f.tight_layout()
    path = out / fig.file
    f.savefig(path, dpi=90)
    plt.close(f)
    return path
