"""BEIR evaluation of an embedder before/after training, through the indexer's own evaluator.

The BEIR corpus goes into its own workspace under the training workspace (`eval/beir-NAME`), never
into the user's index; the docstore caches embeddings per embedder id, so the base model's vectors are
computed once and switching back to them costs nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from common.settings import Settings
from indexer.beir_eval import eval_splits


def beir_metrics(settings: Settings, model_path: str, beir_dir: Path, splits: Sequence[str] = ("test",)
                 ) -> dict[str, dict[str, Any]]:
    """{split: nDCG@10 / Recall@100 / MRR@10 of bm25, dense and hybrid retrieval} with `model_path` as embedder."""
    home = Path(settings.home).expanduser().resolve() / "eval" / f"beir-{Path(beir_dir).resolve().name}"
    eval_settings = settings.model_copy(update={"home": home})
    return eval_splits(eval_settings, Path(beir_dir), splits, mode="all", embedder=model_path, progress=False)
