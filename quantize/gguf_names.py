"""State-dict name -> GGUF tensor name for llama.cpp's `llama` architecture (pure).

Our model uses Meta/llama2.c parameter names (see trainer/lm/model.py); llama.cpp names come from
gguf-py's own TENSOR_NAMES table so a rename upstream shows up here, not as a file llama.cpp rejects.
RoPE is in the interleaved-pair convention on both sides, so no Q/K permutation is applied.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from gguf import MODEL_TENSOR, TENSOR_NAMES

from common.errors import InvalidInput

# Top-level tensors: ours -> gguf
_GLOBAL: dict[str, MODEL_TENSOR] = {
    "tok_embeddings.weight": MODEL_TENSOR.TOKEN_EMBD,
    "norm.weight": MODEL_TENSOR.OUTPUT_NORM,
    "output.weight": MODEL_TENSOR.OUTPUT,
}

# Per-block tensors: suffix after "layers.{i}." -> gguf
_BLOCK: dict[str, MODEL_TENSOR] = {
    "attention_norm.weight": MODEL_TENSOR.ATTN_NORM,
    "attention.wq.weight": MODEL_TENSOR.ATTN_Q,
    "attention.wk.weight": MODEL_TENSOR.ATTN_K,
    "attention.wv.weight": MODEL_TENSOR.ATTN_V,
    "attention.wo.weight": MODEL_TENSOR.ATTN_OUT,
    "ffn_norm.weight": MODEL_TENSOR.FFN_NORM,
    "feed_forward.w1.weight": MODEL_TENSOR.FFN_GATE,
    "feed_forward.w2.weight": MODEL_TENSOR.FFN_DOWN,
    "feed_forward.w3.weight": MODEL_TENSOR.FFN_UP,
}

_LAYER = re.compile(r"^layers\.(\d+)\.(.+)$")


def gguf_tensor_name(name: str) -> str:
    """GGUF name of one state-dict tensor, e.g. layers.3.attention.wq.weight -> blk.3.attn_q.weight."""
    if name in _GLOBAL:
        return TENSOR_NAMES[_GLOBAL[name]] + ".weight"
    m = _LAYER.match(name)
    if m and m.group(2) in _BLOCK:
        return TENSOR_NAMES[_BLOCK[m.group(2)]].format(bid=int(m.group(1))) + ".weight"
    raise InvalidInput(f"tensor {name!r} has no GGUF name in the llama architecture (unexpected parameter)")


def expected_state_dict_names(n_layers: int, tie_embeddings: bool) -> list[str]:
    """Every tensor a model with these args must have, in GGUF writing order."""
    names = ["tok_embeddings.weight"]
    for i in range(n_layers):
        names += [f"layers.{i}.{suffix}" for suffix in _BLOCK]
    names.append("norm.weight")
    if not tie_embeddings:
        names.append("output.weight")
    return names


def tensor_name_table(names: Iterable[str], n_layers: int, tie_embeddings: bool) -> dict[str, str]:
    """Map every state-dict tensor to its GGUF name, exactly once each, in writing order.

    Fails on an unknown tensor, a missing one, a layer index out of range or two tensors landing on
    the same GGUF name, so a model change can never produce a file with a silently missing weight.
    """
    given = list(names)
    dupes = sorted({n for n in given if given.count(n) > 1})
    if dupes:
        raise InvalidInput(f"state dict lists tensors more than once: {dupes}")
    expected = expected_state_dict_names(n_layers, tie_embeddings)
    extra = sorted(set(given) - set(expected))
    missing = [n for n in expected if n not in set(given)]
    if extra:
        if not tie_embeddings or "output.weight" not in extra:
            raise InvalidInput(f"state dict has tensors the llama GGUF layout cannot hold: {extra[:5]}")
        raise InvalidInput("state dict has output.weight but the model args say tie_embeddings=True")
    if missing:
        raise InvalidInput(f"state dict is missing tensors: {missing[:5]}")
    table = {n: gguf_tensor_name(n) for n in expected}
    if len(set(table.values())) != len(table):  # cannot happen with the fixed tables; guards edits
        raise InvalidInput("two state-dict tensors map to the same GGUF name")
    return table
