"""The one save/load pair for LM checkpoints (the GGUF exporter calls `load_model` too).

A checkpoint is an artifact directory:
    model.pt        state_dict of `Transformer` (Meta/llama2.c names; no output.weight when tied)
    tokenizer.model SentencePiece model (see trainer/lm/tokenizer.py for ids and specials)
    manifest.json   kind "lm", format 1: model_args, tokenizer, prompt_format, training config,
                    step, metrics, n_params, sha256 of every file
    train_state.pt  optional: optimizer state, step, loss history, for exact resume
    (plus any extra files given, e.g. the loss curve PNG and the JSONL log)
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import torch

from common.artifacts import MANIFEST, atomic_artifact_dir, atomic_write_text, make_manifest, read_manifest, verify_files
from common.errors import ArtifactCorrupt, Conflict, ManifestMismatch
from trainer.lm.model import ModelArgs, Transformer
from trainer.lm.tokenizer import PROMPT_FORMAT, Tokenizer

KIND = "lm"
FORMAT_VERSION = 1
MODEL_FILE = "model.pt"
TOKENIZER_FILE = "tokenizer.model"
STATE_FILE = "train_state.pt"


def save_checkpoint(
    out_dir: Path,
    model: Transformer,
    tokenizer: Tokenizer,
    *,
    training: dict[str, Any] | None = None,
    metrics: dict[str, Any] | None = None,
    step: int = 0,
    train_state: dict[str, Any] | None = None,
    extra_files: list[Path] | None = None,
    prompt_format: str = PROMPT_FORMAT,
) -> Path:
    """Write (atomically replace) a checkpoint directory; returns its path.

    Only an empty/missing directory or an earlier LM checkpoint is replaced, never anything else.
    """
    check_replaceable(Path(out_dir))
    if tokenizer.vocab_size != model.args.vocab_size:
        raise ArtifactCorrupt(
            f"tokenizer has {tokenizer.vocab_size} pieces but the model was built for {model.args.vocab_size}"
        )
    manifest = make_manifest(
        KIND,
        FORMAT_VERSION,
        architecture="llama",
        model_args=model.args.to_dict(),
        n_params=model.num_params(),
        tokenizer=tokenizer.describe(),
        prompt_format=prompt_format,
        training=training or {},
        metrics=metrics or {},
        step=step,
    )
    with atomic_artifact_dir(Path(out_dir), manifest) as tmp:
        state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        torch.save(state, tmp / MODEL_FILE)
        tokenizer.save(tmp / TOKENIZER_FILE)
        if train_state is not None:
            torch.save(train_state, tmp / STATE_FILE)
        for f in extra_files or []:
            if Path(f).exists():
                shutil.copyfile(f, tmp / Path(f).name)
    return Path(out_dir)


def record_metrics(directory: Path, **metrics: Any) -> dict[str, Any]:
    """Add measurements made after training to a checkpoint's manifest (rewritten atomically; the
    manifest is not among the hashed files, so the checkpoint still verifies). Returns the manifest."""
    manifest = read_manifest(Path(directory), KIND, FORMAT_VERSION)
    manifest["metrics"] = {**(manifest.get("metrics") or {}), **metrics}
    atomic_write_text(Path(directory) / MANIFEST, json.dumps(manifest, indent=2, sort_keys=True))
    return manifest


def check_replaceable(out_dir: Path) -> None:
    """Refuse to overwrite a directory that holds something other than an LM checkpoint."""
    if not out_dir.exists():
        return
    if not out_dir.is_dir():
        raise Conflict(f"{out_dir} exists and is not a directory")
    if not any(out_dir.iterdir()):
        return
    try:
        read_manifest(out_dir, KIND)
    except (ArtifactCorrupt, ManifestMismatch) as e:
        raise Conflict(f"{out_dir} is not an LM checkpoint; refusing to replace it ({e})") from e


def load_model(directory: Path, verify: bool = True) -> tuple[Transformer, Tokenizer, dict[str, Any]]:
    """Rebuild model and tokenizer from a checkpoint; checks kind, format, hashes and shapes."""
    directory = Path(directory)
    manifest = read_manifest(directory, KIND, FORMAT_VERSION)
    if verify:
        verify_files(directory, manifest)
    args = ModelArgs.from_dict(manifest["model_args"])
    tokenizer = Tokenizer.load(directory / TOKENIZER_FILE)
    if tokenizer.vocab_size != args.vocab_size:
        raise ArtifactCorrupt(f"{directory}: tokenizer size {tokenizer.vocab_size} != model vocab {args.vocab_size}")
    try:
        state = torch.load(directory / MODEL_FILE, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types for a damaged pickle/zip
        raise ArtifactCorrupt(f"{directory / MODEL_FILE} is unreadable: {e}") from e
    model = Transformer(args)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise ArtifactCorrupt(f"{directory}: weights do not match the model args: {str(e).splitlines()[0]}") from e
    model.eval()
    return model, tokenizer, manifest


def load_train_state(directory: Path) -> dict[str, Any] | None:
    """Optimizer/step state saved for resuming, or None when the checkpoint has none."""
    path = Path(directory) / STATE_FILE
    if not path.exists():
        return None
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:
        raise ArtifactCorrupt(f"{path} is unreadable: {e}") from e
