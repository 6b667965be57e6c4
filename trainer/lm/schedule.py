"""Learning-rate schedule: linear warmup then cosine decay to a floor (pure, step -> lr)."""

from __future__ import annotations

import math


def lr_at(step: int, *, lr: float, min_lr: float, warmup: int, total: int) -> float:
    """LR for optimizer step `step` (0-based): linear 0 -> lr over `warmup`, cosine lr -> min_lr until `total`."""
    if warmup > 0 and step < warmup:
        return lr * (step + 1) / warmup
    if step >= total:
        return min_lr
    span = max(1, total - warmup)
    progress = (step - warmup) / span  # 0 .. 1
    return min_lr + 0.5 * (1.0 + math.cos(math.pi * progress)) * (lr - min_lr)
