"""`quantize` (export GGUF files) and `quantize verify`: thin adapters over quantize.service.

`ragkiln generate --gguf` and `ragkiln eval lm --gguf` live with the LM commands (lm_cmds.py) and
call `gguf_generate_cmd` / `gguf_eval_cmd` below, so the GGUF rendering stays in one place.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from common.settings import Settings, load_settings
from quantize import service
from quantize.runtime import SamplingParams
from cli.app import app, overrides_of
from cli.output import emit, handle_errors

quantize_app = typer.Typer(
    help="Export the trained LM to GGUF (F32, F16, Q8_0, Q4_0, K-quants) and verify it against torch.",
    invoke_without_command=True,
    no_args_is_help=False,
)
app.add_typer(quantize_app, name="quantize")


def _render_export(r: dict[str, Any]) -> str:
    lines = [f"GGUF files in {r['out_dir']}:"]
    for f in r["files"]:
        types = ", ".join(f"{k} x{v}" for k, v in sorted(f["tensor_types"].items()))
        lines.append(f"  {f['type']:<7} {f['file']:<22} {f['size_bytes'] / 1e6:8.2f} MB  [{types}]")
        if f["fallbacks"]:
            lines.append(f"          {len(f['fallbacks'])} tensor(s) fell back from K-quants "
                         f"(row size not a multiple of 256): {', '.join(f['fallbacks'][:3])}...")
    for note in r.get("tokenizer_notes") or []:
        lines.append(f"  tokenizer note: {note}")
    return "\n".join(lines)


@quantize_app.callback()
@handle_errors
def quantize(
    ctx: typer.Context,
    model: Path = typer.Option(None, "--model", help="LM checkpoint directory (from `ragkiln train lm`)."),
    types: str = typer.Option(None, "--types", help="Comma-separated: f32,f16,q8_0,q4_0,q4_k_m,q5_k_m,q6_k or all."),
    out: Path = typer.Option(None, "--out", help="Output directory (default WORKSPACE/gguf/MODEL_NAME)."),
    threads: int = typer.Option(None, "--threads", help="Threads for llama.cpp's quantizer."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Write GGUF files for a trained LM checkpoint."""
    if ctx.invoked_subcommand is not None:
        ctx.obj = {**(ctx.obj or {}), "_quantize_threads": threads}
        return
    if model is None:
        raise typer.BadParameter("--model DIR is required", param_hint="--model")
    settings = load_settings(overrides_of(ctx, quantize={"types": types, "threads": threads}))
    report = service.quantize_model(settings, model, types, out)
    emit(report.to_dict(), as_json, _render_export)


def _render_verify(r: dict[str, Any]) -> str:
    lines = [r["hardware"], f"held-out: {r['held_out']}, {r['scored_tokens']} scored tokens; "
             f"{r['greedy_prompts']} greedy prompts x {r['gen_tokens']} tokens"]
    lines.append(f"tokenizer match {r['tokenizer_match']:.3f}"
                 + (f", prompt format match {r['prompt_format_match']:.3f}" if "prompt_format_match" in r else ""))
    if "f32_max_abs_diff" in r:
        lines.append(f"F32 max |logit diff| vs torch {r['f32_max_abs_diff']:.2e}; greedy F32 identical "
                     f"{r.get('greedy_f32_match', 0):.0%}")
    t = r["torch"]
    lines.append(f"{'type':<7} {'ppl':>9} {'dppl%':>7} {'KL':>8} {'top1':>6} {'MB':>8} {'gen t/s':>9} {'x torch':>7} "
                 f"{'pp t/s':>9} {'x torch':>7}")
    lines.append(f"{'torch':<7} {t['ppl']:9.3f} {'':>7} {'':>8} {'':>6} {t['size_bytes'] / 1e6:8.2f} "
                 f"{t['gen_tok_s']:9.0f} {'1.0':>7} {t['pp_tok_s']:9.0f} {'1.0':>7}")
    for name, v in r["types"].items():
        lines.append(f"{name:<7} {v['ppl']:9.3f} {v['ppl_delta_pct']:+7.2f} {v['kl']:8.5f} {v['top1']:6.3f} "
                     f"{(v['size_bytes'] or 0) / 1e6:8.2f} {v['gen_tok_s']:9.0f} {v['gen_speedup_vs_torch']:7.1f} "
                     f"{v['pp_tok_s']:9.0f} {v['pp_speedup_vs_torch']:7.1f}")
    return "\n".join(lines)


@quantize_app.command("verify")
@handle_errors
def verify(
    ctx: typer.Context,
    model: Path = typer.Option(..., "--model", help="LM checkpoint directory."),
    types: str = typer.Option("all", "--types", help="GGUF types to measure (F32 is always included)."),
    gguf_dir: Path = typer.Option(None, "--gguf-dir", help="Export directory (default WORKSPACE/gguf/MODEL_NAME); "
                                  "missing types are exported first."),
    text: Path = typer.Option(None, "--text", help="Held-out text (.txt paragraphs or .jsonl with 'text'); default: "
                              "the model's held-out documents in the workspace."),
    threads: int = typer.Option(None, "--threads", help="Threads for llama.cpp and torch alike."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Measure every GGUF type against the torch model: parity, perplexity, KL, top-1, size, speed."""
    threads = threads or (ctx.obj or {}).get("_quantize_threads")
    base = {k: v for k, v in (ctx.obj or {}).items() if not k.startswith("_")}
    settings = load_settings({**base, "quantize": {"threads": threads}})
    emit(service.verify_model(settings, model, types, gguf_dir, text), as_json, _render_verify)


# ---- used by lm_cmds.py for `generate --gguf` and `eval lm --gguf` ----------------------------------
def gguf_generate_cmd(settings: Settings, gguf: Path, prompt: str, params: SamplingParams, as_json: bool,
                      extractive: bool = False) -> None:
    g = service.generate_gguf(settings, gguf, prompt, params, extractive)
    emit({"text": g.text, "tokens": len(g.tokens), "prompt_tokens": g.prompt_tokens, "finish_reason": g.finish_reason,
          "gen_tok_s": round(g.gen_tok_s, 1), "model": str(gguf)}, as_json, lambda d: d["text"])


def gguf_eval_cmd(settings: Settings, gguf: Path, rows: int | None, as_json: bool) -> None:
    r = service.eval_gguf(settings, gguf, rows)
    emit(r, as_json, lambda d: "\n".join(f"{k}: {v}" for k, v in d.items()))
