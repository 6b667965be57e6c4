"""Export a trained ragkiln LM to GGUF files, one per requested type, as one artifact directory.

F32/F16/Q8_0/Q4_0 are written here with gguf-py's GGUFWriter (and gguf-py's reference quantizers);
K-quants are made from the F32 file by llama.cpp's own quantizer through llama-cpp-python, which
picks the per-tensor mix and falls back to a legacy type where a row is not a multiple of 256;
every such fallback is read back from the file and recorded in the manifest and the report.
A direct type that a tensor cannot take (row not a multiple of 32) is refused before anything is
written, naming the tensors. The output directory is replaced atomically; files of other types
exported earlier from the same checkpoint are kept.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from gguf import GGMLQuantizationType, GGUFReader, GGUFWriter
from gguf.quants import quantize as gguf_quantize

from common.artifacts import atomic_artifact_dir, make_manifest, read_manifest
from common.errors import ArtifactCorrupt, InvalidInput, ManifestMismatch, ModelUnavailable, NotFound
from common.hashing import sha256_file
from quantize.gguf_names import tensor_name_table
from quantize.llama_log import route_llama_logs
from quantize.metadata import ARCH, build_metadata
from quantize.spm_vocab import SpmVocab, read_spm_vocab
from quantize.types import K_QUANT_GGML_TYPES, QUANT_TYPES, QuantType, incompatible_tensors

log = logging.getLogger(__name__)

GGUF_KIND = "gguf"
GGUF_FORMAT_VERSION = 1


@dataclass(frozen=True)
class LmSource:
    """What the exporter needs from a checkpoint (built by `load_source` through trainer.lm)."""

    name: str
    args: Any  # trainer.lm.model.ModelArgs
    state_dict: dict[str, np.ndarray]  # float32, torch (out, in) order
    tokenizer_path: Path
    manifest: dict[str, Any]
    source_sha256: str  # identity of the weights: exported files are tied to it
    prompt_format: str | None = None
    add_bos: bool = True
    chat_template: str | None = None  # Jinja; None: derived from prompt_format (quantize.metadata)
    special_tokens: tuple[str, ...] = ()  # CONTROL tokens naming embedding rows past the tokenizer's pieces
    eot_token: str | None = None  # the one of them that ends a turn


@dataclass(frozen=True)
class GgufFile:
    type: str
    file: str
    size_bytes: int
    tensor_types: dict[str, int]  # ggml type name -> tensor count
    fallbacks: list[str] = field(default_factory=list)  # "tensor: TYPE" where a K-quant fell back


@dataclass(frozen=True)
class ExportReport:
    out_dir: str
    source_sha256: str
    files: list[GgufFile]
    tokenizer_notes: list[str]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def path_of(self, type_name: str) -> Path:
        for f in self.files:
            if f.type == type_name:
                return Path(self.out_dir) / f.file
        raise NotFound(f"no {type_name} GGUF in {self.out_dir}")


def load_source(model_dir: Path) -> LmSource:
    """Load a trained checkpoint through trainer.lm's one loader and flatten it for export."""
    from trainer.lm.checkpoint import load_model  # the LM package's single loader

    model, _tokenizer, manifest = load_model(Path(model_dir))
    return source_from_model(Path(model_dir), model, manifest)


def source_from_model(model_dir: Path, model: Any, manifest: dict[str, Any]) -> LmSource:
    """An LmSource from a model already loaded with trainer.lm.checkpoint.load_model."""
    state = {k: v.detach().float().cpu().numpy() for k, v in model.state_dict().items()}
    weights = model_dir / "model.pt"
    digest = (manifest.get("files") or {}).get("model.pt") or (sha256_file(weights) if weights.exists() else "")
    return LmSource(
        name=manifest.get("name") or model_dir.name,
        args=model.args,
        state_dict=state,
        tokenizer_path=model_dir / "tokenizer.model",
        manifest=manifest,
        source_sha256=digest,
        prompt_format=manifest.get("prompt_format"),
        add_bos=True,
    )


def _refuse_incompatible(src: LmSource, table: dict[str, str], qtype: QuantType) -> None:
    """A direct type whose blocks do not tile a tensor's rows is an error naming the tensors."""
    bad = incompatible_tensors({k: v.shape for k, v in src.state_dict.items()}, qtype)
    if bad:
        listed = ", ".join(f"{table[n]} (row {r})" for n, r in bad[:4])
        raise InvalidInput(
            f"{qtype.name} needs rows that are a multiple of {qtype.block_size}; {len(bad)} tensor(s) are not: "
            f"{listed}{', ...' if len(bad) > 4 else ''} (choose f32/f16, a K-quant, or model sizes divisible by "
            f"{qtype.block_size})"
        )


def write_gguf(path: Path, src: LmSource, vocab: SpmVocab, qtype: QuantType) -> dict[str, GGMLQuantizationType]:
    """Write one directly-encoded GGUF file (F32, F16, Q8_0 or Q4_0); returns each tensor's type."""
    if qtype.via_llama_cpp:
        raise InvalidInput(f"{qtype.name} is made by llama.cpp's quantizer, not written directly")
    table = tensor_name_table(src.state_dict.keys(), src.args.n_layers, src.args.tie_embeddings)
    _refuse_incompatible(src, table, qtype)
    writer = GGUFWriter(str(path), ARCH)
    for kv in build_metadata(name=src.name, args=src.args, vocab=vocab, qtype=qtype, add_bos=src.add_bos,
                             prompt_format=src.prompt_format, manifest=src.manifest, chat_template=src.chat_template,
                             special_tokens=src.special_tokens, eot_token=src.eot_token):
        writer.add_key_value(kv.key, kv.value, kv.vtype, sub_type=kv.sub_type)
    types: dict[str, GGMLQuantizationType] = {}
    for sd_name, gguf_name in table.items():
        data = np.ascontiguousarray(src.state_dict[sd_name], dtype=np.float32)
        ttype = qtype.ggml_type if data.ndim >= 2 else GGMLQuantizationType.F32  # norms stay F32
        if ttype in (GGMLQuantizationType.F32, GGMLQuantizationType.F16):
            writer.add_tensor(gguf_name, gguf_quantize(data, ttype))
        else:
            writer.add_tensor(gguf_name, gguf_quantize(data, ttype), raw_dtype=ttype)
        types[gguf_name] = ttype
    try:
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
    finally:
        writer.close()
    return types


def llama_cpp_quantize(src_path: Path, dst_path: Path, qtype: QuantType, threads: int) -> None:
    """K-quantize a F32/F16 GGUF with llama.cpp's quantizer (what `llama-quantize` runs)."""
    try:
        import llama_cpp
    except ImportError as e:  # pragma: no cover - the package is a declared dependency
        raise ModelUnavailable("llama-cpp-python is not installed; K-quants need its quantizer") from e
    # llama.cpp logs every tensor at INFO; fallbacks are read back from the file instead (describe_file),
    # so only its errors reach stderr
    route_llama_logs()
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = int(qtype.file_type)
    params.nthread = threads
    rc = llama_cpp.llama_model_quantize(str(src_path).encode(), str(dst_path).encode(), params)
    if rc != 0 or not dst_path.exists():
        raise ArtifactCorrupt(f"llama.cpp failed to quantize {src_path.name} to {qtype.name} (code {rc})")


def describe_file(path: Path, qtype: QuantType) -> GgufFile:
    """Read a GGUF back and summarise its tensor types; K-quant fallbacks are listed by tensor."""
    reader = GGUFReader(path)
    counts: Counter[str] = Counter()
    fallbacks: list[str] = []
    for t in reader.tensors:
        ttype = GGMLQuantizationType(t.tensor_type)
        counts[ttype.name] += 1
        if qtype.via_llama_cpp and len(t.shape) >= 2 and ttype not in K_QUANT_GGML_TYPES:
            fallbacks.append(f"{t.name}: {ttype.name}")
    return GgufFile(qtype.name, path.name, path.stat().st_size, dict(counts), fallbacks)


def _reusable(out_dir: Path, src: LmSource) -> dict[str, dict[str, Any]]:
    """Files of an earlier export of the same weights (by type), safe to carry into the new directory."""
    try:
        old = read_manifest(out_dir, GGUF_KIND, GGUF_FORMAT_VERSION)
    except (NotFound, ArtifactCorrupt, ManifestMismatch):
        return {}
    if old.get("source_sha256") != src.source_sha256:
        return {}
    return {t: info for t, info in (old.get("types") or {}).items() if (out_dir / info.get("file", "")).is_file()}


def export_source(src: LmSource, out_dir: Path, types: list[QuantType], threads: int = 2) -> ExportReport:
    """Write the requested GGUF types for a loaded source into `out_dir` (atomic replace)."""
    if not types:
        raise InvalidInput("no GGUF types requested")
    out_dir = Path(out_dir)
    vocab = read_spm_vocab(src.tokenizer_path)
    table = tensor_name_table(src.state_dict.keys(), src.args.n_layers, src.args.tie_embeddings)
    for qt in types:  # refuse impossible direct types before writing anything
        if not qt.via_llama_cpp:
            _refuse_incompatible(src, table, qt)
    keep = {t: info for t, info in _reusable(out_dir, src).items() if t not in {q.name for q in types}}
    files: list[GgufFile] = []
    manifest = make_manifest(
        GGUF_KIND, GGUF_FORMAT_VERSION, source_name=src.name, source_sha256=src.source_sha256,
        model_args=_args_dict(src.args), prompt_format=src.prompt_format, tokenizer_notes=vocab.parity_notes(),
    )
    types_meta: dict[str, Any] = {}
    with atomic_artifact_dir(out_dir, manifest) as tmp:
        for name, info in keep.items():
            _link_or_copy(out_dir / info["file"], tmp / info["file"])
            types_meta[name] = info
        f32_path: Path | None = None
        for qt in sorted(types, key=lambda q: q.via_llama_cpp):  # direct types first: K-quants need F32
            path = tmp / qt.filename
            if qt.via_llama_cpp:
                if f32_path is None:
                    f32_path = tmp / QUANT_TYPES["f32"].filename
                    if not f32_path.exists():
                        f32_path = tmp / ".source-f32.gguf"
                        write_gguf(f32_path, src, vocab, QUANT_TYPES["f32"])
                llama_cpp_quantize(f32_path, path, qt, threads)
            else:
                write_gguf(path, src, vocab, qt)
                if qt.name == "f32":
                    f32_path = path
            info = describe_file(path, qt)
            if info.fallbacks:
                log.warning("%s: %d tensor(s) fell back from K-quants: %s", qt.name, len(info.fallbacks),
                            ", ".join(info.fallbacks[:4]))
            files.append(info)
            types_meta[qt.name] = asdict(info)
        scratch = tmp / ".source-f32.gguf"
        if scratch.exists():
            scratch.unlink()
        manifest["types"] = types_meta
    for name, info in keep.items():
        files.append(GgufFile(**{k: info[k] for k in ("type", "file", "size_bytes", "tensor_types", "fallbacks")}))
    order = list(QUANT_TYPES)
    files.sort(key=lambda f: order.index(f.type))
    return ExportReport(str(out_dir), src.source_sha256, files, vocab.parity_notes())


def export_model(model_dir: Path, out_dir: Path, types: list[QuantType], threads: int = 2) -> ExportReport:
    """`ragkiln quantize`: load a checkpoint directory and export the requested types."""
    return export_source(load_source(model_dir), out_dir, types, threads)


def read_export(out_dir: Path) -> ExportReport:
    """The report of an existing GGUF directory (from its manifest)."""
    m = read_manifest(out_dir, GGUF_KIND, GGUF_FORMAT_VERSION)
    files = [GgufFile(**{k: v[k] for k in ("type", "file", "size_bytes", "tensor_types", "fallbacks")})
             for v in (m.get("types") or {}).values()]
    return ExportReport(str(out_dir), m.get("source_sha256", ""), files, m.get("tokenizer_notes", []))


def _args_dict(args: Any) -> dict[str, Any]:
    return args.to_dict() if hasattr(args, "to_dict") else dict(vars(args))


def _link_or_copy(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)
