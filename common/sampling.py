"""Sampling knobs shared by the torch generator (trainer.lm) and the llama.cpp runtime (quantize).

One class, so a request validated once means the same thing on both back ends (the GGUF check
compares them token for token).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from common.errors import InvalidInput


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
    ignore_eos: bool = False  # exactly max_tokens: speed checks must time a model that would stop at once

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
        return self


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
    the question already says, an echo small models often give (README, "Language model").
    `starts` / `ends` (positions in `source`; None: any) bound where a span may begin and before which
    position it may stop: `trainer.lm.qa.answer_bounds` puts them at word edges and keeps spans from
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
