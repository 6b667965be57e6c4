"""An embedder running an exported int8 model: ONNX Runtime or OpenVINO, with the base model's tokenizer and pooling.

The export directory (written by `indexer.backends.export_backend`) holds the quantized transformer, the tokenizer,
the model config and a manifest naming the backend, the pooling and the parity figures measured against the torch
model it came from. The tokenizer is read from tokenizer.json by `tokenizers` alone, and pooling and normalisation
run in numpy, so the query path imports neither transformers nor torch (a command-line search starts in 1 s, not 4).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from common.artifacts import read_manifest
from common.errors import ModelUnavailable

KIND = "embedder-export"
FORMAT_VERSION = 1
BACKENDS = ("onnx", "openvino")
POOLING = ("mean", "cls", "max")


def is_export_dir(path: Path) -> bool:
    """Whether `path` holds an embedder export (cheap: reads one small json field)."""
    import json

    f = Path(path) / "manifest.json"
    if not f.is_file():
        return False
    try:
        return json.loads(f.read_text(encoding="utf-8")).get("kind") == KIND
    except (OSError, ValueError):
        return False


def pool(hidden: np.ndarray, mask: np.ndarray, mode: str, normalize: bool) -> np.ndarray:
    """(n, T, dim) token states and (n, T) attention mask -> (n, dim) sentence vectors, as sentence-transformers'
    Pooling (+ Normalize) computes them."""
    m = mask[..., None].astype(np.float32)  # (n, T, 1)
    if mode == "mean":
        emb = (hidden * m).sum(1) / np.clip(m.sum(1), 1e-9, None)
    elif mode == "cls":
        emb = hidden[:, 0]
    elif mode == "max":
        emb = np.where(m > 0, hidden, -1e9).max(1)
    else:
        raise ValueError(f"pooling must be one of {POOLING}, got {mode!r}")
    emb = emb.astype(np.float32, copy=False)
    if normalize:
        emb = emb / np.clip(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12, None)
    return emb


class _OnnxRunner:
    def __init__(self, model_file: Path, threads: int) -> None:
        import onnxruntime as ort

        so = ort.SessionOptions()
        if threads:
            so.intra_op_num_threads = threads
        # Idle ONNX Runtime workers spinning between queries would take cores from FAISS and BM25 on a small CPU.
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(str(model_file), so, providers=["CPUExecutionProvider"])
        self.inputs = [i.name for i in self.session.get_inputs()]

    def __call__(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        return self.session.run(None, {k: feeds[k] for k in self.inputs})[0]


class _OpenVinoRunner:
    def __init__(self, model_file: Path, threads: int) -> None:
        import openvino as ov

        config: dict[str, Any] = {"INFERENCE_PRECISION_HINT": "f32"}  # int8 where quantized, f32 elsewhere (no bf16)
        if threads:
            config["INFERENCE_NUM_THREADS"] = threads
        core = ov.Core()
        self.compiled = core.compile_model(core.read_model(str(model_file)), "CPU", config)
        self.inputs = [p.get_any_name() for p in self.compiled.inputs]

    def __call__(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        request = self.compiled.create_infer_request()  # one per call: infer requests are not shared between threads
        return request.infer({k: feeds[k] for k in self.inputs})[0]


def make_runner(backend: str, model_file: Path, threads: int):  # type: ignore[no-untyped-def]
    try:
        return (_OnnxRunner if backend == "onnx" else _OpenVinoRunner)(model_file, threads)
    except ImportError as e:
        raise ModelUnavailable(f"the {backend} embed backend needs {missing_packages(backend)}") from e


def missing_packages(backend: str) -> str:
    return {"onnx": "onnxruntime and onnx (pip install onnxruntime==1.32.0 onnx==1.23.2)",
            "openvino": "openvino and nncf (pip install openvino==2026.4.1 nncf==3.4.0)"}[backend]


class FastTokenizer:
    """The calls the index makes of a Hugging Face fast tokenizer (`get_vocab`, and `__call__` with special tokens,
    offsets, truncation, padding, numpy tensors), answered by the `tokenizers` library from the export's
    tokenizer.json alone. Importing transformers (and torch with it) took 4.6 of a command-line search's 6 s."""

    def __init__(self, tokenizer_json: Path, config: dict[str, Any]) -> None:
        from tokenizers import Tokenizer

        self._file, self._config = str(tokenizer_json), config
        self._plain = Tokenizer.from_file(self._file)
        self._plain.no_truncation()
        self._plain.no_padding()
        pad = str(config.get("pad_token") or "[PAD]")
        self._pad = (pad, self._plain.token_to_id(pad) or 0, int(config.get("pad_token_type_id") or 0))
        self._side = (str(config.get("padding_side") or "right"), str(config.get("truncation_side") or "right"))
        self._shaped: dict[tuple[int | None, bool], Any] = {}  # (max_length, padding) -> a configured copy
        self._lock = threading.Lock()

    def _configured(self, max_length: int | None, padding: bool) -> Any:
        from tokenizers import Tokenizer

        key = (max_length, padding)
        with self._lock:
            if key not in self._shaped:
                tok = Tokenizer.from_file(self._file)
                tok.no_truncation()
                tok.no_padding()
                if max_length is not None:
                    tok.enable_truncation(max_length, strategy="longest_first", direction=self._side[1])
                if padding:
                    tok.enable_padding(direction=self._side[0], pad_id=self._pad[1], pad_type_id=self._pad[2],
                                       pad_token=self._pad[0])
                self._shaped[key] = tok
            return self._shaped[key]

    def __deepcopy__(self, memo: dict[int, Any]) -> "FastTokenizer":
        return FastTokenizer(Path(self._file), dict(self._config))  # a tokenizer of its own, for another thread

    def get_vocab(self) -> dict[str, int]:
        return self._plain.get_vocab(with_added_tokens=True)

    def __call__(self, texts: str | Sequence[str], add_special_tokens: bool = True, return_offsets_mapping: bool = False,
                 truncation: bool = False, max_length: int | None = None, padding: bool = False,
                 return_tensors: str | None = None, verbose: bool = True) -> dict[str, Any]:
        single = isinstance(texts, str)
        if truncation and max_length is None:  # as transformers does: the model's own limit
            max_length = min(int(self._config.get("model_max_length") or 512), 1 << 20)
        tok = self._configured(max_length if truncation else None, padding) if (truncation or padding) else self._plain
        encs = tok.encode_batch([texts] if single else list(texts), add_special_tokens=add_special_tokens)
        out: dict[str, Any] = {"input_ids": [e.ids for e in encs], "token_type_ids": [e.type_ids for e in encs],
                               "attention_mask": [e.attention_mask for e in encs]}
        if return_offsets_mapping:
            out["offset_mapping"] = [[tuple(o) for o in e.offsets] for e in encs]
        if return_tensors == "np":
            return {k: np.asarray(v, dtype=np.int64) for k, v in out.items()}
        return {k: v[0] for k, v in out.items()} if single else out


def load_tokenizer(path: Path) -> Any:
    """The export's tokenizer: tokenizer.json through `tokenizers` alone where the export has one, else (a slow
    tokenizer's files only) transformers' AutoTokenizer."""
    import json

    if (path / "tokenizer.json").is_file():
        cfg_file = path / "tokenizer_config.json"
        config = json.loads(cfg_file.read_text(encoding="utf-8")) if cfg_file.is_file() else {}
        return FastTokenizer(path / "tokenizer.json", config)
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(path), local_files_only=True)


class ExportedEmbedder:
    """The `Embedder` protocol over an export directory; `id` names the base model, the backend and the weights."""

    def __init__(self, path: str | Path, threads: int = 0, manifest: dict[str, Any] | None = None) -> None:
        path = Path(path).resolve()
        spec = manifest if manifest is not None else read_manifest(path, KIND, FORMAT_VERSION)
        if spec.get("backend") not in BACKENDS:
            raise ModelUnavailable(f"{path}: unknown embed backend {spec.get('backend')!r}")
        try:
            self.tokenizer = load_tokenizer(path)
        except Exception as e:  # noqa: BLE001 - a damaged export is unusable whatever the reason
            raise ModelUnavailable(f"cannot load the tokenizer of the embedder export {path}: {e}") from e
        self.path = str(path)
        self.id = str(spec["id"])
        self.name = str(spec["name"])
        self.dim = int(spec["dim"])
        self.max_tokens = int(spec["max_tokens"])
        self.backend = str(spec["backend"])
        self.quantization = str(spec["quantization"])
        self.base_id = str(spec["base"]["id"])
        self.base_path = str(spec["base"]["path"])
        self.pooling = str(spec["pooling"])
        self.normalize = bool(spec["normalize"])
        self.manifest = spec
        self._runner = make_runner(self.backend, path / spec["model_file"], threads)
        self._lock = threading.Lock()

    def token_spans(self, texts: Sequence[str]) -> list[tuple[list[int], list[int]]]:
        """Character (starts, ends) of each text's tokens, special tokens excluded, no truncation."""
        enc = self.tokenizer(list(texts), add_special_tokens=False, return_offsets_mapping=True,
                             truncation=False, verbose=False)
        return [([s for s, _ in offsets], [e for _, e in offsets]) for offsets in enc["offset_mapping"]]

    def encode(self, texts: Sequence[str], is_query: bool = False, batch_size: int = 64,
               show_progress: bool = False, precision: str = "fp32") -> np.ndarray:
        """L2-normalised (n, dim) float32 vectors; `precision` is the torch query setting and does not apply here
        (queries run through the same int8 model as the documents)."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        texts = list(texts)
        # Longest first, as sentence-transformers does: batches of similar lengths waste little on padding.
        order = np.argsort([-len(t) for t in texts], kind="stable")
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for s in range(0, len(texts), batch_size):
            idx = order[s:s + batch_size]
            out[idx] = self._encode_batch([texts[i] for i in idx])
        return out

    def _encode_batch(self, texts: list[str]) -> np.ndarray:
        enc = self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_tokens, return_tensors="np")
        feeds = {k: np.asarray(v, dtype=np.int64) for k, v in enc.items()}
        with self._lock:
            hidden = self._runner(feeds)  # (n, T, dim) last hidden state
        return pool(np.asarray(hidden, dtype=np.float32), feeds["attention_mask"], self.pooling, self.normalize)
