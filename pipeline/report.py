"""The build report: an HTML page and a Markdown twin with plots, from `build/state.json`."""

from __future__ import annotations

import base64
import html
import json
import shutil
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from common.artifacts import atomic_write_text  # noqa: E402


def _fig(path: Path) -> str:
    plt.tight_layout()
    plt.savefig(path, dpi=90)
    plt.close()
    return path.name


def _bar(path: Path, labels: list[str], values: list[float], title: str, ylabel: str) -> str:
    plt.figure(figsize=(6, 3.2))
    plt.bar(labels, values, color="#b5532c")
    plt.title(title)
    plt.ylabel(ylabel)
    plt.xticks(rotation=30, ha="right")
    return _fig(path)


def build_figures(out: Path, stages: dict[str, Any], home: Path) -> list[tuple[str, str, str]]:
    """Returns (title, file name, the command that produced the figure's numbers)."""
    figs: list[tuple[str, str, str]] = []
    emb = stages.get("embedder", {}).get("outputs", {})
    metrics = emb.get("metrics", {})
    if metrics.get("dev_before") and metrics.get("dev_after"):
        keys = [k for k in ("ndcg@10", "mrr@10", "recall@100") if k in metrics["dev_before"]]
        plt.figure(figsize=(6, 3.2))
        xs = range(len(keys))
        plt.bar([x - 0.2 for x in xs], [metrics["dev_before"][k] for k in keys], 0.4, label="base")
        plt.bar([x + 0.2 for x in xs], [metrics["dev_after"][k] for k in keys], 0.4, label="adapted")
        plt.xticks(list(xs), keys)
        plt.title("Embedder on held-out dev pairs: before and after training")
        plt.legend()
        figs.append(("Embedder quality before/after", _fig(out / "embedder_ndcg.png"), "ragkiln train embedder"))
    beir = _beir_rows(metrics)
    if beir:
        plt.figure(figsize=(6, 3.2))
        xs = range(len(beir))
        plt.bar([x - 0.2 for x in xs], [r[1] for r in beir], 0.4, label="base")
        plt.bar([x + 0.2 for x in xs], [r[2] for r in beir], 0.4, label="adapted")
        plt.xticks(list(xs), [r[0] for r in beir])
        plt.ylabel("nDCG@10")
        plt.title("Search on the BEIR test split: base and adapted embedder")
        plt.legend()
        figs.append(("Search nDCG@10 on the BEIR test split", _fig(out / "beir_ndcg.png"),
                     "ragkiln train embedder --eval-beir DIR"))
    for name, src, cmd in (("Embedder training curves", home / "models/embedder/curves.png", "ragkiln train embedder"),
                           ("LM training loss (retrieval-augmented)", home / "models/lm-base/loss.png",
                            "ragkiln train lm --retrieval"),
                           ("LM QA fine-tuning loss", home / "models/lm/loss.png", "ragkiln train lm --qa FILE")):
        if src.exists():
            dst = out / (src.parent.name + "_" + src.name)
            shutil.copy2(src, dst)
            figs.append((name, dst.name, cmd))
    types = stages.get("verify", {}).get("outputs", {}).get("types", {})
    if types:
        names = list(types)
        if all(types[t].get("ppl") is not None for t in names):
            figs.append(("Held-out perplexity per GGUF type",
                         _bar(out / "quant_ppl.png", names, [types[t]["ppl"] for t in names],
                              "Perplexity per quantization type", "perplexity"), "ragkiln quantize verify"))
        if all(types[t].get("gen_tok_s") is not None for t in names):
            figs.append(("Generation speed per GGUF type",
                         _bar(out / "quant_speed.png", names, [types[t]["gen_tok_s"] for t in names],
                              "llama.cpp generation tokens/s", "tokens/s"), "ragkiln quantize verify"))
    ev = stages.get("evaluate", {}).get("outputs", {})
    lat = ev.get("latency", {})
    if lat:
        plt.figure(figsize=(6, 3.2))
        for mode, d in lat.items():
            plt.hist(d["samples_ms"], bins=40, alpha=0.5, label=f"{mode} (p50 {d['p50_ms']} ms)")
        plt.xlabel("ms per query (embedding, retrieval, fusion, chunk fetch)")
        plt.legend()
        plt.title("Search latency")
        figs.append(("Search latency histogram", _fig(out / "latency.png"), "ragkiln build (evaluate stage)"))
    labels = ev.get("entity_labels", {})
    if labels:
        top = sorted(labels.items(), key=lambda kv: -kv[1])[:15]
        figs.append(("Entity label counts", _bar(out / "entities.png", [k for k, _ in top], [v for _, v in top],
                                                 "Entity mentions per label", "mentions"), "ragkiln entities --json"))
    return figs


def _beir_rows(metrics: dict[str, Any]) -> list[tuple[str, float, float, float, float]]:
    """(mode, nDCG@10 before, after, Recall@100 before, after) for each mode scored on the BEIR split."""
    before, after = metrics.get("beir_before") or {}, metrics.get("beir_after") or {}
    return [(m, before[m]["ndcg@10"], after[m]["ndcg@10"], before[m]["recall@100"], after[m]["recall@100"])
            for m in ("bm25", "dense", "hybrid") if m in before and m in after]


def _summary_rows(stages: dict[str, Any]) -> list[tuple[str, str, str]]:
    rows = []
    for name, rec in stages.items():
        if name == "report":
            continue
        out = rec.get("outputs", {})
        brief = {k: v for k, v in out.items() if not isinstance(v, (dict, list))}
        rows.append((name, f"{rec.get('seconds', 0):.1f}", json.dumps(brief, default=str)[:400]))
    return rows


def write_report(home: Path, state: Any, preset: str, corpus: list[str], eval_beir: str | None = None) -> Path:
    out = home / "report"
    out.mkdir(parents=True, exist_ok=True)
    stages = state.data["stages"]
    figs = build_figures(out, stages, home)
    command = f"ragkiln --workspace {home} build {' '.join(corpus)} --preset {preset}" + (
        f" --eval-beir {eval_beir}" if eval_beir else "")
    beir = _beir_rows(stages.get("embedder", {}).get("outputs", {}).get("metrics", {}))
    kept = stages.get("reindex", {}).get("outputs", {}).get("reason")  # the adapted embedder scored lower
    verify = stages.get("verify", {}).get("outputs", {})
    ppl = stages.get("evaluate", {}).get("outputs", {}).get("perplexity", {})
    md = [f"# ragkiln build report ({preset})", "", f"Produced by: `{command}`", "", "## Stages", "",
          "| stage | seconds | outputs |", "|---|---|---|"]
    md += [f"| {n} | {s} | `{o}` |" for n, s, o in _summary_rows(stages)]
    if beir:
        md += ["", f"## Search on {eval_beir or 'the BEIR'} test split", "",
               "| mode | nDCG@10 base | nDCG@10 adapted | Recall@100 base | Recall@100 adapted |", "|---|---|---|---|---|"]
        md += [f"| {m} | {a} | {b} | {c} | {d} |" for m, a, b, c, d in beir]
        if kept:
            md += ["", f"Search serves the base embedder: {kept}."]
    if ppl:
        md += ["", "## Held-out perplexity", "", "```json", json.dumps(ppl, indent=2), "```"]
    if verify:
        md += ["", "## Quantization (`ragkiln quantize verify`)", "",
               f"tokenizer match {verify.get('tokenizer_match')}, F32 max |logit diff| {verify.get('f32_max_abs_diff')}",
               "", "| type | ppl | Δppl % | KL | top-1 | size (bytes) | gen tok/s | × torch |", "|---|---|---|---|---|---|---|---|"]
        for t, d in verify.get("types", {}).items():
            md.append(f"| {t} | {d.get('ppl')} | {d.get('ppl_delta_pct')} | {d.get('kl')} | {d.get('top1')} | "
                      f"{d.get('size_bytes')} | {d.get('gen_tok_s')} | {d.get('gen_speedup_vs_torch')} |")
    md += ["", "## Figures", ""]
    for title, name, cmd in figs:
        md += [f"### {title}", "", f"![{title}]({name})", "", f"Command: `{cmd}` (run by `{command}`)", ""]
    atomic_write_text(out / "report.md", "\n".join(md) + "\n")

    body = [f"<h1>ragkiln build report <small>({html.escape(preset)})</small></h1>",
            f"<p>Produced by: <code>{html.escape(command)}</code></p>", "<h2>Stages</h2>",
            "<table><tr><th>stage</th><th>seconds</th><th>outputs</th></tr>"]
    body += [f"<tr><td>{html.escape(n)}</td><td>{s}</td><td><code>{html.escape(o)}</code></td></tr>"
             for n, s, o in _summary_rows(stages)]
    body.append("</table>")
    if beir:
        body.append(f"<h2>Search on {html.escape(eval_beir or 'the BEIR')} test split</h2><table><tr><th>mode</th>"
                    "<th>nDCG@10 base</th><th>nDCG@10 adapted</th><th>Recall@100 base</th><th>Recall@100 adapted</th></tr>")
        body += ["<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in beir]
        body.append("</table>")
        if kept:
            body.append(f"<p>Search serves the base embedder: {html.escape(kept)}.</p>")
    if ppl:
        body.append(f"<h2>Held-out perplexity</h2><pre>{html.escape(json.dumps(ppl, indent=2))}</pre>")
    if verify:
        body.append("<h2>Quantization</h2><table><tr><th>type</th><th>ppl</th><th>&Delta;ppl %</th><th>KL</th>"
                    "<th>top-1</th><th>bytes</th><th>gen tok/s</th><th>&times; torch</th></tr>")
        for t, d in verify.get("types", {}).items():
            cells = [t] + [str(d.get(k)) for k in ("ppl", "ppl_delta_pct", "kl", "top1", "size_bytes", "gen_tok_s",
                                                   "gen_speedup_vs_torch")]
            body.append("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>")
        body.append("</table>")
    body.append("<h2>Figures</h2>")
    for title, name, cmd in figs:
        data = base64.b64encode((out / name).read_bytes()).decode()  # self-contained page: works served or opened
        body.append(f"<figure><img src='data:image/png;base64,{data}' alt='{html.escape(title)}'><figcaption>"
                    f"{html.escape(title)}: <code>{html.escape(cmd)}</code></figcaption></figure>")
    page = ("<!doctype html><html><head><meta charset='utf-8'><title>ragkiln report</title><style>"
            "body{font-family:system-ui,sans-serif;max-width:980px;margin:2em auto;padding:0 1em}"
            "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:4px 8px;font-size:13px;"
            "vertical-align:top}code{font-size:12px}img{max-width:100%}</style></head><body>"
            + "\n".join(body) + "</body></html>")
    path = out / "report.html"
    atomic_write_text(path, page)
    return path
