"""Compact Llama-architecture decoder, readable in one sitting (after Meta's llama and karpathy/llama2.c).

Contract (the GGUF exporter in quantize/ maps every tensor one-to-one onto llama.cpp's `llama` arch):

- `ModelArgs` holds everything needed to rebuild the network; checkpoints store it as a dict.
- Parameter names, exactly as Meta/llama2.c, no biases anywhere:
    tok_embeddings.weight                          (V, D)
    layers.{i}.attention_norm.weight               (D,)
    layers.{i}.attention.wq.weight                 (H*hd, D)
    layers.{i}.attention.wk.weight                 (Hkv*hd, D)
    layers.{i}.attention.wv.weight                 (Hkv*hd, D)
    layers.{i}.attention.wo.weight                 (D, H*hd)
    layers.{i}.ffn_norm.weight                     (D,)
    layers.{i}.feed_forward.w1.weight  gate        (F, D)
    layers.{i}.feed_forward.w2.weight  down        (D, F)
    layers.{i}.feed_forward.w3.weight  up          (F, D)
    norm.weight                                    (D,)
    output.weight                                  (V, D)  absent from the state_dict when tied
- RoPE in the Meta/llama2.c interleaved-pair convention: pairs (x0,x1), (x2,x3), ... are rotated,
  which is what llama.cpp's LLAMA_ROPE_TYPE_NORM computes, so Q/K need no permutation on export.
- RMSNorm as llama.cpp: x * rsqrt(mean(x^2) + eps) * w, computed in fp32.

References: Touvron et al. 2023, "Llama 2" (arXiv:2307.09288); Su et al. 2021, "RoFormer" (RoPE,
arXiv:2104.09864); Zhang & Sennrich 2019, "Root Mean Square Layer Normalization"
(arXiv:1910.07467); Shazeer 2020, "GLU Variants Improve Transformer" (SwiGLU, arXiv:2002.05202);
Ainslie et al. 2023, "GQA" (arXiv:2305.13245).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from common.errors import InvalidInput
from trainer.lm.head_loss import head_cross_entropy


@dataclass(frozen=True)
class ModelArgs:
    dim: int = 128  # D: residual stream width
    n_layers: int = 4
    n_heads: int = 4  # H
    n_kv_heads: int = 4  # Hkv (< H: grouped-query attention)
    vocab_size: int = 8000  # V
    hidden_dim: int = 256  # F: SwiGLU inner size
    norm_eps: float = 1e-5
    rope_theta: float = 10000.0
    max_seq_len: int = 512
    tie_embeddings: bool = True

    @property
    def head_dim(self) -> int:
        return self.dim // self.n_heads

    def validate(self) -> "ModelArgs":
        if self.dim % self.n_heads:
            raise InvalidInput(f"dim {self.dim} is not divisible by n_heads {self.n_heads}")
        if self.n_heads % self.n_kv_heads:
            raise InvalidInput(f"n_heads {self.n_heads} is not a multiple of n_kv_heads {self.n_kv_heads}")
        if self.head_dim % 2:
            raise InvalidInput(f"head_dim {self.head_dim} must be even for RoPE")
        if min(self.dim, self.n_layers, self.vocab_size, self.hidden_dim, self.max_seq_len) < 1:
            raise InvalidInput("model sizes must be positive")
        return self

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ModelArgs":
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise InvalidInput(f"unknown model args: {sorted(unknown)}")
        return cls(**d).validate()


# Parameter counts below are with the default 8,000-token vocabulary and tied embeddings.
PRESETS: dict[str, ModelArgs] = {
    # ~1.2M: 0.77M embedding + 4 x 0.10M blocks; for tests and the demo
    "tiny": ModelArgs(dim=96, n_layers=4, n_heads=4, n_kv_heads=2, hidden_dim=256, max_seq_len=512),
    # ~5.0M: 2.05M embedding + 4 x 0.74M blocks
    "small": ModelArgs(dim=256, n_layers=4, n_heads=8, n_kv_heads=4, hidden_dim=704, max_seq_len=512),
    # ~26M: 4.1M embedding + 8 x 2.75M blocks
    "base": ModelArgs(dim=512, n_layers=8, n_heads=8, n_kv_heads=4, hidden_dim=1280, max_seq_len=512),
}


def preset_args(name: str, vocab_size: int, max_seq_len: int | None = None) -> ModelArgs:
    """A preset with the tokenizer's vocabulary size (and optionally another context length)."""
    if name not in PRESETS:
        raise InvalidInput(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
    args = replace(PRESETS[name], vocab_size=vocab_size)
    if max_seq_len is not None:
        args = replace(args, max_seq_len=max_seq_len)
    return args.validate()


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))  # (D,)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xf = x.float()  # (..., D) normalise in fp32 even under autocast
        out = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)  # (..., D)
        return (out * self.weight.float()).type_as(x)  # (..., D)


def rope_tables(head_dim: int, seq_len: int, theta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """cos/sin of angle t * theta^(-2i/hd) for each position t and pair i: two (T, hd/2) tables."""
    inv_freq = 1.0 / theta ** (torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim)  # (hd/2,)
    t = torch.arange(seq_len, dtype=torch.float64)  # (T,)
    angles = torch.outer(t, inv_freq)  # (T, hd/2)
    return angles.cos().float(), angles.sin().float()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate adjacent pairs (x[2i], x[2i+1]) by the position's angle (interleaved convention).

    Each pair is the complex number x[2i] + i x[2i+1] times e^(i t theta_i), as in llama2.c: one
    complex multiply was about 4x faster, forward and backward, than rotating the halves apart (one-off timing).
    """
    B, T, H, hd = x.shape
    xc = torch.view_as_complex(x.float().reshape(B, T, H, hd // 2, 2))  # (B, T, H, hd/2) complex
    rot = torch.complex(cos[:T], sin[:T]).view(1, T, 1, hd // 2)  # (1, T, 1, hd/2) e^(i t theta)
    return torch.view_as_real(xc * rot).reshape(B, T, H, hd).type_as(x)  # (B, T, H, hd)


class Attention(nn.Module):
    """Causal multi-head self-attention with grouped K/V heads and RoPE on Q and K."""

    def __init__(self, args: ModelArgs) -> None:
        super().__init__()
        self.n_heads, self.n_kv_heads, self.head_dim = args.n_heads, args.n_kv_heads, args.head_dim
        self.wq = nn.Linear(args.dim, args.n_heads * self.head_dim, bias=False)
        self.wk = nn.Linear(args.dim, args.n_kv_heads * self.head_dim, bias=False)
        self.wv = nn.Linear(args.dim, args.n_kv_heads * self.head_dim, bias=False)
        self.wo = nn.Linear(args.n_heads * self.head_dim, args.dim, bias=False)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        B, T, _ = x.shape  # x: (B, T, D)
        q = self.wq(x).view(B, T, self.n_heads, self.head_dim)  # (B, T, H, hd)
        k = self.wk(x).view(B, T, self.n_kv_heads, self.head_dim)  # (B, T, Hkv, hd)
        v = self.wv(x).view(B, T, self.n_kv_heads, self.head_dim)  # (B, T, Hkv, hd)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)  # (B, T, H|Hkv, hd)
        q, k, v = (t.transpose(1, 2) for t in (q, k, v))  # (B, H|Hkv, T, hd)
        # GQA: each K/V head serves H/Hkv consecutive query heads (llama.cpp's order, which is
        # repeat_interleave's); enable_gqa does that inside the kernel instead of copying K and V.
        y = F.scaled_dot_product_attention(
            q, k, v, is_causal=True, enable_gqa=self.n_heads != self.n_kv_heads
        )  # (B, H, T, hd) softmax(qk^T/sqrt(hd))v
        y = y.transpose(1, 2).reshape(B, T, self.n_heads * self.head_dim)  # (B, T, H*hd)
        return self.wo(y)  # (B, T, D)


class FeedForward(nn.Module):
    """SwiGLU: w2(silu(w1 x) * w3 x)."""

    def __init__(self, dim: int, hidden_dim: int) -> None:
        super().__init__()
        self.w1 = nn.Linear(dim, hidden_dim, bias=False)  # gate
        self.w2 = nn.Linear(hidden_dim, dim, bias=False)  # down
        self.w3 = nn.Linear(dim, hidden_dim, bias=False)  # up

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w2(F.silu(self.w1(x)) * self.w3(x))  # (B, T, F) -> (B, T, D)


class TransformerBlock(nn.Module):
    def __init__(self, args: ModelArgs) -> None:
        super().__init__()
        self.attention_norm = RMSNorm(args.dim, args.norm_eps)
        self.attention = Attention(args)
        self.ffn_norm = RMSNorm(args.dim, args.norm_eps)
        self.feed_forward = FeedForward(args.dim, args.hidden_dim)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        h = x + self.attention(self.attention_norm(x), cos, sin)  # (B, T, D) pre-norm residual
        return h + self.feed_forward(self.ffn_norm(h))  # (B, T, D)


class Transformer(nn.Module):
    def __init__(self, args: ModelArgs) -> None:
        super().__init__()
        self.args = args.validate()
        self.tok_embeddings = nn.Embedding(args.vocab_size, args.dim)
        self.layers = nn.ModuleList(TransformerBlock(args) for _ in range(args.n_layers))
        self.norm = RMSNorm(args.dim, args.norm_eps)
        # Tied: logits use tok_embeddings.weight and no `output` module exists (llama.cpp falls back
        # to token_embd when output.weight is absent).
        self.output = None if args.tie_embeddings else nn.Linear(args.dim, args.vocab_size, bias=False)
        cos, sin = rope_tables(args.head_dim, args.max_seq_len, args.rope_theta)
        self.register_buffer("rope_cos", cos, persistent=False)  # (Tmax, hd/2)
        self.register_buffer("rope_sin", sin, persistent=False)  # (Tmax, hd/2)
        self.apply(self._init_weights)
        # GPT-2/llama2.c: scale the residual-writing projections by 1/sqrt(2 * n_layers)
        for name, p in self.named_parameters():
            if name.endswith(("wo.weight", "w2.weight")):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * args.n_layers))

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def forward(
        self,
        tokens: torch.Tensor,
        targets: torch.Tensor | None = None,
        loss_mask: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Logits for every position; with `targets`, only the mean loss of the scored positions.

        tokens, targets: (B, T) int64; loss_mask: (B, T) bool, True where the loss counts (targets < 0
        are ignored as well). Returns (logits (B, T, V), None) without targets, (None, loss scalar) with
        them. Only scored positions go through the output head: with a retrieved context most positions
        are prefix tokens that are never scored, and the (N, V) head and its softmax are the largest cost
        of a small model (computed a block of rows at a time, trainer/lm/head_loss.py).
        """
        B, T = tokens.shape
        if T > self.args.max_seq_len:
            raise InvalidInput(f"sequence of {T} tokens exceeds max_seq_len {self.args.max_seq_len}")
        h = self.tok_embeddings(tokens)  # (B, T, D)
        for layer in self.layers:
            h = layer(h, self.rope_cos, self.rope_sin)  # (B, T, D)
        h = self.norm(h)  # (B, T, D)
        weight = self.tok_embeddings.weight if self.output is None else self.output.weight  # (V, D)
        if targets is None:
            return F.linear(h, weight), None  # (B, T, V)
        keep = targets >= 0  # (B, T)
        if loss_mask is not None:
            keep = keep & loss_mask.bool()  # (B, T)
        scored = h[keep]  # (N, D)
        ce = head_cross_entropy(scored, weight, targets[keep])  # scalar; 0 (and grad-connected) when N = 0
        return None, ce / max(int(scored.shape[0]), 1)

    def flops_per_token(self, seq_len: int, head_share: float = 1.0) -> float:
        """Training FLOPs per input token (forward + backward = 3x forward), PaLM appendix B accounting.

        `head_share` is the fraction of positions that reach the output head: `forward` computes logits
        for scored positions only, so a row with a retrieved prefix spends less than its length suggests.
        """
        a = self.args
        n_trunk = sum(p.numel() for n, p in self.named_parameters() if p.dim() == 2 and n.startswith("layers."))
        n_head = a.vocab_size * a.dim  # output projection (tied or not)
        attn = 2 * a.n_layers * seq_len * a.dim  # QK^T and AV per token, counted in full as PaLM does
        return 6.0 * (n_trunk + head_share * n_head) + 6.0 * attn
