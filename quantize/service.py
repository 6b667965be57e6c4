"""The quantize stage's entry points, called by the CLI, the server and the bench with settings in hand.

`quantize_model` exports GGUF files; `verify_model` measures them against torch; `generate_gguf`
and `eval_gguf` run a GGUF file through the llama.cpp runtime (what `ragkiln generate --gguf` and
`ragkiln eval lm --gguf` call). Held-out text comes from the model's own held-out documents in the
workspace (recorded in its manifest at training time) or from a file given explicitly.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from common.errors import ArtifactCorrupt, InvalidInput, NotFound
from common.settings import QuantizeConfig, Settings
from common.jsonl import iter_jsonl
from quantize.export import ExportReport, LmSource, export_source, load_source, read_export, source_from_model
from quantize.metrics import token_nll
from quantize.runtime import Generation, LlamaCppGenerator, SamplingParams
from quantize.types import QUANT_TYPES, QuantType, parse_types



def default_gguf_dir(settings: Settings, model_dir: Path) -> Path:
    return Path(settings.home).expanduser() / "gguf" / Path(model_dir).resolve().name


def quantize_model(settings: Settings, model_dir: Path, types: str | None = None, out: Path | None = None) -> ExportReport:
    """`ragkiln quantize`: write the requested GGUF types of a checkpoint (default out: workspace/gguf/NAME)."""
    qtypes = parse_types(types or settings.quantize.types)
    out_dir = Path(out) if out else default_gguf_dir(settings, model_dir)
    return export_source(load_source(Path(model_dir)), out_dir, qtypes, settings.quantize.threads)


def ensure_export(src: LmSource, out_dir: Path, qtypes: list[QuantType], threads: int) -> ExportReport:
    """An export holding `qtypes` for exactly these weights: reuse the directory, export what is missing."""
    try:
        have = read_export(out_dir)
    except (NotFound, ArtifactCorrupt):
        have = None
    if have is not None and have.source_sha256 == src.source_sha256:
        missing = [q for q in qtypes if q.name not in {f.type for f in have.files}]
        if not missing:
            return have
        return export_source(src, out_dir, missing, threads)
    return export_source(src, out_dir, qtypes, threads)


def read_texts(path: Path) -> list[str]:
    """Held-out text from a file: `.jsonl` lines with "text" (and optional "title"), else paragraphs."""
    path = Path(path)
    if not path.is_file():
        raise NotFound(f"text file {path} does not exist")
    if path.suffix == ".jsonl":
        out = []
        for where, row in iter_jsonl(path, "text file"):
            if not isinstance(row, dict) or not isinstance(row.get("text"), str):
                raise InvalidInput(f"{where}: needs a string field 'text'")
            title = row.get("title") if isinstance(row.get("title"), str) else ""
            out.append(f"{title}\n{row['text']}" if title else row["text"])
        return out
    raw = path.read_text(encoding="utf-8", errors="replace")
    return [p.strip() for p in raw.split("\n\n") if p.strip()]


def heldout_texts(settings: Settings, manifest: dict[str, Any]) -> list[str]:
    """Chunk texts of the documents the model was not trained on (recorded at training time)."""
    held = set((manifest.get("training") or {}).get("heldout_doc_ids") or [])
    if not held:
        raise InvalidInput("the model records no held-out documents; pass --text FILE with held-out text")
    from indexer.workspace import Workspace

    ws = Workspace.open(settings)
    texts = [c.text for c in ws.store.iter_chunks() if c.doc_id in held]
    if not texts:
        raise NotFound("none of the model's held-out documents is in this workspace; pass --text FILE")
    return texts


def verify_model(
    settings: Settings, model_dir: Path, types: str | None = None, gguf_dir: Path | None = None,
    text_file: Path | None = None,
) -> dict[str, Any]:
    """`ragkiln quantize verify`: export what is missing, then measure every type against torch."""
    from trainer.lm.checkpoint import load_model
    from quantize.verify import build_verify_data, verify_export

    cfg: QuantizeConfig = settings.quantize
    qtypes = parse_types(types or "all")
    if "f32" not in {q.name for q in qtypes}:  # the parity checks are defined on F32
        qtypes = [QUANT_TYPES["f32"], *qtypes]
    model, tokenizer, manifest = load_model(Path(model_dir))
    src = source_from_model(Path(model_dir), model, manifest)
    export = ensure_export(src, Path(gguf_dir) if gguf_dir else default_gguf_dir(settings, model_dir), qtypes, cfg.threads)
    texts = read_texts(text_file) if text_file else heldout_texts(settings, manifest)
    data = build_verify_data(texts, tokenizer, model.args.max_seq_len, rows=cfg.verify_rows, prompts=cfg.verify_prompts)
    result = verify_export(model, tokenizer, export, [q.name for q in qtypes], data, threads=cfg.threads,
                           gen_tokens=cfg.verify_gen_tokens, prompt_format=manifest.get("prompt_format"))
    out = {"model": str(model_dir), "held_out": str(text_file) if text_file else "workspace held-out documents",
           **result}
    record_verification(Path(export.out_dir), src.source_sha256, out)
    return out


VERIFY_FILE = "verify.json"


def record_verification(gguf_dir: Path, source_sha256: str, result: dict[str, Any]) -> None:
    """Keep a verification beside the export it measured (the server's generation gate reads it); a
    re-export replaces the directory and so drops it."""
    from common.artifacts import atomic_write_text

    atomic_write_text(Path(gguf_dir) / VERIFY_FILE,
                      json.dumps({"source_sha256": source_sha256, **result}, default=str, sort_keys=True))


def read_verification(gguf_dir: Path, source_sha256: str | None = None) -> dict[str, Any] | None:
    """The `quantize verify` result recorded for this export (None when none is, or it measured other weights)."""
    try:
        rec = json.loads((Path(gguf_dir) / VERIFY_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(rec, dict) or (source_sha256 and rec.get("source_sha256") != source_sha256):
        return None
    return rec


def open_generator(settings: Settings, path: Path, logits_all: bool = False) -> LlamaCppGenerator:
    """The runtime for a GGUF file, sized by settings (the server holds one for its lifetime)."""
    c = settings.quantize
    return LlamaCppGenerator(Path(path), threads=c.threads, n_ctx=c.n_ctx, pool_size=c.contexts,
                             queue_size=c.queue_size, acquire_timeout_s=c.acquire_timeout_s, logits_all=logits_all,
                             kv_cache=c.kv_cache)


def generate_gguf(settings: Settings, path: Path, prompt: str, params: SamplingParams,
                  extractive: bool = False) -> Generation:
    """`ragkiln generate --gguf FILE PROMPT`: one generation through llama.cpp (`extractive`: only a
    span copied from the prompt's `<ctx>` passages, as with the torch model)."""
    from trainer.lm.qa_bounds import extract_from_context

    gen = open_generator(settings, path)
    try:
        if extractive:
            params = extract_from_context(params, gen.tokenize(prompt), GgufTokenizer(gen))
        return gen.generate(prompt, params)
    finally:
        gen.close()


def gguf_manifest(path: Path) -> dict[str, Any]:
    """The LM manifest the exporter stored in a GGUF file (`ragkiln.manifest_json`)."""
    from gguf import GGUFReader

    field = GGUFReader(Path(path)).get_field("ragkiln.manifest_json")
    if field is None:
        raise InvalidInput(f"{path} was not exported by ragkiln (no ragkiln.manifest_json)")
    return json.loads(field.contents())


class GgufTokenizer:
    """trainer.lm's tokenizer interface (encode, special ids) served by llama.cpp's vocabulary."""

    def __init__(self, gen: LlamaCppGenerator) -> None:
        self._gen = gen
        self.bos_id, self.eos_id = gen.bos_id, gen.eos_id
        self.ctx_open, self.ctx_close, self.q_id, self.a_id = (self._symbol(s) for s in ("<ctx>", "</ctx>", "<q>", "<a>"))

    def _symbol(self, s: str) -> int:
        ids = self._gen.tokenize(s, add_bos=False)
        if len(ids) != 1:
            raise ArtifactCorrupt(f"{self._gen.path}: special symbol {s} is not a single token")
        return ids[0]

    def encode(self, text: str) -> list[int]:
        return self._gen.tokenize(text, add_bos=False)

    def piece_bytes(self, i: int) -> bytes:
        return self._gen.piece_bytes(i)


def gguf_perplexities(gen: LlamaCppGenerator, ds: Any, rows: int | None = None) -> dict[str, Any]:
    """Held-out perplexity of an LmDataset's target tokens through llama.cpp, without and with context."""
    n = len(ds) if rows is None else min(rows, len(ds))

    def ppl(with_context: bool) -> tuple[float, int]:
        total, count = 0.0, 0
        for i in range(n):
            x, y, mask = ds.batch([i], with_context)  # (1, T) each
            ids = x[0].tolist()
            keep = (mask[0] & (y[0] >= 0)).numpy()
            logits = gen.logits(ids)  # (T, V)
            nll = token_nll(logits, np.maximum(y[0].numpy(), 0))
            total += float(nll[keep].sum())
            count += int(keep.sum())
        return math.exp(min(total / max(count, 1), 50.0)), count

    no_ctx, tokens = ppl(False)
    return {"ppl_no_context": no_ctx, "tokens": tokens,
            "ppl_with_context": ppl(True)[0] if ds.has_context else None}


def eval_gguf(settings: Settings, path: Path, rows: int | None = None) -> dict[str, Any]:
    """`ragkiln eval lm --gguf FILE`: the same held-out perplexities as `eval lm --model`, via llama.cpp."""
    from dataclasses import replace

    from indexer.workspace import Workspace
    from trainer.lm.data import DataSpec, LmDataset, build_dataset, searcher_neighbours

    manifest = gguf_manifest(path)
    training = manifest.get("training") or {}
    held = set(training.get("heldout_doc_ids") or [])
    if not held:
        raise InvalidInput(f"{path} records no held-out documents (was its model trained by `ragkiln train lm`?)")
    ws = Workspace.open(settings)
    chunks = [c for c in ws.store.iter_chunks() if c.doc_id in held]
    if not chunks:
        raise NotFound("none of the model's held-out documents is in this workspace")
    gen = open_generator(settings, path, logits_all=True)
    try:
        spec = DataSpec(**training.get("data_spec", {}))
        if spec.max_row + 1 > gen.n_ctx:
            spec = replace(spec, n_neighbours=0)
        mode = training.get("retrieval_mode") or settings.lm.retrieval_mode
        neighbours = searcher_neighbours(ws.searcher(), spec.n_neighbours, mode) if spec.n_neighbours else None
        tmp = ws.home / "runs" / f"eval-gguf-{Path(path).stem}"
        if tmp.exists():
            shutil.rmtree(tmp)
        build_dataset(chunks, GgufTokenizer(gen), tmp, spec, neighbours)  # type: ignore[arg-type]
        try:
            result = gguf_perplexities(gen, LmDataset(tmp), rows)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    finally:
        gen.close()
    return {**result, "model": str(path), "documents": len(held)}
