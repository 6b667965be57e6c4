"""Entity-level exact-match precision, recall and F1, computed as conlleval does.

A predicted entity counts as correct only when its start, end and label all equal a gold entity's.
Precision = correct / predicted, recall = correct / gold, F1 their harmonic mean; per label the same
counts restricted to that label. Pretrained OntoNotes pipelines are scored against CoNLL data
through a label map (labels mapped to None are dropped from predictions).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from common.errors import InvalidInput, NotFound

if TYPE_CHECKING:
    from spacy.language import Language

    from ner.readers import NerExample

Span = tuple[int, int, str]

# OntoNotes 5 → CoNLL-2003; numeric and temporal types have no CoNLL counterpart and are dropped.
ONTONOTES_TO_CONLL: dict[str, str | None] = {
    "PERSON": "PER",
    "GPE": "LOC",
    "LOC": "LOC",
    "FAC": "LOC",
    "ORG": "ORG",
    "NORP": "MISC",
    "EVENT": "MISC",
    "PRODUCT": "MISC",
    "WORK_OF_ART": "MISC",
    "LAW": "MISC",
    "LANGUAGE": "MISC",
    "DATE": None,
    "TIME": None,
    "PERCENT": None,
    "MONEY": None,
    "QUANTITY": None,
    "ORDINAL": None,
    "CARDINAL": None,
}


def prf(correct: int, predicted: int, gold: int) -> dict[str, float | int]:
    p = correct / predicted if predicted else 0.0
    r = correct / gold if gold else 0.0
    f = 2 * p * r / (p + r) if p + r else 0.0
    return {"precision": p, "recall": r, "f1": f, "correct": correct, "predicted": predicted, "gold": gold}


def score_spans(gold: Sequence[Iterable[Span]], pred: Sequence[Iterable[Span]]) -> dict[str, Any]:
    """Overall and per-label scores over parallel lists (one set of spans per text)."""
    if len(gold) != len(pred):
        raise InvalidInput(f"{len(gold)} gold texts but {len(pred)} predicted ones")
    n_gold: Counter[str] = Counter()
    n_pred: Counter[str] = Counter()
    n_ok: Counter[str] = Counter()
    for g, p in zip(gold, pred, strict=True):
        gs, ps = set(g), set(p)
        n_gold.update(lab for _s, _e, lab in gs)
        n_pred.update(lab for _s, _e, lab in ps)
        n_ok.update(lab for _s, _e, lab in gs & ps)
    labels = sorted(set(n_gold) | set(n_pred))
    return {
        "overall": prf(sum(n_ok.values()), sum(n_pred.values()), sum(n_gold.values())),
        "per_label": {lab: prf(n_ok[lab], n_pred[lab], n_gold[lab]) for lab in labels},
    }


def map_labels(spans: Iterable[Span], label_map: Mapping[str, str | None] | None) -> list[Span]:
    """Rename labels through the map; a label mapped to None is dropped, one absent is kept."""
    if not label_map:
        return list(spans)
    out = []
    for s, e, lab in spans:
        new = label_map.get(lab, lab)
        if new is not None:
            out.append((s, e, new))
    return out


def read_label_map(path: Path) -> dict[str, str | None]:
    """A JSON object {"MODEL_LABEL": "DATA_LABEL" | null}."""
    path = Path(path)
    if not path.is_file():
        raise NotFound(f"label map {path} does not exist")
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise InvalidInput(f"{path}: invalid JSON: {e.msg}") from e
    if not isinstance(obj, dict) or not all(isinstance(k, str) and (v is None or isinstance(v, str)) for k, v in obj.items()):
        raise InvalidInput(f"{path}: a label map is a JSON object of label -> label or null")
    return obj


def default_label_map(model_labels: Iterable[str], data_labels: Iterable[str]) -> dict[str, str | None] | None:
    """The OntoNotes→CoNLL map when the model speaks OntoNotes and the data does not; else none."""
    model, data = set(model_labels), set(data_labels)
    onto_only = {"PERSON", "GPE", "NORP", "CARDINAL"}
    if model & onto_only and not data & onto_only:
        return dict(ONTONOTES_TO_CONLL)
    return None


def predict_spans(nlp: Language, examples: Sequence[NerExample], batch_size: int = 256) -> list[list[Span]]:
    """Run the pipeline on the examples (gold tokens kept where the data has them)."""
    from spacy.tokens import Doc

    def docs() -> Iterable[Any]:
        for ex in examples:
            if ex.words is not None:
                yield Doc(nlp.vocab, words=list(ex.words), spaces=[True] * (len(ex.words) - 1) + [False])
            else:
                yield nlp.make_doc(ex.text)

    return [[(e.start_char, e.end_char, e.label_) for e in doc.ents] for doc in nlp.pipe(docs(), batch_size=batch_size)]


def evaluate_examples(
    nlp: Language, examples: Sequence[NerExample], label_map: Mapping[str, str | None] | None = None
) -> dict[str, Any]:
    """Score a pipeline on annotated examples; `label_map` None picks the default when it applies."""
    from ner.pipeline import ner_labels
    from ner.readers import labels_of

    if label_map is None:
        label_map = default_label_map(ner_labels(nlp), labels_of(examples))
    pred = [map_labels(p, label_map) for p in predict_spans(nlp, examples)]
    gold = [list(ex.spans) for ex in examples]
    result = score_spans(gold, pred)
    result["n_texts"] = len(examples)
    result["label_map"] = dict(label_map) if label_map else None
    return result


def evaluate_file(
    data: Path, model: str, label_map_path: Path | None = None, patterns: Path | None = None
) -> dict[str, Any]:
    """`ragkiln ner eval`: load the data and the model, score, return the JSON-able result."""
    from ner.pipeline import load_pipeline, resolve_model_name
    from ner.readers import read_examples

    examples = read_examples(Path(data))
    if not examples:
        raise InvalidInput(f"{data} holds no annotated texts")
    label_map = read_label_map(label_map_path) if label_map_path else None
    nlp = load_pipeline(model, patterns=patterns)
    result = evaluate_examples(nlp, examples, label_map)
    result["model"] = resolve_model_name(model)
    result["data"] = str(data)
    return result


def format_scores(result: Mapping[str, Any]) -> str:
    """A conlleval-like table for humans."""
    o = result["overall"]
    lines = [
        f"texts: {result.get('n_texts', '?')}  gold: {o['gold']}  predicted: {o['predicted']}  correct: {o['correct']}",
        f"{'label':<12}{'precision':>10}{'recall':>10}{'f1':>10}{'gold':>8}",
        f"{'overall':<12}{o['precision']:>10.4f}{o['recall']:>10.4f}{o['f1']:>10.4f}{o['gold']:>8}",
    ]
    for lab, s in result["per_label"].items():
        lines.append(f"{lab:<12}{s['precision']:>10.4f}{s['recall']:>10.4f}{s['f1']:>10.4f}{s['gold']:>8}")
    return "\n".join(lines)
