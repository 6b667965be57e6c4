import pytest

from common.errors import InvalidInput
from quantize.types import QUANT_TYPES, incompatible_tensors, parse_types


def test_parse_all_and_lists_in_stable_order():
    assert [t.name for t in parse_types("all")] == list(QUANT_TYPES)
    assert [t.name for t in parse_types(" Q8_0 , f32,q8_0")] == ["f32", "q8_0"]
    assert [t.name for t in parse_types(["q4_k_m", "f16"])] == ["f16", "q4_k_m"]


@pytest.mark.parametrize("spec", ["", " , ", "q3_k", "f32,int8"])
def test_unknown_or_empty_types_are_refused(spec):
    with pytest.raises(InvalidInput):
        parse_types(spec)


def test_only_k_quants_go_through_llama_cpp():
    assert {t.name for t in QUANT_TYPES.values() if t.via_llama_cpp} == {"q4_k_m", "q5_k_m", "q6_k"}


def test_incompatible_tensors_checks_the_row_size():
    shapes = {"a": (64, 48), "b": (48, 64), "norm": (48,), "c": (300, 256)}
    assert incompatible_tensors(shapes, QUANT_TYPES["q8_0"]) == [("a", 48)]
    assert incompatible_tensors(shapes, QUANT_TYPES["q4_k_m"]) == [("a", 48), ("b", 64)]
    assert incompatible_tensors(shapes, QUANT_TYPES["f16"]) == []
