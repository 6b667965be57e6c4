"""Fixtures for ner/: a gazetteer file and a blank English pipeline with an EntityRuler (no model)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

PATTERNS = [
    {"label": "DRUG", "pattern": "aspirin"},
    {"label": "DRUG", "pattern": "ibuprofen"},
    {"label": "ORG", "pattern": "Pfizer"},
    {"label": "ORG", "pattern": [{"LOWER": "world"}, {"LOWER": "health"}, {"LOWER": "organization"}]},
    {"label": "GENE", "pattern": "TNF alpha"},
]


@pytest.fixture
def patterns_file(tmp_path: Path) -> Path:
    p = tmp_path / "patterns.jsonl"
    p.write_text("\n".join(json.dumps(x) for x in PATTERNS) + "\n", encoding="utf-8")
    return p


@pytest.fixture
def ruler_nlp(patterns_file: Path):  # type: ignore[no-untyped-def]
    from ner.pipeline import load_pipeline

    return load_pipeline("blank:en", patterns=patterns_file)
