"""Weight-space ensembling of the trained embedder with the model it started from (WiSE-FT).

Wortsman et al. 2022 ("Robust fine-tuning of zero-shot models") average the fine-tuned weights with the
starting ones: the average keeps what the start knew about queries unlike the training pairs, which
mined pseudo-queries never cover. Both models share one architecture, so the average is element-wise.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from common.errors import InvalidInput


def interpolate(start: Mapping[str, torch.Tensor], tuned: Mapping[str, torch.Tensor],
                start_weight: float) -> dict[str, torch.Tensor]:
    """(1 - w) * tuned + w * start for every floating tensor of `tuned`; other tensors are tuned's."""
    if not 0.0 <= start_weight <= 1.0:
        raise InvalidInput(f"start weight must be in [0, 1], got {start_weight}")
    out: dict[str, torch.Tensor] = {}
    for name, t in tuned.items():
        if not t.is_floating_point():
            out[name] = t
            continue
        s = start.get(name)
        if s is None or s.shape != t.shape:
            raise InvalidInput(f"cannot average {name}: the starting model has "
                               f"{'no such tensor' if s is None else tuple(s.shape)}, the trained one {tuple(t.shape)}")
        out[name] = torch.lerp(t.float(), s.float(), start_weight).to(t.dtype)
    return out
