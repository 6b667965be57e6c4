"""reader.serve: the bounded caches, the lazily loaded pipeline (once, under concurrency) and its
fallback, with a counting fake embedder and a blank spaCy tokenizer (no model files)."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from common.errors import ModelUnavailable
from reader import Passage, load_weights
from reader.serve import READER_COMPONENTS, LruCache, ReaderRuntime, blank_pipeline, load_reader_pipeline
from reader.spans import word_aligned


class CountingEmbedder:
    """Deterministic unit vectors from character counts; records every text it was asked to encode."""

    id = "counting-fake"
    dim = 26

    def __init__(self) -> None:
        self.seen: list[str] = []

    def encode(self, texts, is_query=False, **_kw):
        self.seen.extend(texts)
        out = np.zeros((len(texts), self.dim), np.float32)
        for i, t in enumerate(texts):
            for ch in t.lower():
                if "a" <= ch <= "z":
                    out[i, ord(ch) - 97] += 1
            out[i] /= max(np.linalg.norm(out[i]), 1e-9)
        return out


PASSAGES = [
    Passage("The trial enrolled 43,000 volunteers in 2020. It measured infections.", "vaccine.md", 100, 1, 2.0),
    Passage("Joseph Strauss was the chief engineer. The bridge opened in May 1937.", "bridge.txt", 0, 2, 1.0),
]


def test_lru_cache_keeps_the_most_recently_used():
    c: LruCache[str, int] = LruCache(2)
    c.put_many([("a", 1), ("b", 2)])
    assert c.get_many(["a"]) == [1]  # a is now the most recent
    c.put_many([("c", 3)])
    assert c.get_many(["a", "b", "c"]) == [1, None, 3] and len(c) == 2
    assert (c.hits, c.misses) == (3, 1)
    off: LruCache[str, int] = LruCache(0)
    off.put_many([("a", 1)])
    assert off.get_many(["a"]) == [None] and len(off) == 0


def test_sentence_vectors_are_embedded_once_per_embedder_and_text():
    rt = ReaderRuntime(load_weights(), loader=lambda _name: blank_pipeline())
    emb = CountingEmbedder()
    first = rt.read("How many volunteers did the trial enroll?", PASSAGES, emb)
    n = len(emb.seen)
    assert first.answer is not None and n >= 4  # the question and every sentence
    again = rt.read("How many volunteers did the trial enroll?", PASSAGES, emb, question_vec=emb.encode(["x"])[0])
    assert len(emb.seen) == n + 1  # only the question vector given above: no sentence re-embedded
    assert again.answer is not None

    class Other(CountingEmbedder):
        id = "another-embedder"

    other = Other()
    rt.read("How many volunteers did the trial enroll?", PASSAGES, other)
    assert len(other.seen) == n  # another embedder never reads the first one's vectors


def test_a_missing_pipeline_falls_back_to_a_blank_tokenizer_and_says_so():
    def missing(name):
        raise ModelUnavailable(f"spaCy pipeline {name!r} cannot be loaded")

    rt = ReaderRuntime(load_weights(), "no_such_pipeline", loader=missing)
    r = rt.read("Who was the chief engineer?", PASSAGES, CountingEmbedder())
    assert r.answer is not None and "no_such_pipeline" in r.problem and "without a parse" in r.problem
    p = PASSAGES[r.answer.passage]
    assert p.text[r.answer.start:r.answer.end] == r.answer.text
    assert word_aligned(p.text, r.answer.start, r.answer.end)
    assert r.answer.doc_start == p.doc_start + r.answer.start


def test_the_pipeline_is_loaded_once_by_concurrent_readers():
    calls = []

    def slow(name):
        calls.append(name)
        time.sleep(0.05)
        return blank_pipeline()

    rt = ReaderRuntime(load_weights(), "x", loader=slow)
    threads = [threading.Thread(target=rt.nlp) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert calls == ["x"] and rt.problem == ""


def test_parses_are_cached_by_text():
    rt = ReaderRuntime(load_weights(), loader=lambda _name: blank_pipeline())
    a = rt.parse(["One sentence.", "Two words"])
    b = rt.parse(["Two words"])
    assert b[0] is a[1] and rt.parses.hits == 1


def test_an_empty_question_or_passages_read_nothing():
    rt = ReaderRuntime(load_weights(), loader=lambda _name: blank_pipeline())
    assert rt.read("   ", PASSAGES, CountingEmbedder()).answer is None
    assert rt.read("Who?", [Passage("")], CountingEmbedder()).answer is None


def test_load_reader_pipeline_names_what_it_cannot_load():
    with pytest.raises(ModelUnavailable, match="no_such_spacy_pkg"):
        load_reader_pipeline("no_such_spacy_pkg")
    assert set(READER_COMPONENTS) >= {"parser", "ner", "tagger"}


def test_the_reader_tokenizer_splits_a_call_from_its_name():
    import spacy

    from reader.serve import split_calls

    nlp = split_calls(spacy.blank("en"))
    assert [t.text for t in nlp("Use setraw(fd) or ABC() in 2015 (in May).")] == [
        "Use", "setraw", "(", "fd", ")", "or", "ABC", "(", ")", "in", "2015", "(", "in", "May", ")", "."]
    assert split_calls(nlp) is nlp  # once is enough


def test_the_reader_tokenizer_ends_a_sentence_with_a_letter_not_an_initial():
    import spacy

    from reader.serve import split_final_letter

    nlp = split_final_letter(spacy.blank("en"))
    assert split_final_letter(nlp) is nlp
    doc = nlp("Hard hats are required in zone B. ")
    assert [t.text for t in doc][-3:] == ["zone", "B", "."] and doc.text == "Hard hats are required in zone B. "
    assert [t.text for t in nlp("Running back C. J. Anderson ran.")][:4] == ["Running", "back", "C.", "J."]
    assert [t.text for t in nlp("It is in the U.S.")][-1] == "U.S."
    assert [[t.text for t in d][-2:] for d in nlp.pipe(["See appendix A.", "Plan b."])] == [["A", "."], ["b", "."]]
