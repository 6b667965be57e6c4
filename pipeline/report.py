"""The build report, one page from `build/state.json`: a summary first (corpus, search and answer
quality, model sizes and speeds, the embedder served and why), warnings where a model is
unusable, then one section per stage with its tables and figures. Written twice, as
`report/report.md` (figures as PNG files next to it) and as a self-contained `report/report.html`
(figures embedded as base64).

Formatting rules live in `pipeline.report_format`, the summary and warnings in
`pipeline.report_summary`, the figures in `pipeline.report_figures`; this module reads the model
manifests, assembles the page as blocks and renders the blocks to Markdown and HTML.
"""

from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import Any

from common.artifacts import atomic_write_text, manifest_if_any
from pipeline.report_figures import Figure, draw, plan_figures
from pipeline.report_format import Table, human_duration, tables_of
from pipeline.report_summary import summary_rows, warnings

STAGE_TITLES = {
    "ingest": "Ingest: documents to chunks, entities and the first index",
    "embedder": "Embedder training", "reindex": "Reindex with the adapted embedder",
    "lm": "LM training (retrieval-augmented, checked against a plain LM)",
    "qa": "LM fine-tuning on synthetic questions",
    "quantize": "GGUF export", "verify": "GGUF verification against torch",
    "evaluate": "Evaluation: held-out perplexity, search latency, entities",
}

Block = tuple[str, Any]  # ("h2" | "p" | "warn" | "table" | "fig", payload)


def _gb(mb: Any) -> str:
    """A stage process's peak resident memory; '–' for a stage run inside the build's own process."""
    return f"{float(mb) / 1024:.1f} GB" if mb is not None else "–"


def _relative(obj: Any, home: str) -> Any:
    """Workspace paths shown relative to the workspace."""
    if isinstance(obj, str) and obj.startswith(home + "/"):
        return obj[len(home) + 1:]
    if isinstance(obj, dict):
        return {k: _relative(v, home) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_relative(v, home) for v in obj]
    return obj


def unchanged_notes(stage: str, outputs: dict[str, Any], figs: list[Figure]) -> list[str]:
    """Text in place of a before/after plot left out because nothing changed within rounding."""
    if stage != "embedder":
        return []
    metrics, drawn = outputs.get("metrics") or {}, {f.file for f in figs}
    notes = []
    for before, after, file, what in (("dev_before", "dev_after", "embedder_dev.png", "held-out dev pairs"),
                                      ("beir_before", "beir_after", "beir_ndcg_at_10.png", "the BEIR test split")):
        if metrics.get(before) and metrics.get(after) and file not in drawn:
            notes.append(f"On {what}, the adapted embedder scores the same as the base within rounding: no change "
                         "(no before/after plot).")
    return notes


def plan_report(home: Path, stages: dict[str, Any], command: str) -> tuple[list[Block], list[Figure]]:
    """The page as blocks, and the figures it shows (not drawn yet)."""
    served = (stages.get("embedder", {}).get("outputs") or {}).get("model") or home / "models" / "embedder"
    emb = manifest_if_any(served) or {}
    base_name = (emb.get("base") or {}).get("name") if isinstance(emb.get("base"), dict) else None
    vocab = {k: ((manifest_if_any(home / "models" / d) or {}).get("model_args") or {}).get("vocab_size")
             for k, d in (("retrieval_lm", "lm-base"), ("plain_lm", "lm-plain"), ("qa_lm", "lm"))}
    figs = plan_figures(stages, home)
    blocks: list[Block] = [("p", f"Produced by: `{command}`"), ("h2", "Summary"),
                           ("table", Table("", ["", "result"], [list(r) for r in summary_rows(stages, base_name)]))]
    warns = warnings(stages, {k: v for k, v in vocab.items() if v})
    if warns:
        blocks += [("h2", "Warnings")] + [("warn", w) for w in warns]
    blocks.append(("h2", "Stages"))
    timing = Table("", ["stage", "time", "peak memory", "finished (UTC)"],
                   [[n, human_duration(float(r.get("seconds") or 0)), _gb(r.get("peak_rss_mb")),
                     str(r.get("finished_at", "–"))] for n, r in stages.items() if n != "report"])
    blocks.append(("table", timing))
    for name, rec in stages.items():
        if name == "report":
            continue
        blocks.append(("h3", STAGE_TITLES.get(name, name)))
        outputs = _relative(rec.get("outputs") or {}, str(home))
        for t in tables_of(name, outputs):
            blocks.append(("table", t))
        blocks += [("p", n) for n in unchanged_notes(name, rec.get("outputs") or {}, figs)]
        blocks += [("fig", f) for f in figs if f.stage == name]
    placed = {f.file for kind, f in blocks if kind == "fig"}
    rest = [f for f in figs if f.file not in placed]
    if rest:
        blocks += [("h3", "Other figures")] + [("fig", f) for f in rest]
    return blocks, figs


def _md_cell(s: str) -> str:
    return s.replace("|", "\\|").replace("\n", " ")


def render_markdown(title: str, blocks: list[Block]) -> str:
    md = [f"# {title}", ""]
    for kind, x in blocks:
        if kind in ("h2", "h3"):
            md += [("## " if kind == "h2" else "### ") + x, ""]
        elif kind == "p":
            md += [x, ""]
        elif kind == "warn":
            md += [f"> **Warning:** {x}", ""]
        elif kind == "table":
            if x.title:
                md += [f"**{_md_cell(x.title)}**", ""]
            md += ["| " + " | ".join(_md_cell(h) for h in x.headers) + " |", "|" + "---|" * len(x.headers)]
            md += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in x.rows]
            md.append("")
        elif kind == "fig":
            md += [f"![{x.title}]({x.file})", "", f"*{x.title}* (numbers from `{x.command}`)", ""]
    return "\n".join(md) + "\n"


def _code(s: str) -> str:
    """`code` spans of a Markdown-ish line as <code>, the rest escaped."""
    parts = html.escape(s).split("`")
    return "".join(f"<code>{p}</code>" if i % 2 else p for i, p in enumerate(parts))


def render_html(title: str, blocks: list[Block], out: Path) -> str:
    body = [f"<h1>{html.escape(title)}</h1>"]
    for kind, x in blocks:
        if kind in ("h2", "h3"):
            body.append(f"<{kind}>{html.escape(x)}</{kind}>")
        elif kind == "p":
            body.append(f"<p>{_code(x)}</p>")
        elif kind == "warn":
            body.append(f"<p class='warn'><b>Warning:</b> {_code(x)}</p>")
        elif kind == "table":
            cap = f"<caption>{html.escape(x.title)}</caption>" if x.title else ""
            head = "".join(f"<th>{html.escape(h)}</th>" for h in x.headers)
            rows = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in x.rows)
            body.append(f"<table>{cap}<tr>{head}</tr>{rows}</table>")
        elif kind == "fig":
            data = base64.b64encode((out / x.file).read_bytes()).decode()  # self-contained: works served or opened
            body.append(f"<figure><img src='data:image/png;base64,{data}' alt='{html.escape(x.title)}'><figcaption>"
                        f"{html.escape(x.title)} (numbers from <code>{html.escape(x.command)}</code>)"
                        "</figcaption></figure>")
    return ("<!doctype html><html><head><meta charset='utf-8'><title>ragkiln report</title><style>"
            "body{font-family:system-ui,sans-serif;max-width:980px;margin:2em auto;padding:0 1em}"
            "table{border-collapse:collapse;margin:.6em 0}td,th{border:1px solid #ccc;padding:3px 8px;font-size:13px;"
            "vertical-align:top;text-align:left}caption{text-align:left;font-weight:600;padding:4px 0}"
            ".warn{background:#fff3cd;border-left:4px solid #b5532c;padding:6px 10px}"
            "code{font-size:12px}img{max-width:100%}</style></head><body>" + "\n".join(body) + "</body></html>")


def write_report(home: Path, state: Any, preset: str, corpus: list[str], eval_beir: str | None = None) -> Path:
    """Write report/report.md, report/report.html and their PNG figures; returns the HTML's path."""
    home = Path(home)
    out = home / "report"
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("*.png"):  # a figure that has nothing to show this time must not linger
        old.unlink()
    command = f"ragkiln --workspace {home} build {' '.join(corpus)} --preset {preset}" + (
        f" --eval-beir {eval_beir}" if eval_beir else "")
    blocks, figs = plan_report(home, state.data["stages"], command)
    for f in figs:
        draw(f, out)
    title = f"ragkiln build report ({preset})"
    atomic_write_text(out / "report.md", render_markdown(title, blocks))
    path = out / "report.html"
    atomic_write_text(path, render_html(title, blocks, out))
    return path
