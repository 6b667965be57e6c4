"""Six one-sentence documents on unrelated topics: the corpus of the LM integration tests
(`from lm_support import TOPICS, write_topics, ingested`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from common.settings import Settings, load_settings

TOPICS = {
    "tea": "Tea is brewed by pouring hot water over the leaves of Camellia sinensis, grown in China and India.",
    "moon": "The Moon orbits Earth at about 384,400 km and always shows the same face because it is tidally locked.",
    "bees": "Honey bees live in colonies with one queen; workers dance to show where flowers with nectar grow.",
    "piano": "Bartolomeo Cristofori built the first piano in Italy around 1700, with hammers that strike strings.",
    "nile": "The Nile flows north into the Mediterranean Sea, and its floods made the valley fertile in Egypt.",
    "etna": "Mount Etna in Sicily is one of the most active volcanoes in Europe and erupts every few years.",
}


def write_topics(folder: Path) -> Path:
    """One .txt file a topic, its sentence three times."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in TOPICS.items():
        (folder / f"{name}.txt").write_text((text + "\n") * 3)
    return folder


def ingested(root: Path, lm: dict[str, Any]) -> Settings:
    """Settings of a workspace under `root` holding the six topics (no NER, torch embeddings), with `lm`."""
    from indexer import service

    write_topics(root / "docs")
    s = load_settings({"home": root / "ws", "ner": {"enabled": False}, "indexer": {"embed_backend": "torch"},
                       "lm": lm})
    service.ingest(s, [root / "docs"], progress=False)
    return s
