"""Text generation: temperature, top-k, top-p (nucleus) sampling, max tokens and stop strings.

`filter_logits` is pure (logits in, filtered logits out) so the sampling rules are unit-testable;
`generate` runs the model autoregressively (full recompute over a sliding window: these models are
small, and the served path is llama.cpp on the GGUF export).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from common.errors import ContextOverflow
from common.sampling import SamplingParams, span_continuations
from trainer.lm.model import Transformer
from trainer.lm.tokenizer import Tokenizer


def filter_logits(logits: torch.Tensor, temperature: float, top_k: int, top_p: float) -> torch.Tensor:
    """Scale by temperature and set everything outside top-k / the top-p nucleus to -inf. logits: (V,)."""
    out = logits.float() / max(temperature, 1e-8)  # (V,)
    if top_k > 0 and top_k < out.numel():
        kth = torch.topk(out, top_k).values[-1]  # scalar: the k-th largest logit
        out = out.masked_fill(out < kth, float("-inf"))  # (V,)
    if top_p < 1.0:
        sorted_logits, order = torch.sort(out, descending=True)  # (V,), (V,)
        probs = torch.softmax(sorted_logits, dim=-1)  # (V,)
        cum_before = torch.cumsum(probs, dim=-1) - probs  # (V,) mass strictly above each token
        drop_sorted = cum_before >= top_p  # (V,) the most likely token is always kept
        drop = torch.zeros_like(drop_sorted).scatter(0, order, drop_sorted)  # (V,) back to vocab order
        out = out.masked_fill(drop, float("-inf"))
    return out


@dataclass(frozen=True)
class Generation:
    text: str
    tokens: list[int]
    finish_reason: str  # "stop" (stop string or EOS) or "length"
    prompt_tokens: int


@torch.no_grad()
def generate(
    model: Transformer, tokenizer: Tokenizer, prompt: str | list[int], params: SamplingParams
) -> Generation:
    """Sample a continuation of `prompt` (text, or token ids that already include <s>)."""
    params.validate()
    model.eval()
    ids = [tokenizer.bos_id, *tokenizer.encode(prompt)] if isinstance(prompt, str) else list(prompt)
    limit = model.args.max_seq_len
    if len(ids) >= limit:
        raise ContextOverflow(f"prompt has {len(ids)} tokens; the model's context is {limit}")
    gen = torch.Generator().manual_seed(params.seed) if params.seed is not None else None
    out: list[int] = []
    finish = "length"
    text = ""
    for _ in range(params.max_tokens):
        window = (ids + out)[-limit:]
        logits, _ = model(torch.tensor([window]))  # (1, T, V)
        last = logits[0, -1]  # (V,)
        if params.extract_from is not None:
            allowed = span_continuations(params.extract_from, out, tokenizer.eos_id, params.extract_avoid,
                                         params.extract_starts, params.extract_ends)
            if not allowed:  # nothing to copy from
                finish = "stop"
                break
            keep = torch.zeros_like(last, dtype=torch.bool)  # (V,)
            keep[list(allowed)] = True
            last = last.masked_fill(~keep, float("-inf"))  # (V,)
        if params.temperature == 0:
            nxt = int(torch.argmax(last))
        else:
            probs = torch.softmax(filter_logits(last, params.temperature, params.top_k, params.top_p), dim=-1)
            nxt = int(torch.multinomial(probs, 1, generator=gen))
        if nxt == tokenizer.eos_id and not params.ignore_eos:
            finish = "stop"
            break
        out.append(nxt)
        text = tokenizer.decode(out)
        cut = _stop_at(text, params.stop)
        if cut is not None:
            text, finish = text[:cut], "stop"
            break
    else:
        text = tokenizer.decode(out)
    return Generation(text=text, tokens=out, finish_reason=finish, prompt_tokens=len(ids))


def _stop_at(text: str, stops: tuple[str, ...]) -> int | None:
    """Index of the earliest stop string in text, or None."""
    found = [i for i in (text.find(s) for s in stops if s) if i >= 0]
    return min(found) if found else None
