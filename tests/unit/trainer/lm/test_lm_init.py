"""Induction-head initialisation: the plain Llama tensors start with a working copy circuit."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch

from common.errors import InvalidInput
from trainer.lm.init import induction_init
from trainer.lm.model import Transformer, preset_args


def _copy_rows(vocab: int, g: torch.Generator, rows: int = 8, n: int = 64, m: int = 12, k: int = 4):
    """`<s> r seg_1..seg_k`: slices of r at random offsets, so only content matching predicts them."""
    r = torch.randint(10, vocab, (rows, n), generator=g)
    starts = torch.randint(0, n - m, (rows, k), generator=g)
    segs = torch.gather(r, 1, (starts.unsqueeze(-1) + torch.arange(m)).view(rows, k * m))  # (B, k*m)
    x = torch.cat([torch.ones(rows, 1, dtype=torch.long), r, segs], 1)  # (B, 1 + n + k*m)
    mask = torch.zeros(rows, n + k * m, dtype=torch.bool)
    scored = torch.ones(k, m, dtype=torch.bool)
    scored[:, 0] = False
    mask[:, n:] = scored.view(-1)
    return x, mask


def _model(preset: str, vocab: int, tied: bool = True) -> Transformer:
    torch.manual_seed(0)
    return Transformer(replace(preset_args(preset, vocab, 256), rope_theta=1e6, tie_embeddings=tied))


@pytest.mark.parametrize("preset,tied", [("tiny", True), ("small", True), ("tiny", False)])
def test_induction_init_copies_at_step_zero(preset, tied):
    vocab = 2000
    x, mask = _copy_rows(vocab, torch.Generator().manual_seed(1))
    plain = _model(preset, vocab, tied)
    made = _model(preset, vocab, tied)
    induction_init(made)
    with torch.no_grad():
        _, before = plain(x[:, :-1], x[:, 1:], mask)
        _, after = made(x[:, :-1], x[:, 1:], mask)
    assert float(before) > 0.95 * math.log(vocab)  # a fresh model cannot copy
    assert float(after) < 0.5 * math.log(vocab)  # the initialised one already does


def test_induction_init_keeps_the_llama_tensors():
    plain, made = _model("tiny", 500), _model("tiny", 500)
    induction_init(made)
    a, b = plain.state_dict(), made.state_dict()
    assert a.keys() == b.keys() and all(a[k].shape == b[k].shape for k in a)
    assert all(torch.isfinite(v).all() for v in b.values())
    changed = {k for k in a if not torch.equal(a[k], b[k])}
    assert changed and all(k.startswith(("layers.0.attention", "layers.1.attention", "tok_embeddings", "norm"))
                           for k in changed)


def test_induction_init_is_seeded():
    a, b = _model("tiny", 500), _model("tiny", 500)
    induction_init(a, seed=3)
    induction_init(b, seed=3)
    assert all(torch.equal(v, b.state_dict()[k]) for k, v in a.state_dict().items())


def test_induction_init_refuses_a_model_without_room():
    model = Transformer(replace(preset_args("tiny", 500, 64), n_layers=1))
    with pytest.raises(InvalidInput, match="2 layers"):
        induction_init(model)


def test_induction_init_refuses_a_rope_base_without_slow_pairs():
    model = Transformer(replace(preset_args("tiny", 500, 512), rope_theta=10.0))
    with pytest.raises(InvalidInput, match="slow RoPE pairs"):
        induction_init(model)
