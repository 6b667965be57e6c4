"""Int8 embed backends: export a torch embedder to ONNX Runtime (dynamic int8) or OpenVINO (static int8 calibrated
on the corpus's own chunks), check its parity with the torch fp32 vectors, probe its speed, and choose.

sentence-transformers' own `backend="onnx"/"openvino"` and its `export_dynamic_quantized_onnx_model` /
`export_static_quantized_openvino_model` go through optimum-onnx and optimum-intel, whose releases (optimum-onnx 0.1.0,
optimum-intel 2.2.0) require transformers < 4.58 and < 5.6 and fail to import next to the pinned transformers 5.23.
So this module runs the steps those wrappers run, on the libraries underneath them:

- ONNX: `torch.onnx.export` of the transformer (eager attention, dynamic batch and sequence axes), then
  `onnxruntime.quantization.quantize_dynamic` with the settings of optimum's
  `AutoQuantizationConfig.<isa>(is_static=False)` that `export_dynamic_quantized_onnx_model` uses: per-channel
  symmetric weights (uint8 for AVX2, int8 for AVX512/VNNI/ARM64), asymmetric uint8 activations, full 8-bit range,
  every IntegerOps operator.
- OpenVINO: the same ONNX graph read by OpenVINO, then `nncf.quantize(model_type=TRANSFORMER)`, what optimum-intel's
  static int8 runs, calibrated on corpus chunks instead of a downloaded data set (no `datasets`, no network).

An export is an artifact (`models/exports/<embedder-id>-<backend>-int8/`, manifest with the parity figures and the
probe's throughput), made once per base embedder and backend and reused by every later ingest; a domain-adapted
embedder (a local directory) is exported the same way under its own id.
"""

from __future__ import annotations

import contextlib
import copy
import importlib.util
import logging
import platform
import re
import shutil
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from common.artifacts import atomic_artifact_dir, make_manifest, read_manifest
from common.errors import ArtifactCorrupt, InvalidInput, ManifestMismatch, ModelUnavailable, NotFound
from common.hashing import sha256_file, sha256_text
from common.memory import release_free_memory
from common.settings import IndexerConfig
from indexer.embedder import Embedder, load_embedder
from indexer.exported import BACKENDS, FORMAT_VERSION, KIND, POOLING, ExportedEmbedder, missing_packages

log = logging.getLogger(__name__)

QUANTIZATION = {"onnx": "int8-dynamic", "openvino": "int8-static"}
AUTO_ORDER = ("openvino", "onnx")  # tried in this order; the measured speed decides, the order only breaks ties
_MODEL_FILE = {"onnx": "model_int8.onnx", "openvino": "openvino_model_int8.xml"}
_PACKAGES = {"onnx": ("onnxruntime", "onnx"), "openvino": ("openvino", "nncf", "onnx")}


def available(backend: str) -> bool:
    """Whether the packages a backend needs are installed (nothing is imported)."""
    return all(importlib.util.find_spec(m) is not None for m in _PACKAGES[backend])


def auto_backends(isa: str | None = None) -> list[str]:
    """The int8 backends `auto` exports and probes on this CPU, installed ones only. Without VNNI (or AMX) OpenVINO's
    static int8 is skipped: on AVX2 EPYCs it measured 0.9x and 1.2x torch after 20-53 s of calibration, while ONNX
    Runtime's dynamic int8 measured 1.3-1.6x (bench/results/embed-backends-idle.json, build-demo-answer-check.json);
    with VNNI OpenVINO is the fastest (3.7x against ONNX's 2.3x, embed-backends-vnni.json)."""
    isa = isa or cpu_isa()
    return [b for b in AUTO_ORDER if available(b) and not (b == "openvino" and isa == "avx2")]


def cpu_isa() -> str:
    """The best int8 instruction set of this CPU as optimum names its configs: avx512_vnni, avx512, avx2 or arm64."""
    if platform.machine().lower() in ("aarch64", "arm64"):
        return "arm64"
    try:
        flags = set(Path("/proc/cpuinfo").read_text().split())
    except OSError:
        flags = set()
    if "avx512_vnni" in flags or "avx512vnni" in flags:
        return "avx512_vnni"
    if "avx512f" in flags:
        return "avx512"
    return "avx2"


def export_dir(models: Path, base_id: str, backend: str) -> Path:
    """Where the int8 export of the embedder `base_id` for `backend` lives in a workspace's models folder."""
    return Path(models) / "exports" / f"{re.sub(r'[^A-Za-z0-9._@-]+', '_', base_id)}-{backend}-int8"


def remove_exports_of(models: Path, model_dir: Path) -> list[Path]:
    """Delete the exports made from the model in `model_dir`, which is about to be replaced: an export is named
    by its model's id, so a retrained model gets new ones and the old ones would only take disk (about 47 MB a
    rebuild). The caller makes sure no index searches with them."""
    target = Path(model_dir).expanduser().resolve()
    removed = []
    for d in sorted((Path(models) / "exports").glob("*-int8")):
        try:
            base = read_manifest(d, KIND, FORMAT_VERSION).get("base", {}).get("path")
        except (NotFound, ArtifactCorrupt, ManifestMismatch):
            continue
        if base and Path(base).expanduser().resolve() == target:
            shutil.rmtree(d, ignore_errors=True)
            removed.append(d)
    return removed


def parity(reference: np.ndarray, candidate: np.ndarray) -> dict[str, float]:
    """Cosine of each candidate vector to its reference vector: mean, min and 5th percentile."""
    a = reference / np.clip(np.linalg.norm(reference, axis=1, keepdims=True), 1e-12, None)
    b = candidate / np.clip(np.linalg.norm(candidate, axis=1, keepdims=True), 1e-12, None)
    cos = (a * b).sum(1)
    return {"mean": round(float(cos.mean()), 5), "min": round(float(cos.min()), 5),
            "p05": round(float(np.percentile(cos, 5)), 5), "n": int(len(cos))}


def passes(par: dict[str, float], cfg: IndexerConfig) -> bool:
    return par["mean"] >= cfg.embed_parity_mean and par["min"] >= cfg.embed_parity_min


def _pooling_of(model: Any) -> tuple[str, bool]:
    """(pooling mode, normalised) of a Transformer + Pooling (+ Normalize) sentence-transformers model."""
    mods = list(model)
    names = [type(m).__name__ for m in mods]
    if names not in (["Transformer", "Pooling"], ["Transformer", "Pooling", "Normalize"]):
        raise InvalidInput(f"only Transformer + Pooling (+ Normalize) embedders can be exported, this one has {names}")
    mode = getattr(mods[1], "pooling_mode", None)
    if mode is None:  # sentence-transformers < 6: one flag per mode
        on = [m for m in ("mean", "cls", "max") if getattr(mods[1], f"pooling_mode_{m}_token{'s' if m != 'cls' else ''}", False)]
        mode = on[0] if len(on) == 1 else None
    if mode not in POOLING:
        raise InvalidInput(f"only {', '.join(POOLING)} pooling can be exported, this embedder uses {mode!r}")
    return str(mode), len(names) == 3


def _export_onnx_fp32(base: Any, out: Path) -> list[str]:
    """The base's transformer as an fp32 ONNX graph (last hidden state), dynamic batch and sequence axes.

    A deep copy with eager attention is traced: the base model stays as it was, and eager attention traces to
    plain MatMul/Softmax that both quantizers know."""
    import torch

    auto_model = copy.deepcopy(base.model[0].auto_model).float().eval()
    if hasattr(auto_model, "set_attn_implementation"):
        auto_model.set_attn_implementation("eager")
    else:
        auto_model.config._attn_implementation = "eager"
    sample = base.tokenizer(["a short text", "a somewhat longer text to give the trace some padding"],
                            padding=True, return_tensors="pt")
    names = [n for n in base.tokenizer.model_input_names if n in sample]

    class LastHidden(torch.nn.Module):
        def __init__(self, m: torch.nn.Module) -> None:
            super().__init__()
            self.m = m

        def forward(self, *args: torch.Tensor) -> torch.Tensor:
            return self.m(**dict(zip(names, args))).last_hidden_state

    axes = {n: {0: "batch", 1: "sequence"} for n in [*names, "last_hidden_state"]}
    with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(LastHidden(auto_model), tuple(sample[n] for n in names), str(out), input_names=names,
                          output_names=["last_hidden_state"], dynamic_axes=axes, opset_version=17, dynamo=False)
    return names


def _drop_preprocess_advice(record: logging.LogRecord) -> bool:
    """The quantizer's advice to run its pre-processing, a WARNING on every export: the export is judged by
    its measured parity with fp32 instead (its manifest; below the threshold it is not used)."""
    return "pre-processing before quantization" not in record.getMessage()


def _quantize_onnx(fp32: Path, out: Path) -> dict[str, Any]:
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.registry import IntegerOpsRegistry

    isa = cpu_isa()
    weight_type = QuantType.QUInt8 if isa == "avx2" else QuantType.QInt8  # optimum's AutoQuantizationConfig.<isa>
    ops = sorted(IntegerOpsRegistry)
    root, level = logging.getLogger(), logging.getLogger().level
    root.setLevel(max(level, logging.WARNING))  # the quantizer logs a line per tensor on the root logger
    root.addFilter(_drop_preprocess_advice)
    try:
        quantize_dynamic(str(fp32), str(out), op_types_to_quantize=ops, per_channel=True, reduce_range=False,
                         weight_type=weight_type, extra_options={"WeightSymmetric": True, "ActivationSymmetric": False})
    finally:
        root.removeFilter(_drop_preprocess_advice)
        root.setLevel(level)
    return {"tool": "onnxruntime.quantization.quantize_dynamic", "isa": isa, "per_channel": True,
            "weights": weight_type.name, "activations": "QUInt8 (dynamic)", "operators": ops}


def _quantize_openvino(fp32: Path, out: Path, names: Sequence[str], base: Any, texts: Sequence[str],
                       max_tokens: int) -> dict[str, Any]:
    import nncf
    import openvino as ov

    model = ov.Core().read_model(str(fp32))
    items = []
    for t in texts:  # one text per item: statistics without padding
        enc = base.tokenizer([t], truncation=True, max_length=max_tokens, return_tensors="np")
        items.append({n: np.asarray(enc[n], dtype=np.int64) for n in names})
    with contextlib.redirect_stdout(sys.stderr):  # nncf draws progress on stdout, which belongs to the front end
        quantized = nncf.quantize(model, nncf.Dataset(items), model_type=nncf.ModelType.TRANSFORMER,
                                  subset_size=len(items))
    ov.save_model(quantized, str(out), compress_to_fp16=False)
    return {"tool": "nncf.quantize", "model_type": "TRANSFORMER", "preset": "performance (default)",
            "calibration_chunks": len(items), "calibration_sha256": sha256_text("\n".join(texts))[:16]}


def race(embedders: Sequence[Any], texts: Sequence[str], batch_size: int, rounds: int = 2
         ) -> list[tuple[np.ndarray, float]]:
    """Each embedder's vectors of `texts` and its best chunks per second over `rounds` passes, taken in turn.

    The int8 runtimes compile for a batch's shapes on first sight: their first full pass ran at two thirds of
    their speed (OpenVINO 51 then 74-77 chunks/s, ONNX Runtime 39 then 46-52, torch level throughout; 64
    SciFact-sized chunks, AMD EPYC Zen 4), and it is not the same fraction for every backend, so one timed pass
    after a token warm-up ranked the exports wrongly. Every embedder is warmed with a full pass, then timed in
    alternation, so the machine's load falls on all of them alike."""
    items = list(texts)
    for emb in embedders:
        emb.encode(items, batch_size=batch_size)
    vecs: list[np.ndarray] = [np.zeros(0)] * len(embedders)
    best = [0.0] * len(embedders)
    for _ in range(rounds):
        for i, emb in enumerate(embedders):
            t0 = time.perf_counter()
            vecs[i] = emb.encode(items, batch_size=batch_size)
            best[i] = max(best[i], len(items) / max(time.perf_counter() - t0, 1e-9))
    return list(zip(vecs, best))


def export_backend(base: Any, backend: str, out: Path, parity_texts: Sequence[str],
                   calibration_texts: Sequence[str] = (), batch_size: int = 64, threads: int = 0) -> Embedder:
    """Export `base` (a torch sentence-transformers embedder) for `backend` as an int8 artifact at `out`, with its
    parity against `base` on `parity_texts` and both speeds on them in the manifest; returns the loaded export."""
    if backend not in BACKENDS:
        raise InvalidInput(f"embed backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    if getattr(base, "backend", "torch") != "torch":
        raise InvalidInput(f"exports are made from a torch embedder, not from {base.id}")
    if not available(backend):
        raise ModelUnavailable(f"the {backend} embed backend needs {missing_packages(backend)}")
    if not parity_texts:
        raise InvalidInput("the parity check needs at least one text")
    mode, normalize = _pooling_of(base.model)
    t0 = time.perf_counter()
    manifest = make_manifest(KIND, FORMAT_VERSION, name=base.name, backend=backend, quantization=QUANTIZATION[backend],
                             base={"id": base.id, "name": base.name, "path": base.path}, dim=base.dim,
                             max_tokens=base.max_tokens, pooling=mode, normalize=normalize,
                             model_file=_MODEL_FILE[backend], versions=_versions(backend))
    with atomic_artifact_dir(out, manifest) as tmp:
        fp32 = tmp / "model_fp32.onnx"
        names = _export_onnx_fp32(base, fp32)
        model_file = tmp / _MODEL_FILE[backend]
        if backend == "onnx":
            scheme = _quantize_onnx(fp32, model_file)
        else:
            scheme = _quantize_openvino(fp32, model_file, names, base, calibration_texts or parity_texts, base.max_tokens)
        fp32.unlink()
        base.tokenizer.save_pretrained(str(tmp))
        base.model[0].auto_model.config.save_pretrained(str(tmp))
        manifest.update(inputs=names, scheme=scheme, export_seconds=round(time.perf_counter() - t0, 1),
                        id=f"{base.id}:{backend}-int8@{sha256_file(model_file)[:8]}")
        candidate = ExportedEmbedder(tmp, threads, manifest=manifest)
        (ref, torch_speed), (vecs, speed) = race([base, candidate], parity_texts, batch_size)
        par = parity(ref, vecs)
        manifest.update(parity=par, probe={"chunks": len(parity_texts), "batch_size": batch_size,
                                           "chunks_per_s": round(speed, 2), "torch_chunks_per_s": round(torch_speed, 2),
                                           "speedup": round(speed / torch_speed, 3), "cpu": cpu_isa()})
        del candidate
    release_free_memory()  # the trace and quantizer buffers, else kept for the rest of the ingest
    log.info("exported %s for %s: parity mean %.4f min %.4f, %.1fx torch on the probe", manifest["id"], backend,
             par["mean"], par["min"], speed / torch_speed)
    return load_embedder(str(out), threads)


def _versions(backend: str) -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for pkg in ("torch", "transformers", *_PACKAGES[backend]):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            pass
    return out


def cached_manifest(models: Path, base: Any, backend: str) -> dict[str, Any] | None:
    """The manifest of this workspace's export of `base` for `backend`, if one is there and made from these very
    weights; reading it loads no model, so `auto` can choose among exports before loading one."""
    path = export_dir(models, base.id, backend)
    try:
        spec = read_manifest(path, KIND, FORMAT_VERSION)
    except (NotFound, ArtifactCorrupt, ManifestMismatch):
        return None
    if spec.get("base", {}).get("id") != base.id or not (path / str(spec.get("model_file"))).is_file():
        return None
    return spec


def cached_export(models: Path, base: Any, backend: str, threads: int = 0) -> Embedder | None:
    """The export of `base` for `backend` in this workspace, loaded, if `cached_manifest` finds it."""
    if cached_manifest(models, base, backend) is None:
        return None
    return load_embedder(str(export_dir(models, base.id, backend)), threads)


def ensure_export(models: Path, base: Any, backend: str, cfg: IndexerConfig,
                  sample: Callable[[], list[str]]) -> Embedder:
    """The cached export, or a new one made on `sample()`'s chunks (parity and probe on the first
    `embed_sample_chunks`, OpenVINO calibrated on the next `embed_calibration_chunks`, or on all when few)."""
    found = cached_export(models, base, backend, cfg.threads)
    if found is not None:
        return found
    texts = sample()
    if not texts:
        raise InvalidInput(f"no chunk to check an {backend} export against; ingest documents first")
    par = texts[:cfg.embed_sample_chunks]
    cal = texts[cfg.embed_sample_chunks:cfg.embed_sample_chunks + cfg.embed_calibration_chunks]
    if len(cal) < min(cfg.embed_calibration_chunks, 32):  # a small corpus: calibrate on all of it
        cal = texts[:cfg.embed_calibration_chunks]
    log.info("exporting %s to %s int8 (%d parity chunks, %d calibration chunks)", base.id, backend, len(par),
             len(cal) if backend == "openvino" else 0)
    return export_backend(base, backend, export_dir(models, base.id, backend), par, cal,
                          batch_size=cfg.embed_batch_size, threads=cfg.threads)


def describe(emb: Any) -> dict[str, Any]:
    """The index manifest's `embedder` section for the embedder that made its vectors."""
    out: dict[str, Any] = {"id": emb.id, "name": emb.name, "path": emb.path, "dim": emb.dim,
                           "backend": getattr(emb, "backend", "torch"), "quantization": getattr(emb, "quantization", "fp32")}
    if out["backend"] != "torch":
        spec = emb.manifest
        out.update(base={"id": emb.base_id, "path": emb.base_path}, parity=spec.get("parity"), probe=spec.get("probe"),
                   scheme=spec.get("scheme"))
    return out


def choose_embedder(models: Path, base: Any, cfg: IndexerConfig,
                    sample: Callable[[], list[str]]) -> tuple[Embedder, dict[str, Any]]:
    """The embedder `cfg.embed_backend` asks for, and why (recorded in the index manifest).

    torch: `base`. onnx / openvino: that export (made once, then cached), whatever its parity (a warning when it
    fails the thresholds). auto: among the int8 exports whose parity passes, the one whose probe measured the
    largest speed-up over torch (the probe ran at export time on the same sample, torch and int8 back to back);
    torch when none passes or none was faster. The measurement is taken once per export, so a busy machine at that
    moment decides for later ingests too; set the backend explicitly to overrule it."""
    setting = cfg.embed_backend
    if setting == "torch":
        return base, {"setting": "torch", "reason": "embed_backend is torch"}
    wanted = [setting] if setting != "auto" else auto_backends()
    tried: list[dict[str, Any]] = []
    best: tuple[float, str, Embedder | None] | None = None
    for backend in wanted:
        # auto judges a cached export by its manifest, and loads only the one it picks
        spec = cached_manifest(models, base, backend) if setting == "auto" else None
        emb: Embedder | None = None
        if spec is None:
            try:
                emb = ensure_export(models, base, backend, cfg, sample)
            except (InvalidInput, ModelUnavailable) as e:
                if setting != "auto":
                    raise
                tried.append({"backend": backend, "error": str(e)})
                continue
            except Exception as e:  # noqa: BLE001 - auto keeps torch when an exporter breaks; an explicit choice fails
                if setting != "auto":
                    raise ModelUnavailable(f"cannot export {base.id} for {backend}: {e}") from e
                log.warning("auto embed backend: the %s export failed (%s); trying the others", backend, e)
                tried.append({"backend": backend, "error": f"{type(e).__name__}: {e}"})
                continue
            spec = emb.manifest  # type: ignore[attr-defined]
        ok = passes(spec["parity"], cfg)
        speedup = float(spec["probe"]["speedup"])
        tried.append({"backend": backend, "id": spec["id"], "parity": spec["parity"], "speedup": speedup, "passes": ok})
        if setting != "auto":
            if not ok:
                log.warning("the %s export of %s fails the parity check (mean %.4f < %.4f or min %.4f < %.4f); "
                            "used because embed_backend asks for it", backend, base.id, spec["parity"]["mean"],
                            cfg.embed_parity_mean, spec["parity"]["min"], cfg.embed_parity_min)
            assert emb is not None  # an explicit backend always loads its export
            return emb, {"setting": setting, "reason": f"embed_backend is {setting}", "parity_passes": ok,
                         "candidates": tried}
        if ok and speedup > 1.0 and (best is None or speedup > best[0]):
            best = (speedup, backend, emb)
    thresholds = {"mean": cfg.embed_parity_mean, "min": cfg.embed_parity_min}
    if best is None:
        why = ("no int8 backend installed" if not wanted else
               "no int8 export passed the parity check and beat torch on the probe")
        return base, {"setting": "auto", "reason": f"torch: {why}", "thresholds": thresholds, "candidates": tried}
    speedup, backend, emb = best
    if emb is None:
        emb = load_embedder(str(export_dir(models, base.id, backend)), cfg.threads)
    return emb, {"setting": "auto", "reason": f"{backend}: passes parity, {speedup:.2f}x torch on the probe",
                 "thresholds": thresholds, "candidates": tried}
