"""docs/configuration.md is the settings model rendered; every field documents itself."""

from __future__ import annotations

from pathlib import Path

from common.settings import Section, Settings
from common.settings_reference import field_rows, render_settings_reference

DOC = Path(__file__).resolve().parents[3] / "docs" / "configuration.md"


def _sections() -> list[type[Section]]:
    return [f.annotation for f in Settings.model_fields.values()
            if isinstance(f.annotation, type) and issubclass(f.annotation, Section)]


def test_the_committed_reference_matches_the_settings_model():
    assert DOC.read_text(encoding="utf-8") == render_settings_reference(), (
        "docs/configuration.md is stale: run `python -m common.settings_reference docs/configuration.md`")


def test_every_field_has_a_description_and_appears_with_its_env_name():
    text = render_settings_reference()
    for section in _sections():
        name = next(n for n, f in Settings.model_fields.items() if f.annotation is section)
        for field, _type, _default, _bounds, desc in field_rows(section):
            assert desc, f"{name}.{field} has no description"
            assert f"`RAGKILN_{name.upper()}__{field.upper()}`" in text
    for field, *_rest, desc in field_rows(Settings):
        is_section = Settings.model_fields[field].annotation in _sections()
        assert desc or is_section, f"{field} has no description"


def test_types_defaults_and_bounds_are_rendered():
    rows = {r[0]: r for r in field_rows(Settings.model_fields["indexer"].annotation)}
    name, type_, default, bounds, _ = rows["chunk_tokens"]
    assert (type_, default, bounds) == ("int", "`128`", "≥ 16, ≤ 8192")
    assert rows["fusion"][1] == "'rrf' \\| 'weighted'"
    lm = {r[0]: r for r in field_rows(Settings.model_fields["lm"].annotation)}
    assert lm["steps"][1] == "int \\| None" and lm["steps"][2] == "`None`"
