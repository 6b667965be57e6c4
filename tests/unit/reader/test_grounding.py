"""The refusal signal: which passages support an answer (reader/grounding.py)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from common.settings import ServerConfig
from indexer.bm25 import BM25Index, tokenize
from indexer.types import Chunk, Hit
from reader.grounding import Evidence, GroundingRule, asked_about, passage_evidence, relevant_hits

RESULT = Path(__file__).resolve().parents[3] / "bench" / "results" / "refusal.json"
RULE = GroundingRule(bias=-10.0, w_dense=16.0, w_coverage=8.0, min_coverage=0.55)
# the served shape: dense cosine, best sentence's coverage, heaviest missing term (defaults' rounded values)
SERVED = GroundingRule(bias=-4.0, w_dense=13.0, w_coverage=0.0, min_coverage=0.12, w_sentence=6.0, w_missing=17.0,
                       lexical_missing=2.0)


def hit(cid: int, text: str, dense: float | None = None, bm25: float | None = None, title: str = "") -> Hit:
    scores = {k: v for k, v in (("dense", dense), ("bm25", bm25)) if v is not None}
    return Hit(Chunk(cid, f"d{cid}#x:0", f"doc{cid}", 0, 0, len(text), text, title), 0.03, {k: 1 for k in scores},
               scores)


class Terms:
    """A TermWeighter with fixed weights."""

    language = "english"

    def __init__(self, weights: dict[str, float]) -> None:
        self.weights = weights

    def term_weights(self, query: str) -> dict[str, float]:
        return {t: self.weights.get(t, 1.0) for t in tokenize(query)}


def test_rule_needs_cosine_and_coverage_together():
    assert RULE.supports(Evidence(dense=0.6, coverage=0.5))  # -10 + 9.6 + 4 = 3.6
    assert not RULE.supports(Evidence(dense=0.3, coverage=0.5))  # the old rule's bar: -10 + 4.8 + 4 < 0
    assert not RULE.supports(Evidence(dense=0.55, coverage=0.0))  # similar wording, none of the question's terms
    assert RULE.supports(Evidence(dense=0.45, coverage=0.45))  # -10 + 7.2 + 3.6 = 0.8
    assert RULE.logit(Evidence(dense=0.5, coverage=0.25)) == pytest.approx(0.0)  # the boundary counts


def test_a_missing_heavy_term_outweighs_a_similar_passage():
    # "Where does the Danube river end?" against a passage on the Rhine: river and end match, Danube does not
    on = Evidence(dense=0.55, coverage=0.9, sentence_coverage=0.9, missing=0.0)
    off = Evidence(dense=0.55, coverage=0.6, sentence_coverage=0.6, missing=0.4)
    assert SERVED.supports(on)  # -4 + 7.15 + 5.4 = 8.55
    assert not SERVED.supports(off)  # -4 + 7.15 + 3.6 - 6.8 = -0.05
    # the best sentence counts, not the passage's terms scattered over its sentences
    assert SERVED.logit(Evidence(0.15, 0.9, sentence_coverage=0.9)) > 0 > SERVED.logit(Evidence(0.15, 0.9, 0.3))


def test_without_a_cosine_the_lexical_rule_decides():
    assert RULE.supports(Evidence(dense=None, coverage=0.0, sentence_coverage=0.55))
    assert not RULE.supports(Evidence(dense=None, coverage=0.9, sentence_coverage=0.5))
    assert SERVED.supports(Evidence(dense=None, coverage=0.5, sentence_coverage=0.5, missing=0.1))  # 0.5 - 0.2 >= 0.12
    assert not SERVED.supports(Evidence(dense=None, coverage=0.5, sentence_coverage=0.5, missing=0.2))


def test_coverage_is_the_idf_weighted_share_of_question_terms_in_passage_and_title():
    weights = {"capit": 4.0, "franc": 6.0}
    assert passage_evidence(hit(1, "Paris is a city.", 0.4), weights).coverage == 0.0
    assert passage_evidence(hit(2, "The capital letters.", 0.4), weights).coverage == pytest.approx(0.4)
    ev = passage_evidence(hit(3, "Its capital is Paris.", 0.7, title="France"), weights)
    assert ev.coverage == pytest.approx(1.0) and ev.dense == 0.7
    assert passage_evidence(hit(4, "anything", 0.9), {}).coverage == 0.0  # only stop words asked


def test_sentence_coverage_is_the_best_sentences_share_with_the_title_and_missing_the_heaviest_absent_term():
    weights = {"capit": 4.0, "franc": 6.0, "river": 2.0}
    ev = passage_evidence(hit(1, "France has rivers. Its capital is Paris.", 0.5), weights)
    assert ev.coverage == pytest.approx(1.0) and ev.missing == 0.0
    assert ev.sentence_coverage == pytest.approx(8 / 12)  # "France has rivers." holds franc and river
    titled = passage_evidence(hit(2, "Rivers cross it. Its capital is Paris.", 0.5, title="France"), weights)
    assert titled.sentence_coverage == pytest.approx(10 / 12)  # the title joins every sentence
    gone = passage_evidence(hit(3, "The capital has a river.", 0.5), weights)
    assert gone.missing == pytest.approx(6 / 12) and gone.sentence_coverage == pytest.approx(6 / 12)
    assert passage_evidence(hit(4, "", 0.5), weights).missing == pytest.approx(6 / 12)  # an empty passage lacks all


def test_relevant_hits_keeps_the_passages_that_support_the_question():
    q = "Which module parses command line arguments?"
    terms = Terms({"argument": 5.0, "pars": 5.0, "command": 3.0, "line": 2.0, "modul": 1.0})
    on = hit(1, "The argparse module parses command line arguments.", dense=0.62)
    near = hit(2, "A module is a file of definitions.", dense=0.45)  # few of the terms
    assert [h.chunk.id for h in relevant_hits([on, near], q, terms, ServerConfig())] == [1]
    assert relevant_hits([near], q, terms, ServerConfig()) == []


def test_relevant_hits_off_topic_question_gets_nothing_even_at_the_old_cosine_bar():
    terms = Terms({"capit": 4.8, "franc": 7.5})
    hits = [hit(1, "The os module gives access to the operating system.", dense=0.33),
            hit(2, "Capital letters are upper case.", dense=0.31, bm25=4.0)]
    assert relevant_hits(hits, "What is the capital of France?", terms, ServerConfig()) == []


def test_how_often_asks_for_a_kind_of_answer_not_about_often():
    assert asked_about("How often is the forklift inspected?") == "how is the forklift inspected?"
    assert asked_about("HOW LONG does a rollback take, and how far?") == "how does a rollback take, and how?"
    assert asked_about("Is the old manual still valid?") == "Is the old manual still valid?"  # not after "how"
    # a corpus that never says "often" makes it the question's heaviest term, lacked by every passage
    terms = Terms({"often": 9.0, "forklift": 4.0, "inspect": 3.0})
    manual = hit(1, "The forklift must be inspected every Monday by the shift lead.", dense=0.55)
    assert [h.chunk.id for h in relevant_hits([manual], "How often is the forklift inspected?", terms,
                                              ServerConfig())] == [1]
    assert relevant_hits([manual], "Is the forklift often inspected?", terms, ServerConfig()) == []


def test_hybrid_hit_without_cosine_does_not_count_but_bm25_only_retrieval_uses_coverage():
    terms = Terms({})
    text = "The argparse module parses command line arguments."
    q = "How does argparse parse arguments?"
    dense_missing = [hit(1, "Unrelated text about bridges.", dense=0.2), hit(2, text, bm25=7.0)]
    assert relevant_hits(dense_missing, q, terms, ServerConfig()) == []
    assert [h.chunk.id for h in relevant_hits([hit(2, text, bm25=7.0)], q, terms, ServerConfig())] == [2]


def test_settings_carry_the_rule():
    cfg = ServerConfig(grounding_bias=-1.0, grounding_dense_weight=2.0, grounding_coverage_weight=3.0,
                       grounding_min_coverage=0.25, grounding_sentence_weight=4.0, grounding_missing_weight=5.0,
                       grounding_lexical_missing_weight=6.0)
    assert GroundingRule.of(cfg) == GroundingRule(-1.0, 2.0, 3.0, 0.25, 4.0, 5.0, 6.0)


@pytest.mark.skipif(not RESULT.exists(), reason="bench/results/refusal.json not written")
def test_defaults_are_the_fitted_constants():
    fitted = json.loads(RESULT.read_text())["fitted_rule"]
    defaults = ServerConfig().model_dump()
    assert {k: defaults[k] for k in fitted} == fitted


# ---- BM25 term weights ----------------------------------------------------------------------------
def _index() -> BM25Index:
    texts = ["the csv module reads csv files", "json encodes data", "files and directories", "sockets and ports"]
    return BM25Index.build(texts, np.arange(4), k1=1.5, b=0.75, language="english")


def test_term_weights_are_lucene_idf_with_unknown_terms_weighted_highest():
    idx = _index()
    n = 4
    w = idx.term_weights("csv files France")
    assert w["csv"] == pytest.approx(math.log(1 + (n - 1 + 0.5) / 1.5))
    assert w["file"] == pytest.approx(math.log(1 + (n - 2 + 0.5) / 2.5))
    assert w["franc"] == pytest.approx(math.log(1 + (n + 0.5) / 0.5))  # in no passage: df = 0
    assert w["franc"] > w["csv"] > w["file"]


def test_max_score_bounds_every_bm25_score():
    idx = _index()
    for q in ("csv files", "csv csv module", "json data files", "ports"):
        assert idx.scores(q).max() <= idx.max_score(q) + 1e-6
    assert idx.max_score("the and of") == 0.0  # stop words only


def test_question_words_are_not_terms_of_the_signal():
    # a small corpus that never says "who": its unknown-term weight would make it the heaviest missing term
    weights = {"who": 9.0, "chief": 1.0, "engin": 1.0, "bridg": 1.0}
    ev = passage_evidence(hit(1, "Joseph Strauss was the chief engineer of the bridge.", 0.6), weights)
    assert ev.missing == 0.0 and ev.coverage == pytest.approx(1.0) and ev.sentence_coverage == pytest.approx(1.0)
    assert passage_evidence(hit(2, "anything", 0.9), {"who": 3.0, "did": 2.0}).coverage == 0.0  # nothing else asked
    # a reference manual never says "my": the asker's pronoun is not what the question is about
    page = hit(3, "Specify libraries to use when linking a given target.", 0.6, title="target_link_libraries")
    ev = passage_evidence(page, {"link": 1.7, "librari": 1.5, "my": 5.3, "target": 0.7})
    assert ev.missing == 0.0 and ev.coverage == pytest.approx(1.0)
