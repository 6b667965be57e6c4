"""The blocked head loss is the full-logits cross-entropy: same value, same gradients, in fp32 and under
bf16 autocast, for any number of rows (none, fewer than a block, several blocks)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from trainer.lm import head_loss
from trainer.lm.head_loss import block_rows, head_cross_entropy


def _reference(h: torch.Tensor, w: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(F.linear(h, w).float(), y, reduction="sum")


def _grads(fn, h: torch.Tensor, w: torch.Tensor, y: torch.Tensor, bf16: bool):
    h, w = h.detach().clone().requires_grad_(), w.detach().clone().requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        loss = fn(h, w, y) / max(len(y), 1) * 3.0  # a scale after the loss, as the trainer applies
    loss.backward()
    return loss.detach(), h.grad, w.grad


@pytest.mark.parametrize("rows", [0, 5, 300])
@pytest.mark.parametrize("bf16", [False, True])
def test_same_loss_and_gradients_as_full_logits(monkeypatch: pytest.MonkeyPatch, rows: int, bf16: bool) -> None:
    monkeypatch.setattr(head_loss, "BLOCK_BYTES", 64 * 4 * 512)  # 64-row blocks for a 512-token vocabulary
    assert block_rows(512) == 64
    g = torch.Generator().manual_seed(rows)
    h, w = torch.randn(rows, 32, generator=g), torch.randn(512, 32, generator=g) * 0.2
    y = torch.randint(0, 512, (rows,), generator=g)
    ref, ref_h, ref_w = _grads(_reference, h, w, y, bf16)
    got, got_h, got_w = _grads(head_cross_entropy, h, w, y, bf16)
    tol = 2e-2 if bf16 else 1e-5  # bf16 rounds (softmax - onehot) once, before or after the scale
    assert torch.allclose(got, ref, rtol=1e-5, atol=1e-5)
    assert got_h.dtype == ref_h.dtype and got_w.dtype == ref_w.dtype
    for a, b in ((got_h, ref_h), (got_w, ref_w)):
        assert a.shape == b.shape
        assert torch.allclose(a, b, rtol=tol, atol=tol * (float(b.abs().max()) if b.numel() else 1.0))


def test_no_gradient_work_without_grad() -> None:
    h, w, y = torch.randn(10, 8), torch.randn(40, 8, requires_grad=True), torch.randint(0, 40, (10,))
    with torch.no_grad():
        loss = head_cross_entropy(h, w, y)
    assert not loss.requires_grad
    assert torch.allclose(loss, _reference(h, w, y), rtol=1e-5)
