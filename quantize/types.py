"""The GGUF file types ragkiln writes, and how each one is made.

F32, F16, Q8_0 and Q4_0 are written directly with the `gguf` package (1-D tensors such as the
RMSNorm weights always stay F32, as llama.cpp's own converter does). K-quants are produced from the
F32 file by llama.cpp's quantizer (`llama_model_quantize`), which chooses the per-tensor mix
(e.g. Q4_K_M keeps some attn_v/ffn_down/output tensors in Q6_K) and falls back to a legacy type
for a tensor whose row size is not a multiple of 256; the exporter records those fallbacks.
"""

from __future__ import annotations

from dataclasses import dataclass

from gguf import GGMLQuantizationType, LlamaFileType

from common.errors import InvalidInput


@dataclass(frozen=True)
class QuantType:
    name: str  # the CLI / file name spelling, e.g. "q4_k_m"
    file_type: LlamaFileType  # general.file_type and the llama_model_quantize ftype
    ggml_type: GGMLQuantizationType  # type of 2-D weights (for K-quants: the nominal base type)
    block_size: int  # a 2-D tensor's row size must be a multiple of this
    via_llama_cpp: bool  # True: made by llama.cpp's quantizer from the F32 file

    @property
    def filename(self) -> str:
        return f"model-{self.name}.gguf"


_G = GGMLQuantizationType
_F = LlamaFileType

QUANT_TYPES: dict[str, QuantType] = {
    t.name: t
    for t in (
        QuantType("f32", _F.ALL_F32, _G.F32, 1, False),
        QuantType("f16", _F.MOSTLY_F16, _G.F16, 1, False),
        QuantType("q8_0", _F.MOSTLY_Q8_0, _G.Q8_0, 32, False),
        QuantType("q4_0", _F.MOSTLY_Q4_0, _G.Q4_0, 32, False),
        QuantType("q4_k_m", _F.MOSTLY_Q4_K_M, _G.Q4_K, 256, True),
        QuantType("q5_k_m", _F.MOSTLY_Q5_K_M, _G.Q5_K, 256, True),
        QuantType("q6_k", _F.MOSTLY_Q6_K, _G.Q6_K, 256, True),
    )
}

# K-quant tensor types: anything else found in a K-quant file's 2-D weights is a fallback.
K_QUANT_GGML_TYPES = frozenset({_G.Q2_K, _G.Q3_K, _G.Q4_K, _G.Q5_K, _G.Q6_K})


def parse_types(spec: str | list[str] | tuple[str, ...]) -> list[QuantType]:
    """'f32,q8_0' or 'all' -> the types in a stable order; unknown names are an InvalidInput."""
    items = spec.split(",") if isinstance(spec, str) else list(spec)
    names = [s.strip().lower() for s in items if s.strip()]
    if not names:
        raise InvalidInput("no GGUF types given; choose from " + ",".join(QUANT_TYPES) + " or 'all'")
    if "all" in names:
        return list(QUANT_TYPES.values())
    unknown = [n for n in names if n not in QUANT_TYPES]
    if unknown:
        raise InvalidInput(f"unknown GGUF type(s) {unknown}; choose from " + ",".join(QUANT_TYPES) + " or 'all'")
    wanted = set(names)
    return [t for name, t in QUANT_TYPES.items() if name in wanted]


def incompatible_tensors(shapes: dict[str, tuple[int, ...]], qtype: QuantType) -> list[tuple[str, int]]:
    """(tensor, row size) for every 2-D tensor whose rows `qtype` cannot split into whole blocks.

    Shapes are torch/numpy order (out, in): the row that llama.cpp quantizes is the last dimension.
    """
    if qtype.block_size == 1:
        return []
    return [(n, s[-1]) for n, s in sorted(shapes.items()) if len(s) >= 2 and s[-1] % qtype.block_size]
