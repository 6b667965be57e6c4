"""What quantization costs, measured token by token against the fp32 torch model (pure numpy).

For each scored position t (a next-token prediction) with reference logits p (torch fp32) and
candidate logits q (a GGUF file through llama.cpp):
    nll_q(t)  = -log softmax(q)[target]          -> perplexity = exp(mean nll)
    KL(t)     = sum_v P(v) (log P(v) - log Q(v))  (reference P, candidate Q; nats per token)
    top1(t)   = argmax p == argmax q
This is how llama.cpp's `llama-perplexity --kl-divergence` reports quantization damage.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise log-softmax in float64. logits: (T, V) -> (T, V)."""
    x = logits.astype(np.float64, copy=False)
    m = x.max(axis=-1, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(axis=-1, keepdims=True))


def token_nll(logits: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """-log p(target) per position. logits: (T, V), targets: (T,) -> (T,)."""
    lp = log_softmax(logits)
    return -lp[np.arange(len(targets)), targets]


def kl_per_token(ref_logits: np.ndarray, cand_logits: np.ndarray) -> np.ndarray:
    """KL(ref || cand) per position in nats. (T, V), (T, V) -> (T,)."""
    lp, lq = log_softmax(ref_logits), log_softmax(cand_logits)
    return (np.exp(lp) * (lp - lq)).sum(axis=-1)


@dataclass
class Agreement:
    """Running totals of one candidate against the reference over many scored positions."""

    nll_sum: float = 0.0
    kl_sum: float = 0.0
    top1_hits: int = 0
    tokens: int = 0
    max_abs_diff: float = 0.0
    kl_values: list[float] = field(default_factory=list)

    def add(self, ref_logits: np.ndarray, cand_logits: np.ndarray, targets: np.ndarray) -> None:
        """Score positions: ref/cand logits (T, V) predicting targets (T,)."""
        if ref_logits.shape != cand_logits.shape or len(targets) != len(ref_logits):
            raise ValueError(f"shape mismatch {ref_logits.shape} / {cand_logits.shape} / {targets.shape}")
        if len(targets) == 0:
            return
        self.nll_sum += float(token_nll(cand_logits, targets).sum())
        kl = kl_per_token(ref_logits, cand_logits)
        self.kl_sum += float(kl.sum())
        self.kl_values.extend(kl.tolist())
        self.top1_hits += int((ref_logits.argmax(-1) == cand_logits.argmax(-1)).sum())
        self.tokens += len(targets)
        self.max_abs_diff = max(self.max_abs_diff, float(np.abs(ref_logits - cand_logits).max()))

    @property
    def ppl(self) -> float:
        return math.exp(min(self.nll_sum / max(self.tokens, 1), 50.0))

    @property
    def kl(self) -> float:
        return self.kl_sum / max(self.tokens, 1)

    @property
    def kl_p99(self) -> float:
        return float(np.percentile(self.kl_values, 99)) if self.kl_values else 0.0

    @property
    def top1(self) -> float:
        return self.top1_hits / max(self.tokens, 1)


def ppl_delta_pct(ppl: float, ref_ppl: float) -> float:
    """Relative perplexity change in percent (positive = worse than the reference)."""
    return 100.0 * (ppl - ref_ppl) / ref_ppl
