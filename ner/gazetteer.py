"""Gazetteer: an EntityRuler from a JSONL file of spaCy patterns, placed before the statistical NER.

Each line is `{"label": "DRUG", "pattern": "aspirin"}` (phrase) or `{"label": ..., "pattern":
[{"LOWER": "tumor"}, {"LOWER": "necrosis"}, ...]}` (token pattern), optionally with an `"id"`.
Entities the ruler sets are kept by the statistical `ner`, which only labels the remaining tokens.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from common.errors import InvalidInput
from common.jsonl import iter_jsonl

if TYPE_CHECKING:
    from spacy.language import Language


def read_patterns(path: Path) -> list[dict[str, Any]]:
    """Parse and check a patterns file; errors name the line."""
    patterns: list[dict[str, Any]] = []
    for where, obj in iter_jsonl(path, "gazetteer patterns file"):
        if not isinstance(obj, dict) or not isinstance(obj.get("label"), str) or not obj["label"]:
            raise InvalidInput(f"{where}: a pattern needs a non-empty string 'label'")
        pat = obj.get("pattern")
        ok_phrase = isinstance(pat, str) and pat.strip()
        ok_tokens = isinstance(pat, list) and pat and all(isinstance(t, dict) for t in pat)
        if not (ok_phrase or ok_tokens):
            raise InvalidInput(f"{where}: 'pattern' must be a non-empty string or a list of token objects")
        patterns.append(obj)
    if not patterns:
        raise InvalidInput(f"gazetteer patterns file {path} holds no patterns")
    return patterns


def check_phrase_attr(attr: str) -> str:
    """The token attribute phrase patterns match on: ORTH (exact), LOWER or NORM."""
    if attr not in ("ORTH", "LOWER", "NORM"):
        raise InvalidInput(f"gazetteer phrase attribute must be ORTH, LOWER or NORM, not {attr!r}")
    return attr


def add_entity_ruler(nlp: Language, path: Path, phrase_attr: str = "ORTH") -> Any:
    """Add an `entity_ruler` with the file's patterns before `ner` (or last when there is none)."""
    patterns = read_patterns(path)
    where = {"before": "ner"} if "ner" in nlp.pipe_names else {}
    ruler = nlp.add_pipe(
        "entity_ruler",
        config={"phrase_matcher_attr": check_phrase_attr(phrase_attr), "validate": True, "overwrite_ents": False},
        **where,
    )
    try:
        ruler.add_patterns(patterns)
    except (ValueError, KeyError) as e:  # spaCy's pattern validation
        nlp.remove_pipe("entity_ruler")
        raise InvalidInput(f"{path}: invalid pattern: {str(e).splitlines()[0]}") from e
    return ruler
