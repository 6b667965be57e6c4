"""Sampling knobs shared by the torch generator (trainer.lm) and the llama.cpp runtime (quantize).

One class, so a request validated once means the same thing on both back ends (the GGUF check
compares them token for token).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from common.errors import InvalidInput

# Tokens the repetition penalty looks back over: llama-cpp-python's `last_n_tokens_size` default, passed
# explicitly by quantize.runtime so both back ends penalise the same window (generated tokens only:
# llama.cpp's sampler sees only what it sampled, never the prompt).
PENALTY_LAST_N = 64


@dataclass(frozen=True)
class SamplingParams:
    max_tokens: int = 128
    temperature: float = 0.8  # 0 = greedy
    top_k: int = 0  # 0 = off
    top_p: float = 1.0  # 1 = off
    stop: tuple[str, ...] = field(default_factory=tuple)
    seed: int | None = None
    extract_from: tuple[int, ...] | None = None  # extractive decoding: the output must be a span of these ids
    extract_avoid: tuple[int, ...] = ()  # ... and not only a run of these (the question's own words)
    extract_starts: tuple[int, ...] | None = None  # ... beginning at one of these positions of extract_from (None: any)
    extract_ends: tuple[int, ...] | None = None  # ... ending just before one of these positions (None: any)
    extract_search: str = "greedy"  # with temperature 0: "greedy" token by token, or "best": the likeliest whole span
    extract_alpha: float = 1.5  # ... "best" ranks spans by log P(span, EOS) / (tokens + 1) ** alpha (bench/lm_focus.py)
    ignore_eos: bool = False  # exactly max_tokens: speed checks must time a model that would stop at once
    repeat_penalty: float = 1.0  # 1 = off (parity checks); served free generation uses server.repeat_penalty
    stop_tokens: tuple[int, ...] = ()  # ids that end the answer like EOS (the prompt's own markers: <q>, <ctx>, ...)

    def validate(self) -> "SamplingParams":
        if self.max_tokens < 1:
            raise InvalidInput("max_tokens must be >= 1")
        if self.temperature < 0:
            raise InvalidInput("temperature must be >= 0")
        if self.top_k < 0:
            raise InvalidInput("top_k must be >= 0")
        if not 0.0 < self.top_p <= 1.0:
            raise InvalidInput("top_p must be in (0, 1]")
        if self.ignore_eos and self.extract_from is not None:
            raise InvalidInput("ignore_eos cannot be combined with extractive decoding (a span ends at EOS)")
        if self.extract_search not in ("greedy", "best"):
            raise InvalidInput("extract_search must be 'greedy' or 'best'")
        if not 0.0 <= self.extract_alpha <= 4.0:
            raise InvalidInput("extract_alpha must be in [0, 4]")
        if not 1.0 <= self.repeat_penalty <= 2.0:
            raise InvalidInput("repeat_penalty must be in [1, 2] (1 = off)")
        if self.extract_search == "best" and self.temperature > 0:
            raise InvalidInput("extract_search 'best' picks the likeliest span: it needs temperature 0")
        return self


def penalize_repeats(logits: np.ndarray, generated: Sequence[int], penalty: float,
                     last_n: int = PENALTY_LAST_N) -> np.ndarray:
    """llama.cpp's repetition penalty (CTRL, Keskar et al. 2019, as `llama_sampler_init_penalties` applies
    it): each distinct token among the last `last_n` generated ones has its logit divided by `penalty`
    when positive, multiplied when not. logits: (V,); returns a new array. Pure."""
    out = np.array(logits, dtype=np.float32, copy=True)  # (V,)
    if penalty == 1.0 or not generated or last_n <= 0:
        return out
    seen = np.fromiter({int(t) for t in generated[-last_n:] if 0 <= int(t) < out.shape[0]}, dtype=np.int64)
    vals = out[seen]
    out[seen] = np.where(vals <= 0, vals * penalty, vals / penalty)
    return out


def span_continuations(
    source: tuple[int, ...] | list[int],
    generated: list[int],
    eos_id: int,
    avoid: tuple[int, ...] | list[int] = (),
    starts: tuple[int, ...] | list[int] | None = None,
    ends: tuple[int, ...] | list[int] | None = None,
) -> set[int]:
    """Tokens that keep `generated` a contiguous span of `source` (+ EOS once something was copied).

    Extractive decoding for answering from context: the model still picks which span (by its
    logits), but can only copy, never invent. While `generated` is also a contiguous run of `avoid`
    (the question), EOS waits until the span leaves it or cannot grow: an answer is never only words
    the question already says, an echo small models often give (bench/results/lm-squad-served-2000.json).
    `starts` / `ends` (positions in `source`; None: any) bound where a span may begin and before which
    position it may stop: `trainer.lm.qa_bounds.answer_bounds` puts them at word edges and keeps spans from
    opening on a question word or a stop word (or, where the question asks for a number or a name, on
    any other word). EOS is also allowed when the span cannot grow, so decoding always ends. Pure;
    O((len(source) + len(avoid)) * len(generated)).
    """
    n = len(generated)
    first = range(len(source) - n + 1) if starts is None else [i for i in starts if 0 <= i <= len(source) - n]
    at = [i for i in first if list(source[i : i + n]) == generated]
    allowed = {source[i + n] for i in at if i + n < len(source)}
    if n and not (allowed and _is_run_of(generated, avoid)):
        if not allowed or ends is None or set(ends).intersection(i + n for i in at):
            allowed.add(eos_id)
    return allowed


def _is_run_of(part: list[int], whole: tuple[int, ...] | list[int]) -> bool:
    n = len(part)
    return any(list(whole[i : i + n]) == part for i in range(len(whole) - n + 1))


def span_candidates(
    source: tuple[int, ...] | list[int],
    max_len: int,
    avoid: tuple[int, ...] | list[int] = (),
    starts: tuple[int, ...] | list[int] | None = None,
    ends: tuple[int, ...] | list[int] | None = None,
) -> dict[tuple[int, ...], int]:
    """Every answer `span_continuations` could copy, up to `max_len` tokens: token tuple -> first start.

    For span search (score each span's probability whole, then keep the best) instead of greedy
    decoding, which commits to the likeliest first token. Same rules: a span opens at one of `starts`,
    stops before one of `ends` (or where `source` ends), and is not only a run of `avoid` unless it
    cannot grow. Equal token runs at several places are one answer. Pure."""
    first = range(len(source)) if starts is None else sorted(i for i in set(starts) if 0 <= i < len(source))
    stop = None if ends is None else set(ends)
    out: dict[tuple[int, ...], int] = {}
    for i in first:
        for j in range(i + 1, min(len(source), i + max_len) + 1):
            if j < len(source) and stop is not None and j not in stop:
                continue
            span = tuple(source[i:j])
            if j < len(source) and _is_run_of(list(span), avoid):
                continue
            out.setdefault(span, i)
    return out


def span_rows(spans: dict[tuple[int, ...], int]) -> list[tuple[int, int]]:
    """(start, longest span length from it) per start: one forward pass over prompt + that run of
    the source reads the score of every span from that start."""
    longest: dict[int, int] = {}
    for span, i in spans.items():
        longest[i] = max(longest.get(i, 0), len(span))
    return sorted(longest.items())


def read_span_scores(source: Sequence[int], spans: dict[tuple[int, ...], int], start: int, logits: np.ndarray,
                     eos_id: int, out: dict[tuple[int, ...], float]) -> None:
    """Fill `out[span]` = log P(span, then EOS) for the spans from `start`. logits: (n + 1, V), row k
    the next-token logits after the prompt and the first k tokens of source[start : start + n]."""
    z = logits.astype(np.float64)
    z = z - z.max(axis=1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))  # (n + 1, V) log-softmax
    n = logp.shape[0] - 1
    run = np.asarray(source[start : start + n], dtype=np.int64)  # (n,)
    totals = np.cumsum(logp[np.arange(n), run]) + logp[1:, eos_id]  # (n,) span of k + 1 tokens, then EOS
    for k in range(n):
        span = tuple(int(t) for t in run[: k + 1])
        if span in spans and span not in out:
            out[span] = float(totals[k])


def likeliest_span(scores: dict[tuple[int, ...], float], spans: dict[tuple[int, ...], int], alpha: float) -> list[int]:
    """The best span by log P(span, EOS) / (tokens + 1) ** alpha; a tie goes to the one opening earlier.

    alpha 0 is the raw probability, which favours the shortest spans: on 1,000 SQuAD rule questions it
    scored below greedy decoding, and alpha 1.5 (the per-token mean, and a little more) above it on
    both halves (bench/lm_focus.py → bench/results/lm-span.json)."""
    return list(max(scores, key=lambda s: (scores[s] / (len(s) + 1) ** alpha, -spans[s]))) if scores else []
