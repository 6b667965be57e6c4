"""Whether a retrieved passage supports an answer to the question: the refusal signal (issue 27).

The rule served before (dense cosine >= 0.3, else BM25 >= 3.0) let most off-topic questions through:
MiniLM gives unrelated English sentences cosines around 0.3, and a raw BM25 score means nothing across
questions. This signal uses only what retrieval already computed, plus the question's term weights
from the BM25 index (no model call):

- `dense`: the passage's dense cosine;
- `coverage`: the IDF-weighted share of the question's terms that the passage (with its title) holds,
  a term the corpus never uses weighing the most (`BM25Index.term_weights`). "What is the capital of
  France?" against the Python docs: "franc" is nowhere, so no passage covers more than a sliver.

A passage supports the question when `bias + w_dense * dense + w_coverage * coverage >= 0`; without a
dense score (BM25-only retrieval) when its coverage reaches `min_coverage`. `bench/refusal.py` fitted
both on SQuAD v1.1 dev questions (their gold paragraphs) against off-topic questions, on fit halves
only; the constants are the defaults of `server.grounding_*`, and bench/results/refusal.json holds the
data and the rates on the evaluation halves. They were fitted with the default MiniLM embedder: another
embedder's cosines sit elsewhere, so refit them after switching.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from common.settings import ServerConfig
from indexer.bm25 import tokenize
from indexer.chunking import index_text
from indexer.types import Hit


class TermWeighter(Protocol):
    """What the signal needs from the BM25 index (indexer.bm25.BM25Index)."""

    language: str

    def term_weights(self, query: str) -> dict[str, float]: ...


@dataclass(frozen=True)
class Evidence:
    """The features of one passage for one question."""

    dense: float | None  # cosine; None without a dense score
    coverage: float  # IDF-weighted share of the question's terms found in the passage, in [0, 1]


@dataclass(frozen=True)
class GroundingRule:
    bias: float
    w_dense: float
    w_coverage: float
    min_coverage: float  # a passage without a dense score (BM25-only retrieval)

    @classmethod
    def of(cls, cfg: ServerConfig) -> "GroundingRule":
        return cls(cfg.grounding_bias, cfg.grounding_dense_weight, cfg.grounding_coverage_weight,
                   cfg.grounding_min_coverage)

    def logit(self, ev: Evidence) -> float:
        """>= 0: the passage supports an answer."""
        if ev.dense is None:
            return ev.coverage - self.min_coverage
        return self.bias + self.w_dense * ev.dense + self.w_coverage * ev.coverage

    def supports(self, ev: Evidence) -> bool:
        return self.logit(ev) >= 0.0


def passage_evidence(hit: Hit, weights: Mapping[str, float], language: str = "english") -> Evidence:
    """`weights`: the question's term weights (`BM25Index.term_weights`); a question without terms (only
    stop words) has no lexical evidence."""
    total = sum(weights.values())
    dense = hit.scores.get("dense")
    if total <= 0:
        return Evidence(dense, 0.0)
    have = set(tokenize(index_text(hit.chunk.title, hit.chunk.text), language))
    return Evidence(dense, sum(w for t, w in weights.items() if t in have) / total)
