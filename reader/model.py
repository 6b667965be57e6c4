"""The reader's fitted weights: two linear models over named features, stored as one versioned JSON
artifact (`reader/weights.json`, made by `bench/reader.py --fit`).

Each model scores candidates with w·f and turns one question's scores into probabilities with a
softmax over its candidates (a conditional logit: `reader.fit`). The sentence model ranks candidate
sentences; the span model ranks the spans of the best sentences, with the sentence model's log
probability among its features. `load_weights` validates the file and fails loudly
(`ArtifactCorrupt`) on anything it does not recognise.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from common.artifacts import atomic_write_text
from common.errors import ArtifactCorrupt, NotFound

KIND = "ragkiln-reader-weights"
FORMAT_VERSION = 1
DEFAULT_WEIGHTS = Path(__file__).resolve().parent / "weights.json"


@dataclass(frozen=True)
class LinearModel:
    weights: Mapping[str, float]

    def score(self, features: Mapping[str, float]) -> float:
        w = self.weights
        return math.fsum(w[k] * v for k, v in features.items() if k in w)

    def log_probs(self, rows: Sequence[Mapping[str, float]]) -> list[float]:
        """log softmax of the rows' scores (one question's candidates)."""
        scores = [self.score(r) for r in rows]
        if not scores:
            return []
        top = max(scores)
        z = top + math.log(math.fsum(math.exp(s - top) for s in scores))
        return [s - z for s in scores]


@dataclass(frozen=True)
class ReaderSettings:
    """How the reader reads, chosen with the weights (on the fit half's dev articles)."""

    passages: int = 3  # the first passages read (best first); the rest are ignored
    sentences: int = 2  # best sentences whose spans are ranked
    max_tokens: int = 10  # longest candidate span, in tokens


@dataclass(frozen=True)
class ReaderWeights:
    sentence: LinearModel
    span: LinearModel
    settings: ReaderSettings = ReaderSettings()
    manifest: Mapping[str, Any] = field(default_factory=dict)


def weights_to_json(w: ReaderWeights) -> dict[str, Any]:
    return {
        "kind": KIND,
        "format_version": FORMAT_VERSION,
        "manifest": dict(w.manifest),
        "settings": {"passages": w.settings.passages, "sentences": w.settings.sentences,
                     "max_tokens": w.settings.max_tokens},
        "sentence_model": {k: round(v, 6) for k, v in sorted(w.sentence.weights.items())},
        "span_model": {k: round(v, 6) for k, v in sorted(w.span.weights.items())},
    }


def save_weights(w: ReaderWeights, path: Path) -> None:
    atomic_write_text(path, json.dumps(weights_to_json(w), indent=1, ensure_ascii=False) + "\n")


def _model(d: Any, name: str, path: Path) -> LinearModel:
    if not isinstance(d, dict) or not d:
        raise ArtifactCorrupt(f"{path}: {name} has no weights")
    for k, v in d.items():
        if not isinstance(k, str) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise ArtifactCorrupt(f"{path}: {name} weight {k!r} is not a finite number")
    return LinearModel({k: float(v) for k, v in d.items()})


def weights_from_json(d: Any, path: Path) -> ReaderWeights:
    if not isinstance(d, dict) or d.get("kind") != KIND:
        raise ArtifactCorrupt(f"{path} is not a reader weights file (kind {d.get('kind') if isinstance(d, dict) else None!r})")
    if d.get("format_version") != FORMAT_VERSION:
        raise ArtifactCorrupt(f"{path}: format version {d.get('format_version')!r}, this code reads {FORMAT_VERSION}")
    s = d.get("settings") or {}
    try:
        settings = ReaderSettings(passages=int(s["passages"]), sentences=int(s["sentences"]),
                                  max_tokens=int(s["max_tokens"]))
    except (KeyError, TypeError, ValueError) as e:
        raise ArtifactCorrupt(f"{path}: bad settings {s!r}") from e
    if min(settings.passages, settings.sentences, settings.max_tokens) < 1:
        raise ArtifactCorrupt(f"{path}: settings out of range {s!r}")
    return ReaderWeights(_model(d.get("sentence_model"), "sentence_model", path),
                         _model(d.get("span_model"), "span_model", path), settings, d.get("manifest") or {})


def load_weights(path: Path | str | None = None) -> ReaderWeights:
    """The fitted weights at `path` (default: the ones shipped in the package)."""
    p = Path(path) if path is not None else DEFAULT_WEIGHTS
    if not p.is_file():
        raise NotFound(f"reader weights {p} do not exist (fit them with bench/reader.py --fit)")
    try:
        d = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ArtifactCorrupt(f"{p} is not readable JSON: {e}") from e
    return weights_from_json(d, p)
