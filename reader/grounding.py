"""Whether a retrieved passage supports an answer to the question: the refusal signal (issue 27).

The rule served before (dense cosine >= 0.3, else BM25 >= 3.0) let most off-topic questions through:
MiniLM gives unrelated English sentences cosines around 0.3, and a raw BM25 score means nothing across
questions. This signal uses only what retrieval already computed, plus the question's term weights
from the BM25 index (no model call):

- `dense`: the passage's dense cosine;
- `coverage`: the IDF-weighted share of the question's terms that the passage (with its title) holds,
  a term the corpus never uses weighing the most (`BM25Index.term_weights`). "What is the capital of
  France?" against the Python docs: "franc" is nowhere, so no passage covers more than a sliver;
- `sentence_coverage`: the same share held by the passage's best sentence (with the title): the
  sentence that answers a question tends to hold most of its terms together, while a long passage on a
  neighbouring subject collects them one by one across sentences;
- `missing`: the weight of the question's heaviest term that the passage lacks, as a share of all its
  terms' weight. A question's rarest term usually names what it is about ("Where does the Danube end?"
  against a passage on the Rhine: rivers, seas and countries match, the Danube does not).

The question's own function words (who, which, did, how many, the adjective of any "how <kind>": how
often, how long, ...; the asker's my, our, your; BM25 keeps them, its stop list is short) are left out:
they say how a question is asked, not what about. A manual that says "every Monday" and never "often"
made "How often is the forklift inspected?" miss its heaviest term and be refused. In a small corpus
that never says "who" it would be the heaviest term every passage lacks; an encyclopedia rarely says
"should" or "do", which made the style of a how-to question pass for evidence that it is off-topic; and a
reference manual rarely says "my": "How do I link a library into my target?" was refused with the right
page first.

A passage supports the question when `bias + w_dense * dense + w_coverage * coverage + w_sentence *
sentence_coverage - w_missing * missing >= 0`; without a dense score (BM25-only retrieval) when
`sentence_coverage - lexical_missing * missing` reaches `min_coverage`. `bench/refusal.py` fits the
weights (logistic models; it chooses which features carry weight) on SQuAD v1.1 dev questions (their
gold paragraphs) against off-topic questions, on fit halves only; the constants are the defaults of
`server.grounding_*`, and bench/results/refusal.json holds the data and the rates on the evaluation
halves. They were fitted with the default MiniLM embedder: another embedder's cosines sit elsewhere, so
refit them after switching.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Protocol

from common.settings import ServerConfig
from indexer.bm25 import tokenize
from indexer.chunking import sentence_spans
from indexer.types import Hit
from reader.question import HOW_KINDS


# Interrogatives, auxiliaries, request words and the asker's pronouns: how a question is asked, not what it is about
# (English).
QUESTION_WORDS = ("who whom whose what which when where why how whichever whatever "
                  "do does did done doing has have had having am were been being can could shall should will would "
                  "may might must many much tell explain describe "
                  "me my mine myself we us our ours ourselves you your yours yourself yourselves")


@cache
def _question_stems(language: str) -> frozenset[str]:
    return frozenset(tokenize(QUESTION_WORDS, language))


_HOW_KIND = re.compile(r"\bhow\s+(?:" + "|".join(sorted(HOW_KINDS)) + r")\b", re.IGNORECASE)


def asked_about(question: str) -> str:
    """The question as its terms are weighed: "how <kind>" kept as "how" (a kind of answer, not a subject)."""
    return _HOW_KIND.sub("how", question)


class TermWeighter(Protocol):
    """What the signal needs from the BM25 index (indexer.bm25.BM25Index)."""

    language: str

    def term_weights(self, query: str) -> dict[str, float]: ...


@dataclass(frozen=True)
class Evidence:
    """The features of one passage for one question (shares in [0, 1])."""

    dense: float | None  # cosine; None without a dense score
    coverage: float  # IDF-weighted share of the question's terms found in the passage or its title
    sentence_coverage: float = 0.0  # the same for the passage's best sentence (with the title)
    missing: float = 0.0  # the heaviest question term absent from passage and title, as a share of the weight


@dataclass(frozen=True)
class GroundingRule:
    bias: float
    w_dense: float
    w_coverage: float
    min_coverage: float  # a passage without a dense score (BM25-only retrieval)
    w_sentence: float = 0.0
    w_missing: float = 0.0  # subtracted: a missing heavy term speaks against the passage
    lexical_missing: float = 0.0  # the same without a dense score, relative to the sentence coverage

    @classmethod
    def of(cls, cfg: ServerConfig) -> "GroundingRule":
        return cls(cfg.grounding_bias, cfg.grounding_dense_weight, cfg.grounding_coverage_weight,
                   cfg.grounding_min_coverage, cfg.grounding_sentence_weight, cfg.grounding_missing_weight,
                   cfg.grounding_lexical_missing_weight)

    def logit(self, ev: Evidence) -> float:
        """>= 0: the passage supports an answer."""
        if ev.dense is None:
            return ev.sentence_coverage - self.lexical_missing * ev.missing - self.min_coverage
        return (self.bias + self.w_dense * ev.dense + self.w_coverage * ev.coverage
                + self.w_sentence * ev.sentence_coverage - self.w_missing * ev.missing)

    def supports(self, ev: Evidence) -> bool:
        return self.logit(ev) >= 0.0


def passage_evidence(hit: Hit, weights: Mapping[str, float], language: str = "english") -> Evidence:
    """`weights`: the question's term weights (`BM25Index.term_weights`); a question without terms (only
    stop words) has no lexical evidence."""
    skip = _question_stems(language)
    weights = {t: w for t, w in weights.items() if t not in skip}
    total = sum(weights.values())
    dense = hit.scores.get("dense")
    if total <= 0:
        return Evidence(dense, 0.0)
    text = hit.chunk.text
    title = set(tokenize(hit.chunk.title, language)) if hit.chunk.title else set()
    sentences = [set(tokenize(text[s:e], language)) for s, e in sentence_spans(text)]
    have = title.union(*sentences)

    def share(terms: set[str]) -> float:
        return sum(w for t, w in weights.items() if t in terms) / total

    best = max((share(title | s) for s in sentences), default=share(title))
    missing = max((w for t, w in weights.items() if t not in have), default=0.0) / total
    return Evidence(dense, share(have), best, missing)


def relevant_hits(hits: Sequence[Hit], question: str, terms: TermWeighter, cfg: ServerConfig) -> list[Hit]:
    """The passages that support an answer to `question` (the rule above, constants `cfg.grounding_*`):
    none, and the answer is NO_ANSWER with `grounded: false`. `terms`: the BM25 index the hits came from."""
    rule = GroundingRule.of(cfg)
    weights = terms.term_weights(asked_about(question))
    # With dense retrieval on, a hit without a cosine is one the dense side did not rank among its candidates:
    # it does not count. Only BM25-only retrieval leaves coverage alone to decide.
    dense_on = any("dense" in h.scores for h in hits)
    return [h for h in hits if (not dense_on or "dense" in h.scores)
            and rule.supports(passage_evidence(h, weights, terms.language))]
