"""Induction-head initialisation: start training with a working copy circuit instead of waiting for one.

Answering from context needs induction heads (Olsson et al. 2022, "In-context Learning and Induction
Heads"): a previous-token head in one layer and, in the next, a head that attends to where the
current token occurred before and copies what followed it. Trained from random weights they form
only after a loss plateau that CPU budgets do not get past (bench/results/lm-copy-probe*.json, from a probe script now in git history). Here the
plain Llama weights are set so that layers 0 and 1 compute that circuit at step 0; training then
keeps, sharpens or reuses it. Nothing is added to the architecture: every tensor keeps its llama.cpp
name and shape, only the starting values differ (in the spirit of Trockman & Kolter 2023, "Mimetic
Initialization of Self-Attention Layers").

The construction, in one orthonormal basis of the D-dim residual stream:

- u0, one direction every token embedding shares with the same weight: after RMSNorm it is a
  constant, which gives layer 0 position-only queries and keys;
- W_k (one hd-dim block per previous-token head): where layer 0 writes the previous token;
- C, the rest: token content (embeddings are projected onto C + u0).

Layer 0, previous-token heads (the first query head of each K/V group in the first half): q = a
and k = R(1) a are constant before RoPE, so their score sum_p a_p^2 cos((j - i + 1) theta_p) peaks at
j = i - 1 (a is put on the high-frequency RoPE pairs). V reads an hd-dim projection P_k of the content
and O writes it into W_k.

Layer 1, induction heads (the first query head of every K/V group): the query reads a projection of
the current token's content, the key reads the previous token written in W_k through the same
projection, both on the low-frequency RoPE pairs (which hardly rotate over a context, so the score
is a content match). V reads the attended token's content and O writes it back onto C, where the
tied output embedding (an untied one starts equal to it) turns it into that token's logit.
"""

from __future__ import annotations

import math

import torch

from common.errors import InvalidInput
from trainer.lm.model import Transformer


def _orthonormal(d: int, g: torch.Generator) -> torch.Tensor:
    """A random orthonormal basis of R^d as the columns of a (d, d) matrix."""
    q, r = torch.linalg.qr(torch.randn(d, d, generator=g, dtype=torch.float64))
    return (q * torch.sign(torch.diagonal(r))).float()  # (d, d)


@torch.no_grad()
def induction_init(model: Transformer, seed: int = 0, sharpness: float = 24.0, match: float = 20.0,
                   copy: float = 8.0, logit_scale: float = 8.0) -> dict[str, int]:
    """Overwrite layers 0-1, the embedding and the final norm of a freshly initialised model with a copy circuit.

    `sharpness` scales the previous-token score gap, `match` the content-match score (both in logit
    units), `copy` the norm of what the induction heads write relative to the residual stream, and
    `logit_scale` the final RMSNorm weight (with embeddings of norm ~0.5 the logits could otherwise
    not express a confident copy). Defaults measured
    on random-token copying (bench/results/lm-copy-probe-multi-induction.json: loss at step 0 1.9 instead of ln V = 8.3 with
    rope_theta 1e6). Returns the heads used.
    """
    a = model.args
    D, H, Hkv, hd = a.dim, a.n_heads, a.n_kv_heads, a.head_dim
    rep = H // Hkv
    n_prev = max(1, Hkv // 2)  # K/V groups of layer 0 turned into previous-token heads
    if a.n_layers < 2 or hd < 8 or 1 + n_prev * hd >= D // 2:
        raise InvalidInput(f"induction init needs >= 2 layers, head_dim >= 8 and room in dim {D}")
    g = torch.Generator().manual_seed(seed)
    basis = _orthonormal(D, g)  # (D, D) columns
    u0 = basis[:, 0]  # (D,)
    writes = [basis[:, 1 + k * hd : 1 + (k + 1) * hd] for k in range(n_prev)]  # n_prev x (D, hd)
    content = basis[:, 1 + n_prev * hd :]  # (D, Dc)
    dc = content.shape[1]

    # Embedding: content part on C, plus the shared constant along u0 with the same norm.
    emb = model.tok_embeddings.weight  # (V, D)
    coords = emb.float() @ content  # (V, Dc)
    norm = coords.norm(dim=1).mean()
    emb.copy_(coords @ content.T + norm * u0)
    if model.output is not None:  # untied: the output starts as the embedding, so a copy is a logit
        model.output.weight.copy_(emb)
    kappa = math.sqrt(D / 2)  # x̂ . u0 after RMSNorm when content and constant have equal norms, and
    # so also the norm of x̂'s content part

    theta = 1.0 / a.rope_theta ** (torch.arange(0, hd, 2, dtype=torch.float64) / hd)  # (hd/2,)
    high = [p for p in range(hd // 2) if theta[p] >= 0.05][:4] or [0]  # pairs that tell j=i-1 apart
    low = [p for p in range(hd // 2) if theta[p] * a.max_seq_len <= 2.0][-max(2, hd // 2 - 4):]  # barely rotate
    if len(low) < 2:
        raise InvalidInput(f"induction init needs slow RoPE pairs: rope_theta {a.rope_theta:g} is too small for a "
                           f"{a.max_seq_len}-token context (use 1e6)")
    low_dims = [d for p in low for d in (2 * p, 2 * p + 1)]

    # Layer 0: previous-token heads.
    att0 = model.layers[0].attention
    alpha = math.sqrt(sharpness * math.sqrt(hd) / len(high))
    qa = torch.zeros(hd)
    kb = torch.zeros(hd)
    for p in high:
        qa[2 * p] = alpha
        kb[2 * p], kb[2 * p + 1] = alpha * math.cos(theta[p]), alpha * math.sin(theta[p])
    reads = []
    for k in range(n_prev):
        h = k * rep
        att0.wq.weight[h * hd : (h + 1) * hd] = torch.outer(qa, u0) / kappa
        att0.wk.weight[k * hd : (k + 1) * hd] = torch.outer(kb, u0) / kappa
        pk = content[:, torch.randperm(dc, generator=g)[:hd]].T  # (hd, D): hd content coordinates
        reads.append(pk)
        att0.wv.weight[k * hd : (k + 1) * hd] = pk
        # v has norm ~ kappa * sqrt(hd / dc); write it with the norm of an embedding's content part
        att0.wo.weight[:, h * hd : (h + 1) * hd] = writes[k] * (norm / (kappa * math.sqrt(hd / dc)))
        for extra in range(h + 1, h + rep):  # the group's other query heads copy nothing at the start
            att0.wo.weight[:, extra * hd : (extra + 1) * hd] = 0.0

    # Layer 1: induction heads, one per K/V group, each matching on its own coordinates. Directions
    # first; `_calibrate` then sets the scales from a forward pass.
    m = len(low_dims)
    heads = [k * rep for k in range(Hkv)]
    att1 = model.layers[1].attention
    for k in range(Hkv):
        h = k * rep
        src = k % n_prev
        sel = torch.randperm(hd, generator=g)[:m]
        wq = torch.zeros(hd, D)
        wk = torch.zeros(hd, D)
        wq[low_dims] = reads[src][sel]  # current token's content, coordinates `sel` of P_src
        wk[low_dims] = writes[src].T[sel]  # previous token as layer 0 wrote it, same coordinates
        att1.wq.weight[h * hd : (h + 1) * hd] = wq
        att1.wk.weight[k * hd : (k + 1) * hd] = wk
        pv = content[:, torch.randperm(dc, generator=g)[:hd]].T  # (hd, D)
        att1.wv.weight[k * hd : (k + 1) * hd] = pv
        att1.wo.weight[:, h * hd : (h + 1) * hd] = pv.T
        for extra in range(h + 1, h + rep):
            att1.wo.weight[:, extra * hd : (extra + 1) * hd] = 0.0
    _calibrate(model, heads, match, copy, g)
    model.norm.weight.fill_(logit_scale)
    return {"previous_token_heads": n_prev, "induction_heads": Hkv, "match_dims": m}


@torch.no_grad()
def _calibrate(model: Transformer, heads: list[int], match: float, copy: float, g: torch.Generator) -> None:
    """Scale layer 1's induction heads: a repeated token scores `match` (logit units) above the mean,
    and their output has `copy` times the norm of the residual stream it is added to."""
    a = model.args
    hd, rep = a.head_dim, a.n_heads // a.n_kv_heads
    T = min(128, a.max_seq_len)
    x = torch.randint(10, a.vocab_size, (8, T), generator=g)  # (B, T)
    h = model.tok_embeddings(x)  # (B, T, D)
    h = model.layers[0](h, model.rope_cos, model.rope_sin)  # (B, T, D)
    xn = model.layers[1].attention_norm(h)  # (B, T, D)
    att = model.layers[1].attention
    for h_ in heads:
        k_ = h_ // rep
        q = xn @ att.wq.weight[h_ * hd : (h_ + 1) * hd].T  # (B, T, hd)
        kk = xn @ att.wk.weight[k_ * hd : (k_ + 1) * hd].T  # (B, T, hd)
        s = q @ kk.transpose(1, 2) / math.sqrt(hd)  # (B, T, T), RoPE left out: the pairs barely rotate
        eye = torch.eye(T, dtype=torch.bool).expand_as(s)
        hit = s[~eye & _shifted_self(T).expand_as(s)].mean()  # token i vs itself written at i + 1
        base = s[~eye].mean()
        factor = match / max(float(hit - base), 1e-6)
        att.wq.weight[h_ * hd : (h_ + 1) * hd] *= factor
    # Output scale: run layer 1's attention and compare its induction output with the residual.
    out = att(xn, model.rope_cos, model.rope_sin)  # (B, T, D)
    ratio = float(h.norm(dim=-1).mean() / out.norm(dim=-1).mean().clamp_min(1e-9))
    for h_ in heads:
        att.wo.weight[:, h_ * hd : (h_ + 1) * hd] *= copy * ratio


def _shifted_self(T: int) -> torch.Tensor:
    """(1, T, T) mask of (i, j = i + 1): the key at j holds token j - 1 = i, the query at i holds token i."""
    m = torch.zeros(1, T, T, dtype=torch.bool)
    idx = torch.arange(T - 1)
    m[0, idx, idx + 1] = True
    return m
