"""Text generation: temperature, top-k, top-p (nucleus) sampling, repetition penalty, max tokens, stop strings
and stop tokens.

`filter_logits` is pure (logits in, filtered logits out) so the sampling rules are unit-testable;
`generate` runs the model autoregressively (full recompute over a sliding window: these models are
small, and the served path is llama.cpp on the GGUF export).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from common.errors import ContextOverflow
from common.sampling import (SamplingParams, likeliest_span, penalize_repeats, read_span_scores, span_candidates,
                             span_continuations, span_rows)
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
    if params.extract_from is not None and params.extract_search == "best" and params.temperature == 0:
        out = best_span(model, ids, params, tokenizer.eos_id)
        text = tokenizer.decode(out)
        cut = _stop_at(text, params.stop)
        return Generation(text=text if cut is None else text[:cut], tokens=out, finish_reason="stop",
                          prompt_tokens=len(ids))
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
        if params.repeat_penalty != 1.0:  # after the span mask, before sampling: llama.cpp's sampler order
            last = torch.from_numpy(penalize_repeats(last.float().numpy(), out, params.repeat_penalty))  # (V,)
        if params.temperature == 0:
            nxt = int(torch.argmax(last))
        else:
            probs = torch.softmax(filter_logits(last, params.temperature, params.top_k, params.top_p), dim=-1)
            nxt = int(torch.multinomial(probs, 1, generator=gen))
        if (nxt == tokenizer.eos_id or nxt in params.stop_tokens) and not params.ignore_eos:
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


@torch.no_grad()
def span_scores(model: Transformer, ids: list[int], source: tuple[int, ...], spans: dict[tuple[int, ...], int],
                eos_id: int, batch: int = 16) -> dict[tuple[int, ...], float]:
    """log P(span, then EOS | ids) for each span (token tuple -> a start in `source`): one
    right-padded row per start, `batch` rows a forward pass."""
    rows, p = span_rows(spans), len(ids)
    out: dict[tuple[int, ...], float] = {}
    for b in range(0, len(rows), batch):
        group = rows[b : b + batch]
        seqs = [ids + list(source[i : i + n]) for i, n in group]
        width = max(map(len, seqs))
        if width > model.args.max_seq_len:
            raise ContextOverflow(f"prompt and answer need {width} tokens; the model's context is {model.args.max_seq_len}")
        x = torch.tensor([q + [eos_id] * (width - len(q)) for q in seqs])  # (B, T): padding after a row is causal
        logits = model(x)[0].float()  # (B, T, V)
        for r, (i, n) in enumerate(group):
            read_span_scores(source, spans, i, logits[r, p - 1 : p + n].numpy(), eos_id, out)  # (n + 1, V)
    return out


def search_spans(model: Transformer, ids: list[int], params: SamplingParams, eos_id: int
                 ) -> tuple[dict[tuple[int, ...], int], dict[tuple[int, ...], float]]:
    """Every span extractive decoding may copy (`span_candidates`, as long as the context allows) and
    its log P(span, then EOS): what `best_span` chooses from (bench/lm_focus.py reads all of them)."""
    source = params.extract_from or ()
    room = min(params.max_tokens, model.args.max_seq_len - len(ids))  # as llama.cpp's context allows
    spans = span_candidates(source, room, params.extract_avoid, params.extract_starts, params.extract_ends)
    return spans, (span_scores(model, ids, source, spans, eos_id) if spans else {})


def best_span(model: Transformer, ids: list[int], params: SamplingParams, eos_id: int) -> list[int]:
    """The likeliest span extractive decoding may copy, each scored whole. Greedy decoding commits to
    the likeliest first token, so a span that opens less likely but ends surely loses to one that
    opens likelier and then wanders."""
    spans, scores = search_spans(model, ids, params, eos_id)
    return likeliest_span(scores, spans, params.extract_alpha)


def _stop_at(text: str, stops: tuple[str, ...]) -> int | None:
    """Index of the earliest stop string in text, or None."""
    found = [i for i in (text.find(s) for s in stops if s) if i >= 0]
    return min(found) if found else None
