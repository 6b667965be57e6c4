import math
from dataclasses import replace

import pytest
import torch

from common.errors import InvalidInput
from trainer.lm.model import PRESETS, ModelArgs, Transformer, apply_rope, rope_tables


def test_shapes_and_loss(tiny_args):
    torch.manual_seed(0)
    model = Transformer(tiny_args)
    x = torch.randint(0, tiny_args.vocab_size, (3, 17))
    logits, loss = model(x)
    assert logits.shape == (3, 17, tiny_args.vocab_size) and loss is None
    _, loss = model(x, x)
    assert loss.ndim == 0 and torch.isfinite(loss)


def test_future_tokens_never_change_earlier_logits(tiny_args):
    torch.manual_seed(0)
    model = Transformer(tiny_args).eval()
    x = torch.randint(0, tiny_args.vocab_size, (2, 24))
    y = x.clone()
    y[:, 12:] = torch.randint(0, tiny_args.vocab_size, (2, 12))
    a, _ = model(x)
    b, _ = model(y)
    assert torch.equal(a[:, :12], b[:, :12])
    assert not torch.allclose(a[:, 12:], b[:, 12:])


def test_initial_loss_is_about_ln_vocab():
    torch.manual_seed(0)
    args = replace(PRESETS["tiny"], vocab_size=2000)
    model = Transformer(args)
    x = torch.randint(0, 2000, (4, 64))
    t = torch.randint(0, 2000, (4, 64))
    _, loss = model(x, t)
    assert abs(loss.item() - math.log(2000)) < 0.1


def test_parameter_names_match_llama_contract(tiny_args):
    names = set(Transformer(tiny_args).state_dict())
    per_layer = ["attention_norm.weight", "attention.wq.weight", "attention.wk.weight", "attention.wv.weight",
                 "attention.wo.weight", "ffn_norm.weight", "feed_forward.w1.weight", "feed_forward.w2.weight",
                 "feed_forward.w3.weight"]
    want = {"tok_embeddings.weight", "norm.weight"} | {f"layers.{i}.{n}" for i in range(2) for n in per_layer}
    assert names == want  # tied: no output.weight, no biases
    untied = set(Transformer(replace(tiny_args, tie_embeddings=False)).state_dict())
    assert untied == want | {"output.weight"}
    sd = Transformer(tiny_args).state_dict()
    assert sd["layers.0.attention.wk.weight"].shape == (2 * 8, 32)  # GQA: Hkv * head_dim rows


def test_rope_matches_llama2c_complex_reference():
    # llama2.c/Meta: view adjacent pairs as complex numbers and multiply by e^{i t theta_j}
    hd, T = 8, 5
    x = torch.randn(1, T, 2, hd)
    cos, sin = rope_tables(hd, T, 10000.0)
    freqs = 1.0 / (10000.0 ** (torch.arange(0, hd, 2).float() / hd))
    cis = torch.polar(torch.ones(T, hd // 2), torch.outer(torch.arange(T).float(), freqs))
    ref = torch.view_as_real(torch.view_as_complex(x.reshape(1, T, 2, hd // 2, 2)) * cis.view(1, T, 1, hd // 2))
    assert torch.allclose(apply_rope(x, cos, sin), ref.reshape(1, T, 2, hd), atol=1e-5)


def test_loss_mask_restricts_the_loss(tiny_args):
    torch.manual_seed(0)
    model = Transformer(tiny_args)
    x = torch.randint(0, tiny_args.vocab_size, (1, 10))
    mask = torch.zeros(1, 10, dtype=torch.bool)
    mask[0, 5:] = True
    full, _ = model(x)
    none, masked = model(x, x, mask)
    assert none is None  # with targets only the loss comes back: the full logits are never held
    ce = torch.nn.functional.cross_entropy(full[0, 5:], x[0, 5:])
    assert torch.allclose(masked, ce, atol=1e-5)


def test_scored_head_loss_equals_full_logits_loss(tiny_args):
    """The head runs on scored positions only; loss and gradients must be those of the full logits."""
    torch.manual_seed(0)
    model = Transformer(tiny_args)
    x = torch.randint(0, tiny_args.vocab_size, (3, 16))
    y = torch.randint(0, tiny_args.vocab_size, (3, 16))
    y[2, 11:] = -1  # padding
    mask = torch.rand(3, 16) < 0.6
    _, loss = model(x, y, mask)
    loss.backward()
    fast = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    full, _ = model(x)  # (B, T, V)
    keep = (y >= 0) & mask
    ref = torch.nn.functional.cross_entropy(full[keep], y[keep])
    ref.backward()
    assert torch.allclose(loss, ref, atol=1e-6)
    for n, p in model.named_parameters():
        assert torch.allclose(fast[n], p.grad, atol=1e-6), n


def test_nothing_scored_gives_zero_loss_and_gradients(tiny_args):
    model = Transformer(tiny_args)
    x = torch.randint(0, tiny_args.vocab_size, (2, 6))
    _, loss = model(x, x, torch.zeros(2, 6, dtype=torch.bool))
    loss.backward()
    assert loss.item() == 0.0
    assert all(float(p.grad.abs().sum()) == 0.0 for p in model.parameters())


def test_grouped_query_attention_shares_kv_heads_in_llama_order(tiny_args):
    """enable_gqa must pair query head h with K/V head h // (H / Hkv), as repeat_interleave (llama.cpp) does."""
    torch.manual_seed(0)
    attn = Transformer(tiny_args).layers[0].attention
    assert attn.n_heads == 2 * attn.n_kv_heads
    x = torch.randn(2, 7, tiny_args.dim)
    cos, sin = rope_tables(attn.head_dim, 7, tiny_args.rope_theta)
    B, T, H, hd, rep = 2, 7, attn.n_heads, attn.head_dim, attn.n_heads // attn.n_kv_heads
    q = apply_rope(attn.wq(x).view(B, T, H, hd), cos, sin).transpose(1, 2)
    k = apply_rope(attn.wk(x).view(B, T, -1, hd), cos, sin).repeat_interleave(rep, dim=2).transpose(1, 2)
    v = attn.wv(x).view(B, T, -1, hd).repeat_interleave(rep, dim=2).transpose(1, 2)
    scores = (q @ k.transpose(-1, -2)) / math.sqrt(hd)  # (B, H, T, T)
    scores = scores.masked_fill(torch.ones(T, T, dtype=torch.bool).triu(1), float("-inf"))
    y = (scores.softmax(-1) @ v).transpose(1, 2).reshape(B, T, H * hd)
    assert torch.allclose(attn(x, cos, sin), attn.wo(y), atol=1e-5)


def test_flops_count_the_head_once_and_only_where_scored(tiny_args):
    tied = Transformer(tiny_args)
    untied = Transformer(replace(tiny_args, tie_embeddings=False))
    assert tied.flops_per_token(64) == untied.flops_per_token(64)  # output.weight is not counted twice
    head = 6.0 * tiny_args.vocab_size * tiny_args.dim
    assert tied.flops_per_token(64) - tied.flops_per_token(64, head_share=0.25) == pytest.approx(0.75 * head)


def test_presets_sizes_and_validation():
    sizes = {k: Transformer(v).num_params() for k, v in PRESETS.items()}
    assert 0.8e6 < sizes["tiny"] < 1.5e6 and 4e6 < sizes["small"] < 6e6 and 20e6 < sizes["base"] < 30e6
    with pytest.raises(InvalidInput):
        Transformer(ModelArgs(dim=30, n_heads=4))
    with pytest.raises(InvalidInput):
        Transformer(replace(PRESETS["tiny"], max_seq_len=8))(torch.zeros(1, 9, dtype=torch.long))
    with pytest.raises(InvalidInput):
        ModelArgs.from_dict({"dim": 64, "bogus": 1})
