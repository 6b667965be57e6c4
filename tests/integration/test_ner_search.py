"""Entities through ingest and search: filters inside retrieval, facets, `ragkiln entities`, --no-ner.

Uses the real all-MiniLM-L6-v2 embedder (installed offline) and a blank English pipeline with a
gazetteer as the enricher, selected through the same settings path users use.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.main import app

PATTERNS = [
    {"label": "ORG", "pattern": "Pfizer"},
    {"label": "ORG", "pattern": "Moderna"},
    {"label": "DRUG", "pattern": "aspirin"},
]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("ner_search")
    docs = root / "docs"
    docs.mkdir()
    # Many documents about the weather, none naming a company...
    for i in range(12):
        (docs / f"weather{i}.txt").write_text(
            f"Weather report {i}: heavy rain and strong wind are expected tomorrow, the forecast says more rain.\n"
        )
    # ...and a few naming Pfizer, about something else entirely.
    for i in range(4):
        (docs / f"pharma{i}.txt").write_text(f"Pfizer reported quarterly earnings {i}; its aspirin sales grew.\n")
    (docs / "moderna.txt").write_text("Moderna and Pfizer compete on vaccines, and some rain fell at the meeting.\n")
    patterns = root / "patterns.jsonl"
    patterns.write_text("\n".join(json.dumps(p) for p in PATTERNS) + "\n")
    env = {"RAGKILN_NER__MODEL": "blank:en", "RAGKILN_NER__PATTERNS": str(patterns), "HF_HUB_OFFLINE": "1"}
    ws = root / "ws"
    res = CliRunner().invoke(app, ["--workspace", str(ws), "ingest", str(docs), "--json"], env=env)
    assert res.exit_code == 0, res.output
    return {"ws": ws, "docs": docs, "root": root}


def run(*args: str) -> dict:
    res = CliRunner().invoke(app, [*args, "--json"], env={"HF_HUB_OFFLINE": "1"})
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout)


def test_filtered_search_returns_k_hits_where_a_post_filter_returns_fewer(corpus: dict[str, Path]) -> None:
    ws = str(corpus["ws"])
    plain = run("--workspace", ws, "search", "rain forecast tomorrow", "-k", "3")
    assert len(plain["hits"]) == 3
    post_filtered = [h for h in plain["hits"] if any(e["norm"] == "pfizer" for e in h["entities"])]
    assert len(post_filtered) < 3

    filt = run("--workspace", ws, "search", "rain forecast tomorrow", "-k", "3", "--entity", "ORG:Pfizer")
    assert len(filt["hits"]) == 3
    assert all(any(e["label"] == "ORG" and e["norm"] == "pfizer" for e in h["entities"]) for h in filt["hits"])
    assert filt["filters"] == ["ORG:pfizer"]
    assert filt["facets"]["ORG"]["values"][0] == {"value": "pfizer", "count": 3}
    # The rain-mentioning Pfizer document ranks first among the allowed ones.
    assert filt["hits"][0]["doc_id"].endswith("moderna.txt")


def test_filters_combine_with_and(corpus: dict[str, Path]) -> None:
    ws = str(corpus["ws"])
    r = run("--workspace", ws, "search", "vaccines", "-k", "5", "--entity", "ORG:pfizer", "--entity", "ORG:moderna")
    assert [h["doc_id"].rsplit("/", 1)[-1] for h in r["hits"]] == ["moderna.txt"]
    r = run("--workspace", ws, "search", "vaccines", "-k", "5", "--entity", "ORG:moderna", "--entity", "DRUG")
    assert r["hits"] == []


def test_entity_offsets_point_into_the_document(corpus: dict[str, Path]) -> None:
    r = run("--workspace", str(corpus["ws"]), "search", "aspirin sales", "-k", "1", "--entity", "DRUG:aspirin")
    (hit,) = r["hits"]
    drug = next(e for e in hit["entities"] if e["label"] == "DRUG")
    assert hit["text"][drug["start"] : drug["end"]] == "aspirin"


def test_entities_command_counts(corpus: dict[str, Path]) -> None:
    r = run("--workspace", str(corpus["ws"]), "entities", "--top", "2")
    assert r["entities"][0] == {"label": "ORG", "value": "pfizer", "count": 5}
    assert len(r["entities"]) == 2
    r = run("--workspace", str(corpus["ws"]), "entities", "--label", "DRUG")
    assert r["entities"] == [{"label": "DRUG", "value": "aspirin", "count": 4}]


def test_bad_filter_is_exit_2(corpus: dict[str, Path]) -> None:
    res = CliRunner().invoke(app, ["--workspace", str(corpus["ws"]), "search", "x", "--entity", "ORG:"])
    assert res.exit_code == 2 and "entity filter" in res.stderr


def test_no_ner_stores_no_entities(corpus: dict[str, Path]) -> None:
    ws = str(corpus["root"] / "ws_plain")
    env = {"RAGKILN_NER__MODEL": "en_core_web_nope", "HF_HUB_OFFLINE": "1"}  # never loaded with --no-ner
    res = CliRunner().invoke(app, ["--workspace", ws, "ingest", str(corpus["docs"]), "--no-ner", "--json"], env=env)
    assert res.exit_code == 0, res.output
    assert run("--workspace", ws, "entities")["entities"] == []
    res = CliRunner().invoke(app, ["--workspace", ws, "ingest", str(corpus["docs"])], env=env)
    assert res.exit_code == 6 and "--no-ner" in res.stderr


def test_reingest_enriches_only_changed_documents(tmp_path: Path) -> None:
    from common.settings import load_settings
    from indexer import service
    from ner.enrich import SpacyEnricher

    patterns = tmp_path / "p.jsonl"
    patterns.write_text("\n".join(json.dumps(p) for p in PATTERNS) + "\n")
    docs = tmp_path / "docs"
    docs.mkdir()
    for i in range(3):
        (docs / f"d{i}.txt").write_text(f"Document {i} says Pfizer sells aspirin.\n")
    settings = load_settings({"home": tmp_path / "ws", "ner": {"model": "blank:en", "patterns": str(patterns)}})
    seen: list[str] = []
    inner = SpacyEnricher.from_config(settings.ner)

    def enricher(texts):  # type: ignore[no-untyped-def]
        seen.extend(texts)
        return inner(texts)

    service.ingest(settings, [docs], enricher=enricher, progress=False)
    assert len(seen) == 3
    seen.clear()
    (docs / "d1.txt").write_text("Document 1 now names Moderna instead.\n")
    service.ingest(settings, [docs], enricher=enricher, progress=False)
    assert seen == ["Document 1 now names Moderna instead."]
    from indexer.workspace import Workspace

    counts = {(lab, v): c for lab, v, c in Workspace.open(settings).store.entity_counts()}
    assert counts == {("ORG", "pfizer"): 2, ("DRUG", "aspirin"): 2, ("ORG", "moderna"): 1}
