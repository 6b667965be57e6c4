"""Parity and cost of every GGUF type against the torch fp32 model, on the same tokens and threads.

Measured (see `verify_export`):
- tokenizer_match: share of sample texts that llama.cpp tokenises exactly as SentencePiece
  (`<s>` + encode(text)); prompt_format_match: share of QA prompts rendered as text for llama.cpp
  (quantize.metadata.render_prompt) whose ids equal trainer.lm.qa.qa_prompt_ids.
- f32_max_abs_diff: largest |logit| difference, F32 GGUF vs torch, over every position scored.
- greedy: share of prompts whose greedy continuation (same ids, exactly max tokens: EOS does not end it,
  so a model that answers with EOS at once still gets timed) is token-identical.
- per type: held-out perplexity, its change against torch fp32 in percent, KL(torch || gguf) and
  top-1 agreement per token, file size, and tokens/s for generation (end to end, greedy, same
  prompts) and prompt processing, each with its speedup over torch eager
  (trainer.lm.sampling.generate / a forward pass) on the same number of threads; torch and every
  type are timed interleaved, item by item, so a busy shared machine slows all of them alike.
"""

from __future__ import annotations

import contextlib
import os
import platform
import time
from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from common.threads import scoped_threads
from quantize.export import ExportReport
from quantize.metadata import render_prompt
from quantize.metrics import Agreement, ppl_delta_pct
from quantize.runtime import LlamaCppGenerator, SamplingParams



@dataclass(frozen=True)
class VerifyData:
    texts: list[str]  # tokenizer parity sample
    rows: list[list[int]]  # scored sequences: <s> + target tokens (every next-token prediction counts)
    prompts: list[list[int]]  # greedy prompts, ids starting with <s>
    qa: list[tuple[list[str], str]]  # (passages, question) for prompt-format parity


def build_verify_data(
    texts: Sequence[str], tokenizer: Any, max_seq_len: int, *, rows: int = 64, prompts: int = 20,
    prompt_len: int = 16, target_len: int = 128,
) -> VerifyData:
    """Cut held-out texts into scored rows, greedy prompts and QA prompts (pure given the tokenizer)."""
    texts = [t for t in texts if t and t.strip()]
    window = max(2, min(target_len, max_seq_len - 1))
    out_rows: list[list[int]] = []
    for t in texts:
        ids = tokenizer.encode(t)
        for s in range(0, len(ids), window):
            piece = ids[s : s + window]
            if len(piece) >= 2:
                out_rows.append([tokenizer.bos_id, *piece])
            if len(out_rows) >= rows:
                break
        if len(out_rows) >= rows:
            break
    plen = max(1, min(prompt_len, max_seq_len // 4))
    out_prompts = [r[: plen + 1] for r in out_rows if len(r) > plen][:prompts]
    qa = [([texts[i][:400]], texts[(i + 1) % len(texts)][:60]) for i in range(min(prompts, len(texts)))]
    return VerifyData(list(texts[:200]), out_rows, out_prompts, qa)


def torch_threads(n: int) -> AbstractContextManager[None]:
    return scoped_threads(torch.get_num_threads, torch.set_num_threads, n)


def hardware_line(threads: int) -> str:
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in open("/proc/cpuinfo", encoding="utf-8"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    import llama_cpp

    return (f"{cpu}, {os.cpu_count()} logical CPUs, {threads} threads; torch {torch.__version__}, "
            f"llama-cpp-python {llama_cpp.__version__}, Python {platform.python_version()}")


def tokenizer_parity(gen: LlamaCppGenerator, tokenizer: Any, data: VerifyData, prompt_format: str | None,
                     passage_len: int) -> dict[str, Any]:
    from trainer.lm.qa import qa_prompt_ids

    same = sum(gen.tokenize(t) == [tokenizer.bos_id, *tokenizer.encode(t)] for t in data.texts)
    out: dict[str, Any] = {"tokenizer_match": same / max(len(data.texts), 1), "tokenizer_texts": len(data.texts)}
    if prompt_format and data.qa:
        ok = sum(gen.tokenize(render_prompt(prompt_format, ctx, q)) == qa_prompt_ids(tokenizer, ctx, q, passage_len)
                 for ctx, q in data.qa)
        out["prompt_format_match"] = ok / len(data.qa)
    return out


@torch.no_grad()
def _torch_logits(model: torch.nn.Module, ids: list[int]) -> np.ndarray:
    logits, _ = model(torch.tensor([ids]))  # (1, T, V)
    return logits[0].float().numpy()


@dataclass
class _Speed:
    pp_s: float = 0.0
    pp_tokens: int = 0
    gen_s: float = 0.0
    outs: list[list[int]] = field(default_factory=list)

    @property
    def gen_tokens(self) -> int:
        return sum(len(o) for o in self.outs)


def measure_speed(model: Any, tokenizer: Any, runners: dict[str, LlamaCppGenerator], data: VerifyData,
                  limits: list[int], threads: int, pp_rows: int = 16) -> tuple[_Speed, dict[str, _Speed]]:
    """Prompt processing and greedy generation, torch and every GGUF type interleaved item by item so
    that load from other processes on a shared machine hits all of them alike."""
    from trainer.lm.sampling import generate

    rows = data.rows[:pp_rows]
    ref, per = _Speed(), {t: _Speed() for t in runners}
    with torch_threads(threads):
        generate(model, tokenizer, data.prompts[0], SamplingParams(max_tokens=2, temperature=0.0))  # warm-ups
        _torch_logits(model, rows[0][:-1])
        for r in runners.values():
            r.generate(data.prompts[0], SamplingParams(max_tokens=2, temperature=0.0))
        for row in rows:
            x = row[:-1]
            t0 = time.perf_counter()
            _torch_logits(model, x)
            ref.pp_s += time.perf_counter() - t0
            ref.pp_tokens += len(x)
            for t, r in runners.items():
                per[t].pp_s += r.prompt_seconds(x)
                per[t].pp_tokens += len(x)
        for p, n in zip(data.prompts, limits):
            timed = SamplingParams(max_tokens=n, temperature=0.0, ignore_eos=True)
            t0 = time.perf_counter()
            ref.outs.append(generate(model, tokenizer, p, timed).tokens)
            ref.gen_s += time.perf_counter() - t0
            for t, r in runners.items():
                t0 = time.perf_counter()
                per[t].outs.append(r.generate(p, timed).tokens)
                per[t].gen_s += time.perf_counter() - t0
    return ref, per


def _rate(tokens: int, seconds: float) -> float:
    return tokens / seconds if seconds > 0 else 0.0


def verify_export(
    model: Any, tokenizer: Any, export: ExportReport, types: Sequence[str], data: VerifyData, *,
    threads: int = 2, gen_tokens: int = 48, prompt_format: str | None = None,
) -> dict[str, Any]:
    """Run every measurement for the given GGUF types of `export` (see module docstring)."""
    if not data.rows or not data.prompts:
        from common.errors import InvalidInput

        raise InvalidInput("not enough held-out text to verify with (need at least one row of 2+ tokens)")
    model.eval()
    # both sides generate within the trained context (torch would otherwise slide its window)
    limits = [max(1, min(gen_tokens, model.args.max_seq_len - len(p))) for p in data.prompts]
    sizes = {f.type: f.size_bytes for f in export.files}
    result: dict[str, Any] = {"gguf_dir": export.out_dir, "threads": threads, "hardware": hardware_line(threads),
                              "scored_rows": len(data.rows), "greedy_prompts": len(data.prompts),
                              "gen_tokens": gen_tokens}
    scorers = {t: LlamaCppGenerator(export.path_of(t), threads=threads, logits_all=True) for t in types}
    try:
        first = scorers[types[0]]
        # no passage truncation here: this checks tokenisation, not the prompt budget
        result.update(tokenizer_parity(first, tokenizer, data, prompt_format, 1 << 30))
        ref = Agreement()
        agree = {t: Agreement() for t in types}
        f32_all_diff = 0.0
        with torch_threads(threads):
            _torch_logits(model, data.rows[0][:-1])  # warm-up
            for row in data.rows:
                x, y = row[:-1], np.asarray(row[1:])
                ref_logits = _torch_logits(model, x)  # (T, V)
                ref.add(ref_logits, ref_logits, y)
                for t in types:
                    cand = scorers[t].logits(x)
                    agree[t].add(ref_logits, cand, y)
                    if t == "f32":
                        f32_all_diff = max(f32_all_diff, float(np.abs(cand - ref_logits).max()))
        for t in types:
            scorers[t].close()
        scorers = {}
        runners = {t: LlamaCppGenerator(export.path_of(t), threads=threads) for t in types}
        try:
            tspeed, speeds = measure_speed(model, tokenizer, runners, data, limits, threads)
        finally:
            for r in runners.values():
                r.close()
        torch_gen_rate, torch_pp_rate = _rate(tspeed.gen_tokens, tspeed.gen_s), _rate(tspeed.pp_tokens, tspeed.pp_s)
        result["torch"] = {"ppl": ref.ppl, "gen_tok_s": torch_gen_rate, "pp_tok_s": torch_pp_rate,
                           "gen_tokens_total": tspeed.gen_tokens,
                           "size_bytes": int(sum(p.numel() * 4 for p in model.state_dict().values()))}
        result["scored_tokens"] = ref.tokens
        if "f32" in types:
            result["f32_max_abs_diff"] = f32_all_diff
        per_type: dict[str, Any] = {}
        for t in types:
            sp, a = speeds[t], agree[t]
            same = sum(x == y for x, y in zip(sp.outs, tspeed.outs))
            gen_rate, pp_rate = _rate(sp.gen_tokens, sp.gen_s), _rate(sp.pp_tokens, sp.pp_s)
            per_type[t] = {
                "ppl": a.ppl, "ppl_delta_pct": ppl_delta_pct(a.ppl, ref.ppl), "kl": a.kl, "kl_p99": a.kl_p99,
                "top1": a.top1, "max_abs_diff": a.max_abs_diff, "size_bytes": sizes.get(t),
                "size_vs_f32": (sizes[t] / sizes["f32"]) if "f32" in sizes and t in sizes else None,
                "gen_tok_s": gen_rate, "gen_speedup_vs_torch": gen_rate / torch_gen_rate if torch_gen_rate else None,
                "pp_tok_s": pp_rate, "pp_speedup_vs_torch": pp_rate / torch_pp_rate if torch_pp_rate else None,
                "greedy_match": same / len(data.prompts), "gen_tokens_total": sp.gen_tokens,
                "fallbacks": next((len(f.fallbacks) for f in export.files if f.type == t), 0),
            }
        result["types"] = per_type
        if "f32" in per_type:
            result["greedy_f32_identical"] = per_type["f32"]["greedy_match"] == 1.0
            result["greedy_f32_match"] = per_type["f32"]["greedy_match"]
        return result
    finally:
        for s in scorers.values():
            s.close()
