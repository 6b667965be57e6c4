"""Test-wide setup: offline, deterministic, and a shared workspace over a tiny fixture corpus."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# The default (auto) exports the embedder to int8 once per workspace, about 30 s: tests that are not about the
# backends embed with torch, and the backend tests ask for theirs.
os.environ.setdefault("RAGKILN_INDEXER__EMBED_BACKEND", "torch")

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "samples" / "python-docs"
DATASETS = ROOT.parent / "shared" / "datasets"

FIXTURE_DOCS = {
    "pets/cats.txt": "Cats are small carnivorous mammals. They sleep for most of the day.\n\n"
                     "A cat purrs when content. Domestic cats were first kept in ancient Egypt.",
    "pets/dogs.md": "# Dogs\n\nDogs are loyal companions. They were domesticated from wolves.\n\n"
                    "A dog barks to warn its family. Training a puppy takes patience.",
    "space/mars.txt": "Mars is the fourth planet from the Sun. Its red colour comes from iron oxide.\n\n"
                      "NASA landed the Perseverance rover on Mars in 2021.",
    "space/moon.html": "<html><head><title>The Moon</title><script>var x=1;</script></head><body>"
                       "<h1>The Moon</h1><p>The Moon orbits the Earth every 27 days.</p>"
                       "<p>Neil Armstrong walked on the Moon in 1969.</p></body></html>",
    "cooking/bread.txt": "Bread is made from flour, water, yeast and salt. Dough rises as yeast ferments sugars.\n\n"
                         "Bake the loaf in a hot oven until the crust is brown.",
}


def write_corpus(root: Path, docs: dict[str, str] = FIXTURE_DOCS) -> Path:
    for rel, text in docs.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text, encoding="utf-8")
    return root


@pytest.fixture
def corpus_dir(tmp_path: Path) -> Path:
    return write_corpus(tmp_path / "corpus")


@pytest.fixture
def settings_for(tmp_path: Path):  # type: ignore[no-untyped-def]
    """Build Settings for a workspace under tmp_path (through the same path the CLI uses)."""
    from common.settings import load_settings

    def make(**overrides):  # type: ignore[no-untyped-def]
        overrides.setdefault("home", tmp_path / "ws")
        return load_settings(overrides)

    return make


@pytest.fixture(scope="session")
def built_workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A workspace with the fixture corpus ingested once (real MiniLM), copied per test that mutates it."""
    from common.settings import load_settings
    from indexer import service

    root = tmp_path_factory.mktemp("built")
    corpus = write_corpus(root / "corpus")
    home = root / "ws"
    service.ingest(load_settings({"home": home}), [corpus], progress=False)
    return home


@pytest.fixture
def workspace_copy(built_workspace: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "ws-copy"
    shutil.copytree(built_workspace, dst)
    return dst
