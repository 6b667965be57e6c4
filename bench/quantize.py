"""Benchmark: what GGUF quantization costs for the `small` LM, and what llama.cpp buys over torch eager.

    HF_HUB_OFFLINE=1 flock /tmp/ragkiln-heavy.lock nice -n 5 .venv/bin/python bench/quantize.py [--model DIR]

Without --model, trains a `small` preset LM briefly (plain LM, no retrieval) on the SciFact abstracts in
../shared/datasets/scifact (the bundled samples/ corpus when that is absent), each document one chunk,
with the LM package's own run preparation and training loop; the held-out documents of that split
(recorded in the model's manifest) are the evaluation text. Then exports every GGUF type and measures
them (quantize.verify). Writes bench/results/quantize.json and bench/results/quantize.md.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from common.settings import load_settings  # noqa: E402
from quantize.export import source_from_model  # noqa: E402
from quantize.service import ensure_export  # noqa: E402
from quantize.types import parse_types  # noqa: E402
from quantize.verify import build_verify_data, verify_export  # noqa: E402

SCIFACT = ROOT.parent / "shared" / "datasets" / "scifact" / "corpus.jsonl"
WORK = ROOT / "ragkiln-data" / "bench-quantize"
TARGETS = {
    "tokenizer_match": "== 1.0", "f32_max_abs_diff": "<= 1e-3", "greedy_f32_identical": "true",
    "q8_0.ppl_delta_pct": "<= +0.5", "q4_k_m.ppl_delta_pct": "<= +5", "q8_0.gen_speedup_vs_torch": ">= 10",
    "q8_0.size_vs_f32": "<= 0.30",
}


@dataclass(frozen=True)
class Chunk:
    doc_id: str
    text: str


def corpus() -> tuple[list[Chunk], str]:
    if SCIFACT.exists():
        rows = [json.loads(line) for line in SCIFACT.open(encoding="utf-8") if line.strip()]
        return [Chunk(r["_id"], f"{r.get('title', '')}\n{r['text']}".strip()) for r in rows if r.get("text")], \
            "scifact corpus.jsonl (../shared/datasets)"
    docs = sorted(p for p in (ROOT / "samples").rglob("*") if p.suffix in {".txt", ".md"} and p.name != "README.md")
    return [Chunk(str(p.relative_to(ROOT)), p.read_text(encoding="utf-8", errors="replace")) for p in docs], \
        "bundled samples/ corpus"


def train_small(steps: int, batch_size: int, chunks: list[Chunk]) -> tuple[Path, dict[str, Any]]:
    """A briefly trained `small` LM (cached in WORK: reused when it exists)."""
    from trainer.lm.run import run_training
    from trainer.lm.service import prepare_lm_run

    out = WORK / "lm-small-plain"
    if (out / "manifest.json").exists():
        return out, {"trained": False}
    settings = load_settings({"lm": {"preset": "small", "steps": steps, "batch_size": batch_size,
                                     "eval_every": max(steps // 4, 1), "ckpt_every": steps, "warmup": steps // 10}})
    t0 = time.perf_counter()
    prepare_lm_run(WORK / "run", out, chunks, settings.lm, neighbours=None, source={"bench": "quantize"})
    summary = run_training(WORK / "run")
    return out, {"trained": True, "train_seconds": round(time.perf_counter() - t0, 1), "steps": steps,
                 "batch_size": batch_size, "heldout_ppl_at_end": summary.get("heldout_ppl")}


def check_targets(r: dict[str, Any]) -> dict[str, bool]:
    t = r["types"]
    return {
        "tokenizer_match": r["tokenizer_match"] == 1.0,
        "f32_max_abs_diff": r["f32_max_abs_diff"] <= 1e-3,
        "greedy_f32_identical": bool(r["greedy_f32_identical"]),
        "q8_0.ppl_delta_pct": t["q8_0"]["ppl_delta_pct"] <= 0.5,
        "q4_k_m.ppl_delta_pct": t["q4_k_m"]["ppl_delta_pct"] <= 5.0,
        "q8_0.gen_speedup_vs_torch": t["q8_0"]["gen_speedup_vs_torch"] >= 10.0,
        "q8_0.size_vs_f32": t["q8_0"]["size_vs_f32"] <= 0.30,
    }


def markdown(r: dict[str, Any], passed: dict[str, bool], command: str) -> str:
    t = r["torch"]
    lines = [
        "### GGUF quantization of the `small` LM (bench/quantize.py)", "",
        f"`{command}`", "", f"Hardware: {r['hardware']}", "",
        f"Model: {r['model']} ({r['n_params']:,} parameters); held-out text: {r['held_out']}; "
        f"{r['scored_tokens']:,} scored tokens, {r['greedy_prompts']} greedy prompts x up to {r['gen_tokens']} tokens.",
        "",
        f"Tokenizer match {r['tokenizer_match']:.3f} ({r['tokenizer_texts']} texts), prompt-format match "
        f"{r.get('prompt_format_match', float('nan')):.3f}; F32 max |logit diff| {r['f32_max_abs_diff']:.2e}; "
        f"greedy F32 identical on {r['greedy_f32_match']:.0%} of prompts.", "",
        "| type | ppl | Δppl % | KL (nats/token) | top-1 | size MB | × F32 size | gen tok/s | × torch | prompt tok/s | × torch |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
        f"| torch fp32 eager | {t['ppl']:.3f} | | | | {t['size_bytes'] / 1e6:.2f} | | {t['gen_tok_s']:.0f} | 1.0 | "
        f"{t['pp_tok_s']:.0f} | 1.0 |",
    ]
    for name, v in r["types"].items():
        lines.append(
            f"| {name} | {v['ppl']:.3f} | {v['ppl_delta_pct']:+.3f} | {v['kl']:.5f} | {v['top1']:.4f} | "
            f"{v['size_bytes'] / 1e6:.2f} | {v['size_vs_f32']:.3f} | {v['gen_tok_s']:.0f} | "
            f"{v['gen_speedup_vs_torch']:.1f} | {v['pp_tok_s']:.0f} | {v['pp_speedup_vs_torch']:.1f} |")
    lines += ["", "Targets: " + ", ".join(f"{k} {TARGETS[k]}: {'pass' if ok else 'FAIL'}" for k, ok in passed.items())]
    fb = {k: v["fallbacks"] for k, v in r["types"].items() if v["fallbacks"]}
    if fb:
        lines += ["", "K-quant fallbacks (tensors whose row size is not a multiple of 256, quantized by llama.cpp "
                      "with a legacy type instead): " + ", ".join(f"{k}: {n}" for k, n in fb.items())]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, help="Trained LM checkpoint (default: train a small one briefly).")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--rows", type=int, default=128, help="Held-out rows of 128 tokens scored.")
    ap.add_argument("--prompts", type=int, default=20)
    ap.add_argument("--gen-tokens", type=int, default=48)
    ap.add_argument("--types", default="all")
    args = ap.parse_args()
    command = "HF_HUB_OFFLINE=1 flock /tmp/ragkiln-heavy.lock nice -n 5 .venv/bin/python bench/quantize.py " \
        + " ".join(sys.argv[1:])

    import torch

    from trainer.lm.checkpoint import load_model

    WORK.mkdir(parents=True, exist_ok=True)
    chunks, source = corpus()
    train_info: dict[str, Any] = {"trained": False}
    model_dir = args.model
    if model_dir is None:
        model_dir, train_info = train_small(args.steps, args.batch_size, chunks)
    model, tok, manifest = load_model(model_dir)
    held = set((manifest.get("training") or {}).get("heldout_doc_ids") or [])
    texts = [c.text for c in chunks if c.doc_id in held]
    if not texts:
        sys.exit(f"none of {model_dir}'s held-out documents is in {source}; pass a model trained on it")
    qtypes = parse_types(args.types)
    if "f32" not in {q.name for q in qtypes}:  # parity is measured on F32
        qtypes = parse_types(["f32", *(q.name for q in qtypes)])
    export = ensure_export(source_from_model(Path(model_dir), model, manifest), WORK / "gguf", qtypes, args.threads)
    data = build_verify_data(texts, tok, model.args.max_seq_len, rows=args.rows, prompts=args.prompts)
    t0 = time.perf_counter()
    result = verify_export(model, tok, export, [f.type for f in export.files], data, threads=args.threads,
                           gen_tokens=args.gen_tokens, prompt_format=manifest.get("prompt_format"))
    result.update({"model": str(model_dir), "n_params": sum(p.numel() for p in model.parameters()),
                   "preset": (manifest.get("training") or {}).get("preset"),
                   "held_out": f"{len(texts)} held-out documents of the {source}", "train": train_info,
                   "verify_seconds": round(time.perf_counter() - t0, 1), "command": command,
                   "torch_threads": args.threads, "torch_version": torch.__version__})
    passed = check_targets(result)
    result["targets"] = {k: {"target": TARGETS[k], "pass": ok} for k, ok in passed.items()}
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "quantize.json").write_text(json.dumps(result, indent=2, default=str) + "\n", encoding="utf-8")
    (out / "quantize.md").write_text(markdown(result, passed, command), encoding="utf-8")
    print(markdown(result, passed, command))


if __name__ == "__main__":
    main()
