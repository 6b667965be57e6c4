"""Fixtures for trainer.lm tests: a small real corpus, a tokenizer trained on it, a tiny Llama."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from trainer.lm.model import ModelArgs
from trainer.lm.tokenizer import Tokenizer, train_tokenizer

PARAGRAPHS = {
    "tea": "Tea is an aromatic beverage prepared by pouring hot water over cured leaves of Camellia sinensis. "
    "After plain water, it is the most widely consumed drink in the world. Green tea is not oxidised.",
    "rust": "Rust is a systems programming language focused on safety and speed. The borrow checker "
    "enforces ownership rules at compile time, so data races cannot happen in safe code.",
    "moon": "The Moon is Earth's only natural satellite. It orbits at an average distance of 384,400 km "
    "and always shows the same face to Earth because its rotation is tidally locked.",
    "bees": "Honey bees live in colonies with a single queen, thousands of workers and a few drones. "
    "Workers perform a waggle dance to tell others where flowers with nectar can be found.",
    "piano": "The piano was invented in Italy by Bartolomeo Cristofori around 1700. Pressing a key makes "
    "a felt hammer strike steel strings, and the dampers stop the sound when the key is released.",
    "rivers": "The Nile flows north through eleven countries into the Mediterranean Sea. For thousands "
    "of years its yearly flood brought silt that made the narrow valley fertile for farming.",
    "sql": "SQLite is an embedded database engine written in C. A write-ahead log lets readers continue "
    "while a single writer appends changes, and a checkpoint later copies them into the database file.",
    "volcano": "A volcano is a rupture in the crust where lava, ash and gases escape. Mount Etna in "
    "Sicily is one of the most active volcanoes in Europe and erupts every few years.",
}


@dataclass(frozen=True)
class FakeChunk:
    doc_id: str
    text: str
    id: int = 0


@pytest.fixture(scope="session")
def corpus_chunks() -> list[FakeChunk]:
    """Two chunks per document (its two halves), so neighbour filtering by document is meaningful."""
    out = []
    for doc, text in PARAGRAPHS.items():
        cut = text.index(". ") + 1
        out.append(FakeChunk(doc, text[:cut], len(out)))
        out.append(FakeChunk(doc, text[cut:].strip(), len(out)))
    return out


@pytest.fixture(scope="session")
def tokenizer() -> Tokenizer:
    return train_tokenizer(list(PARAGRAPHS.values()) * 3, vocab_size=400)


@pytest.fixture
def tiny_args(tokenizer: Tokenizer) -> ModelArgs:
    return ModelArgs(dim=32, n_layers=2, n_heads=4, n_kv_heads=2, vocab_size=tokenizer.vocab_size,
                     hidden_dim=64, max_seq_len=256)
