import pytest
from gguf import MODEL_ARCH, MODEL_TENSORS, TENSOR_NAMES

from common.errors import InvalidInput
from quantize.gguf_names import expected_state_dict_names, gguf_tensor_name, tensor_name_table


def _llama_names(n_layers: int, tied: bool) -> set[str]:
    """Every tensor name llama.cpp's llama arch defines that our model uses (from gguf-py's tables)."""
    out = set()
    for t in MODEL_TENSORS[MODEL_ARCH.LLAMA]:
        name = TENSOR_NAMES[t]
        if name == "output" and tied:
            continue
        if "{bid}" in name:
            out.update(name.format(bid=i) + ".weight" for i in range(n_layers))
        else:
            out.add(name + ".weight")
    return out


@pytest.mark.parametrize("n_layers,tied", [(1, True), (3, False), (12, True)])
def test_table_covers_every_tensor_exactly_once(n_layers, tied):
    names = expected_state_dict_names(n_layers, tied)
    table = tensor_name_table(reversed(names), n_layers, tied)
    assert sorted(table) == sorted(names)  # every state-dict tensor once
    assert len(set(table.values())) == len(names)  # onto distinct GGUF names
    assert set(table.values()) <= _llama_names(n_layers, tied)
    assert len(names) == 9 * n_layers + 2 + (0 if tied else 1)


def test_known_names():
    assert gguf_tensor_name("tok_embeddings.weight") == "token_embd.weight"
    assert gguf_tensor_name("layers.7.attention.wq.weight") == "blk.7.attn_q.weight"
    assert gguf_tensor_name("layers.0.feed_forward.w1.weight") == "blk.0.ffn_gate.weight"
    assert gguf_tensor_name("layers.0.feed_forward.w2.weight") == "blk.0.ffn_down.weight"
    assert gguf_tensor_name("layers.0.feed_forward.w3.weight") == "blk.0.ffn_up.weight"
    assert gguf_tensor_name("norm.weight") == "output_norm.weight"
    assert gguf_tensor_name("output.weight") == "output.weight"


def test_unknown_tensor_is_an_error_naming_it():
    with pytest.raises(InvalidInput, match="layers.0.attention.bq.weight"):
        gguf_tensor_name("layers.0.attention.bq.weight")


def test_missing_extra_and_duplicate_tensors_are_refused():
    names = expected_state_dict_names(2, True)
    with pytest.raises(InvalidInput, match="missing"):
        tensor_name_table(names[:-1], 2, True)
    with pytest.raises(InvalidInput, match="tie_embeddings"):
        tensor_name_table([*names, "output.weight"], 2, True)
    with pytest.raises(InvalidInput, match="cannot hold"):
        tensor_name_table([*names, "layers.2.ffn_norm.weight"], 2, True)
    with pytest.raises(InvalidInput, match="more than once"):
        tensor_name_table([*names, names[0]], 2, True)
