"""The output head and its cross-entropy, a block of rows at a time.

Why: the (N, V) logits of a training step, their fp32 copy, log-softmax and gradient are each 33-65 MB
for 2,048 scored positions and an 8,000-token vocabulary. glibc serves blocks that size with a fresh
mmap, so every step page-faults a few hundred MB in and unmaps it again. Computing the loss and both
gradients block by block, in the forward pass, keeps every temporary to a few MB that the allocator reuses,
and never holds the full logits. The arithmetic is the same: d(sum CE)/d logits = softmax - onehot, then
the two matmuls of the linear layer's backward, under the same autocast as the rest of the model.
(The idea of Liger Kernel's fused linear cross-entropy and of Wijmans et al. 2024, "Cut Your Losses in
Large-Vocabulary Language Models", arXiv:2411.09009.)
"""

from __future__ import annotations

import torch

BLOCK_BYTES = 8 << 20  # fp32 logits per block: well under glibc's largest dynamic mmap threshold (32 MB)


def block_rows(vocab_size: int) -> int:
    return max(16, BLOCK_BYTES // (4 * vocab_size))


class _HeadCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, h: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor,  # type: ignore[override]
                rows: int, grads: bool) -> torch.Tensor:
        # h (N, D), weight (V, D), targets (N,) int64 -> sum over rows of -log softmax(h @ W^T)[target]
        n = h.shape[0]
        grad_h = torch.empty_like(h) if grads else None  # (N, D)
        grad_w = torch.zeros(weight.shape, dtype=torch.float32) if grads else None  # (V, D)
        total = torch.zeros((), dtype=torch.float32)
        for s in range(0, n, rows):
            hb, yb = h[s:s + rows], targets[s:s + rows]  # (b, D), (b,)
            logits = (hb @ weight.t()).float()  # (b, V), bf16 matmul under autocast as F.linear would be
            lse = torch.logsumexp(logits, dim=-1)  # (b,)
            picked = logits.gather(1, yb[:, None]).squeeze(1)  # (b,)
            total += (lse - picked).sum()
            if grads:
                probs = logits.sub_(lse[:, None]).exp_()  # (b, V) softmax, in place of the logits
                probs[torch.arange(len(yb)), yb] -= 1.0  # d(sum CE)/d logits
                grad_h[s:s + rows] = probs @ weight  # (b, D), bf16 under autocast like F.linear's backward
                grad_w += probs.t() @ hb  # (V, D), accumulated in fp32
        ctx.save_for_backward(grad_h, grad_w)
        ctx.weight_dtype = weight.dtype
        return total

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):  # type: ignore[override]
        grad_h, grad_w = ctx.saved_tensors
        gh = grad_h * grad_out.to(grad_h.dtype) if ctx.needs_input_grad[0] else None
        gw = (grad_w * grad_out).to(ctx.weight_dtype) if ctx.needs_input_grad[1] else None
        return gh, gw, None, None, None


def head_cross_entropy(h: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Sum over the N rows of h (N, D) of the cross-entropy of logits h @ weight^T (V, D) against targets (N,)."""
    grads = torch.is_grad_enabled() and (h.requires_grad or weight.requires_grad)
    return _HeadCrossEntropy.apply(h, weight, targets, block_rows(weight.shape[0]), grads)
