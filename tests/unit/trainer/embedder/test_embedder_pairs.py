"""Pair mining: sources, dedup, the by-document split (no leakage) and labelled inputs."""

from __future__ import annotations

import json
import random

import pytest

from common.errors import InvalidInput, NotFound
from indexer.types import Chunk, Entity
from tests.unit.trainer.embedder.tiny_model import TOPICS, corpus_docs, write_beir
from trainer.embedder import pairs as P


def chunks() -> list[Chunk]:
    out = []
    for i, d in enumerate(corpus_docs()):
        out.append(Chunk(i + 1, f"{d['_id']}#x:0", d["_id"], 0, 0, len(d["text"]), d["text"], d["title"]))
    return out


def test_title_pairs_one_per_titled_document():
    ps = P.title_pairs(chunks())
    assert len(ps) == len(corpus_docs())
    assert all(p.source == "title" and p.query in {t for t, _ in TOPICS.values()} | {t + " (notes)" for t, _ in TOPICS.values()}
               for p in ps)
    untitled = [Chunk(1, "a#x:0", "a.txt", 0, 0, 10, "Some body text about things here.", "")]
    assert P.title_pairs(untitled) == []


def test_ict_removes_the_query_sentence_from_its_positive():
    ps = P.ict_pairs(chunks(), random.Random(0), per_chunk=2, min_rest_words=5)
    assert len(ps) == 2 * len(corpus_docs())
    for p in ps:
        assert p.source == "ict"
        assert p.query not in p.positive  # the sentence is cut out of its chunk
        src = next(c for c in chunks() if c.id == p.chunk_id)
        assert p.query in src.text and p.doc_id == src.doc_id


@pytest.mark.parametrize("sentence, claim", [
    ("CONCLUSIONS: Our data suggest that aspirin reduces the risk of colorectal adenoma, whereas ibuprofen does not.",
     "Aspirin reduces the risk of colorectal adenoma."),
    ("We conclude that Zn2+ is a modulatory neurotransmitter released from mossy fiber synapses; it shapes NMDA.",
     "Zn2+ is a modulatory neurotransmitter released from mossy fiber synapses."),
    ("The results provide further support for the hypothesis that an acidic compartment is involved in amyloid formation.",
     "An acidic compartment is involved in amyloid formation."),
    ("Taken together, these findings demonstrate that LOX is essential for hypoxia-induced metastasis.",
     "LOX is essential for hypoxia-induced metastasis."),
])
def test_claimify_strips_the_hedge_and_the_qualifying_tail(sentence, claim):
    assert P.claimify(sentence) == claim


@pytest.mark.parametrize("sentence", [
    "Patients were randomised into two groups of equal size.",  # no finding stated
    "These results provide preliminary support for the recently published guidelines on pulmonologists.",
    "Collectively, these results demonstrate that sugar utilization in E.",  # cut at an abbreviation
    "We show that it works.",  # too short to be a claim
])
def test_claimify_refuses_sentences_without_a_claim(sentence):
    assert P.claimify(sentence) is None


def test_claim_pairs_query_is_the_claim_and_its_sentence_is_cut_from_the_positive():
    text = ("Mice were fed a high-fat diet for twelve weeks and their livers were examined by histology. "
            "Hepatic fat content rose threefold in treated animals compared with controls in every cohort. "
            "These results suggest that dietary fat drives hepatic steatosis in mice.")
    c = Chunk(7, "d#x:0", "d.txt", 0, 0, len(text), text, "Fat and the liver")
    plain = Chunk(8, "e#x:0", "e.txt", 0, 0, 40, "Patients were randomised into two groups. Nothing else.", "")
    ps = P.claim_pairs([c, plain], random.Random(0), min_rest_words=5)
    assert len(ps) == 1
    p = ps[0]
    assert (p.query, p.source, p.chunk_id, p.doc_id) == ("Dietary fat drives hepatic steatosis in mice.", "claim", 7, "d.txt")
    assert "suggest" not in p.positive and "Hepatic fat content rose" in p.positive
    assert p.positive.startswith("Fat and the liver")  # indexed text keeps the title


def test_entity_pairs_use_the_rarest_entities():
    cs = chunks()[:3]
    ents = {
        cs[0].id: [Entity("Egypt", "GPE", "egypt", 0, 5, 0, 5), Entity("cats", "X", "cats", 0, 4, 0, 4),
                   Entity("mice", "X", "mice", 0, 4, 0, 4)],
        cs[1].id: [Entity("cats", "X", "cats", 0, 4, 0, 4), Entity("Egypt", "GPE", "egypt", 0, 5, 0, 5)],
        cs[2].id: [Entity("wolves", "X", "wolves", 0, 6, 0, 6)],  # one entity: no pair
    }
    df = P.entity_doc_freq(ents)
    ps = P.entity_pairs(cs, ents, random.Random(0), df, min_entities=2, max_entities=2)
    assert [p.chunk_id for p in ps] == [cs[0].id, cs[1].id]
    assert ps[0].query.split()[0] == "mice"  # rarest first


def test_dedup_drops_repeats_and_self_pairs():
    a = P.Pair("q one", "pos", "d1", "x")
    ps = P.dedup([a, P.Pair("Q  one", "POS", "d1", "y"), P.Pair("same", "same", "d2", "x"), P.Pair("q2", "pos", "d3", "x")])
    assert [p.query for p in ps] == ["q one", "q2"]


def test_split_by_document_never_leaks():
    ps = P.ict_pairs(chunks(), random.Random(1), per_chunk=3, min_rest_words=5) + P.title_pairs(chunks())
    # the same query text judged against two documents (like a BEIR query with two positives)
    ps += [P.Pair("shared query", "text A", "cats-a", "labelled"), P.Pair("shared query", "text B", "dogs-a", "labelled")]
    train, dev = P.split_by_document(ps, 0.25, seed=3)
    assert train and dev
    assert not {p.doc_id for p in train} & {p.doc_id for p in dev}
    assert not {P._norm(p.query) for p in train} & {P._norm(p.query) for p in dev}
    # deterministic, and a different seed gives a different split
    assert P.split_by_document(ps, 0.25, seed=3) == (train, dev)
    assert P.split_by_document(ps, 0.25, seed=4)[1] != dev
    _, small = P.split_by_document(ps, 0.5, seed=3, max_dev=5)
    assert 1 <= len(small) <= 5 or len({p.doc_id for p in small}) == 1


def test_cap_pairs_balances_sources():
    ps = [P.Pair(f"a{i}", "p", f"d{i}", "ict") for i in range(100)] + [P.Pair(f"t{i}", "p", f"e{i}", "title") for i in range(5)]
    out = P.cap_pairs(ps, 20, random.Random(0))
    assert len(out) == 20 and sum(p.source == "title" for p in out) == 5


def test_cap_pairs_spends_the_cap_on_first_pairs_before_fill_pairs():
    first = [P.Pair(f"a{i}", "p", f"d{i}", "ict") for i in range(30)]
    fill = [P.Pair(f"f{i}", "p", f"d{i}", "ict", fill=True) for i in range(30)]
    assert {p.query for p in P.cap_pairs(first + fill, 20, random.Random(0))} <= {p.query for p in first}
    out = P.cap_pairs(fill + first, 40, random.Random(0))
    assert len(out) == 40 and sum(not p.fill for p in out) == 30
    assert len(P.cap_pairs(first + fill, 100, random.Random(0))) == 60


def test_labelled_jsonl(tmp_path):
    f = tmp_path / "pairs.jsonl"
    f.write_text(json.dumps({"query": "q", "positive": "p", "negative": "n"}) + "\n\n" + json.dumps({"query": "q2", "positive": "p2"}) + "\n")
    ps = P.read_pairs_jsonl(f)
    assert [(p.query, p.negatives) for p in ps] == [("q", ("n",)), ("q2", ())]
    assert ps[0].doc_id != ps[1].doc_id  # split key from the positive text
    f.write_text('{"query": "q"}\n')
    with pytest.raises(InvalidInput, match="positive"):
        P.read_pairs_jsonl(f)
    f.write_text("not json\n")
    with pytest.raises(InvalidInput, match="invalid JSON"):
        P.read_pairs_jsonl(f)
    with pytest.raises(NotFound):
        P.read_pairs_jsonl(tmp_path / "missing.jsonl")


def test_beir_train_split_and_test_refused(tmp_path):
    beir = write_beir(tmp_path / "beir")
    ps = P.read_beir_train(beir)
    assert len(ps) == 16 and all(p.source == "beir-train" and p.doc_id.endswith(("-a", "-b")) for p in ps)
    assert "Tea growing" in next(p.positive for p in ps if p.doc_id == "tea-a")  # title + text, like the index
    with pytest.raises(InvalidInput, match="test split"):
        P.read_beir_train(beir, "test")
    with pytest.raises(NotFound):
        P.read_beir_train(write_beir(tmp_path / "b2", train_qrels=False))


def test_jsonl_roundtrip():
    ps = [P.Pair("q", "p", "d", "ict", ("n1", "n2"), 7)]
    assert P.pairs_from_jsonl(P.pairs_to_jsonl(ps)) == ps
