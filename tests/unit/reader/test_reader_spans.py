"""Candidate spans and their features on hand-made parses (no spaCy)."""

from __future__ import annotations

from reader.parse import Parsed, Token
from reader.question import question_info
from reader.spans import candidate_spans, dep_path, sentence_candidates, sentence_context, span_features, word_aligned


def _parse(text: str, rows: list[tuple[str, str, str, int, str]], ents=(), chunks=()) -> Parsed:
    """rows: (token text, pos, dep, head index, entity label); tokens are found left to right in text."""
    toks, pos = [], 0
    for word, upos, dep, head, ent in rows:
        start = text.index(word, pos)
        pos = start + len(word)
        toks.append(Token(word, start, pos, word.lower(), upos, "", dep, head, ent,
                          word.replace(",", "").isdigit(), word.lower() in {"the", "did", "how", "many", "in"},
                          upos == "PUNCT"))
    return Parsed(text, tuple(toks), tuple(ents), tuple(chunks))


SENTENCE = _parse(
    "The trial enrolled 43,000 volunteers in state-of-the-art clinics.",
    [("The", "DET", "det", 1, ""), ("trial", "NOUN", "nsubj", 2, ""), ("enrolled", "VERB", "ROOT", 2, ""),
     ("43,000", "NUM", "nummod", 4, "CARDINAL"), ("volunteers", "NOUN", "dobj", 2, ""),
     ("in", "ADP", "prep", 2, ""), ("state", "NOUN", "amod", 12, ""), ("-", "PUNCT", "punct", 6, ""),
     ("of", "ADP", "prep", 6, ""), ("-", "PUNCT", "punct", 8, ""), ("the", "DET", "det", 11, ""),
     ("-", "PUNCT", "punct", 11, ""), ("art", "NOUN", "pobj", 8, ""), ("clinics", "NOUN", "pobj", 5, ""),
     (".", "PUNCT", "punct", 2, "")],
    ents=[(3, 4, "CARDINAL")], chunks=[(0, 2), (3, 5)],
)
# the tokens' heads above are rough on purpose: only the candidates' boundaries are tested on them
QUESTION = _parse(
    "How many volunteers did the trial enroll?",
    [("How", "SCONJ", "advmod", 1, ""), ("many", "ADJ", "amod", 2, ""), ("volunteers", "NOUN", "nsubj", 3, ""),
     ("did", "AUX", "ROOT", 3, ""), ("the", "DET", "det", 5, ""), ("trial", "NOUN", "nsubj", 3, ""),
     ("enroll", "VERB", "xcomp", 3, ""), ("?", "PUNCT", "punct", 3, "")],
)


def test_word_aligned():
    text = "a state-of-the-art venue (in 2015–16), Levi's"
    assert word_aligned(text, 0, 1)
    assert word_aligned(text, 2, 18)  # state-of-the-art
    assert not word_aligned(text, 2, 7)  # "state" of state-of-the-art
    assert not word_aligned(text, 15, 18)  # "art"
    assert word_aligned(text, 29, 36)  # 2015–16 after "(" ... before ")"
    assert not word_aligned(text, 34, 36)  # "16"
    assert word_aligned(text, 39, 43)  # "Levi" before the possessive
    assert not word_aligned(text, 43, 45)  # "'s"
    assert not word_aligned(text, 3, 3)
    assert word_aligned("call setraw(fd) now", 5, 11)  # a name before its call's bracket


def test_candidates_never_split_words():
    spans = candidate_spans(SENTENCE)
    text = SENTENCE.text
    assert spans, "no candidates"
    for i, j in spans:
        s, e = SENTENCE.tokens[i].start, SENTENCE.tokens[j - 1].end
        assert word_aligned(text, s, e), text[s:e]
        assert s == 0 or not text[s - 1].isalnum()
        assert e == len(text) or not text[e].isalnum()
    texts = {SENTENCE.span_text(i, j) for i, j in spans}
    assert "43,000" in texts and "43,000 volunteers" in texts
    assert not {"state", "art", "the", "-"} & texts  # pieces of a hyphenated word, lone function words


def test_a_symbol_alone_is_never_a_candidate():
    text = "add_library(name [STATIC | SHARED] C++)"
    p = _parse(text, [("add_library", "NOUN", "ROOT", 0, ""), ("(", "PUNCT", "punct", 0, ""),
                      ("name", "NOUN", "dobj", 0, ""), ("[", "PUNCT", "punct", 4, ""), ("STATIC", "PROPN", "appos", 2, ""),
                      ("|", "SYM", "punct", 4, ""), ("SHARED", "PROPN", "conj", 4, ""), ("]", "PUNCT", "punct", 4, ""),
                      ("C", "PROPN", "appos", 0, ""), ("++", "SYM", "punct", 8, ""), (")", "PUNCT", "punct", 0, "")])
    texts = {p.span_text(i, j) for i, j in candidate_spans(p)}
    assert "SHARED" in texts and "C++" in texts
    assert not {"|", "++"} & texts


def test_candidate_kinds():
    spans = candidate_spans(SENTENCE)
    assert "ent" in spans[(3, 4)] and "num" in spans[(3, 4)]
    assert "np" in spans[(0, 2)]
    assert "np-cut" in spans[(1, 2)]  # "trial" without "The"


def test_question_info():
    q = question_info(QUESTION)
    assert q.wh == "how_many"
    assert q.head == "volunteers"  # no lemmatiser in the hand-made parse
    assert q.kind == "number"
    assert {"volunteers", "trial", "enroll"} <= q.lemmas and "how" not in q.lemmas


def test_span_features_on_a_hand_made_sentence():
    q = question_info(QUESTION)
    ctx = sentence_context(SENTENCE, q)
    assert set(ctx.matched) == {1, 4}  # trial, volunteers
    f = span_features(q, ctx, 3, 4, frozenset({"ent", "num"}))
    assert f["bias"] == 1.0
    assert f["ent=CARDINAL|wh=how_many"] == 1.0 and f["ent=CARDINAL|kind=number"] == 1.0
    assert f["len=1|wh=how_many"] == 1.0
    assert f["has_num|wh=how_many"] == 1.0
    assert f["asked_frac"] == 0.0 and "all_asked" not in f
    assert f["next_asked"] == 1.0  # "volunteers" follows
    assert f["dist=1"] == 1.0
    g = span_features(q, ctx, 4, 5, frozenset({"tok"}))
    assert g["all_asked"] == 1.0 and g["asked_frac"] == 1.0


def test_dep_path():
    q = question_info(QUESTION)
    ctx = sentence_context(SENTENCE, q)
    path, arcs = dep_path(ctx, 3, 4)  # 43,000 -> volunteers (its head)
    assert (path, arcs) == ("nummod|", 1)
    path, arcs = dep_path(ctx, 3, 1)  # 43,000 -> volunteers -> enrolled <- trial
    assert arcs == 3 and path == "nummod^dobj|nsubj"


def test_sentence_candidates_are_ordered_and_featured():
    spans, feats = sentence_candidates(question_info(QUESTION), SENTENCE)
    assert spans == sorted(spans) and len(spans) == len(feats)
    assert all("bias" in f for f in feats)
