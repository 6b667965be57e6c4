import json
import math
import random

import pytest

from common.errors import ContextOverflow, InvalidInput, NotFound
from common.sampling import SamplingParams
from trainer.lm.data import LmDataset
from trainer.lm.qa import QaExample, build_qa_dataset, load_qa_jsonl, plan_prompt, qa_prompt_ids
from trainer.lm.qa_bounds import answer_bounds, answer_type, extract_from_context, extractive_params
from trainer.lm.qa_focus import focus_passage, sentence_scores
from trainer.lm.qa_metrics import exact_match, token_f1
from trainer.lm.qa_synthetic import (add_noise, cloze_questions, counterfactual_text, invert_auxiliary,
                                     lookup_questions, question_sentences)


def test_cloze_question_removes_the_answer_span(corpus_chunks):
    qs = cloze_questions(corpus_chunks, per_chunk=1, seed=0)
    assert qs
    for q in qs:
        assert q.answer and q.answer not in q.question and q.question.endswith("?")
        assert q.answer in q.context[0]
    by_label = cloze_questions(corpus_chunks, spans=lambda c: [(c.text.find("Italy"), c.text.find("Italy") + 5, "GPE")]
                               if "Italy" in c.text else [], per_chunk=1, style="inplace")
    assert [(q.question, q.answer) for q in by_label] == [
        ("The piano was invented in where by Bartolomeo Cristofori around 1700?", "Italy")]


def test_fronted_questions_lead_with_the_wh_word(corpus_chunks):
    italy = lambda c: [(c.text.find("Italy"), c.text.find("Italy") + 5, "GPE")] if "Italy" in c.text else []  # noqa: E731
    fronted = cloze_questions(corpus_chunks, spans=italy, per_chunk=1, style="fronted")
    assert [(q.question, q.answer) for q in fronted] == [
        ("Where the piano was invented by Bartolomeo Cristofori around 1700?", "Italy")]  # "in" dropped, "The" lowered
    mixed = cloze_questions(corpus_chunks * 20, spans=italy, per_chunk=1, style="mixed", seed=1)
    assert {q.question.split()[0] for q in mixed} == {"Where", "The"}


def test_inverted_questions_put_the_auxiliary_before_its_subject(corpus_chunks):
    assert invert_auxiliary("the game was played at Levi's Stadium") == "was the game played at Levi's Stadium"
    assert invert_auxiliary("was founded in 1850") == "was founded in 1850"  # already a question's order
    assert invert_auxiliary("later, the school was opened") == "later, the school was opened"  # a clause first
    assert invert_auxiliary("the treaty that ended the long war was signed") == "the treaty that ended the long war was signed"
    italy = lambda c: [(c.text.find("Italy"), c.text.find("Italy") + 5, "GPE")] if "Italy" in c.text else []  # noqa: E731
    inverted = cloze_questions(corpus_chunks, spans=italy, per_chunk=1, style="inverted")
    assert [(q.question, q.answer) for q in inverted] == [
        ("Where was the piano invented by Bartolomeo Cristofori around 1700?", "Italy")]


def test_windowed_questions_keep_the_words_near_the_answer(corpus_chunks):
    italy = lambda c: [(c.text.find("Italy"), c.text.find("Italy") + 5, "GPE")] if "Italy" in c.text else []  # noqa: E731
    short = cloze_questions(corpus_chunks, spans=italy, per_chunk=1, style="fronted", window=3)
    assert [(q.question, q.answer) for q in short] == [("Where was invented by Bartolomeo Cristofori?", "Italy")]  # "in" dropped
    inplace = cloze_questions(corpus_chunks, spans=italy, per_chunk=1, style="inplace", window=2)
    assert [q.question for q in inplace] == ["invented in where by Bartolomeo?"]
    whole = cloze_questions(corpus_chunks, spans=italy, per_chunk=1, style="fronted", window=50)
    assert [q.question for q in whole] == ["Where the piano was invented by Bartolomeo Cristofori around 1700?"]


def test_counterfactual_text_swaps_spans_for_same_label_ones_consistently():
    text = "Napoleon signed it in Paris. Later Napoleon left Paris for Rome."
    at = [(i, w) for w in ("Napoleon", "Paris", "Rome") for i in range(len(text)) if text.startswith(w, i)]
    spans = sorted((i, i + len(w), "PERSON" if w == "Napoleon" else "GPE") for i, w in at)
    pool = {"PERSON": ["Napoleon", "Ada Lovelace"], "GPE": ["Paris", "Rome", "Vienna", "Lima"]}
    new, moved = counterfactual_text(text, spans, pool, random.Random(0))
    assert new.startswith("Ada Lovelace signed it in ") and "Later Ada Lovelace left" in new  # same name, same swap
    for (s, e, label), (s0, e0, label0) in zip(moved, spans):
        assert label == label0 and new[s:e] != text[s0:e0] and new[s:e] in pool[label]
    assert new[moved[1][0]:moved[1][1]] == new[moved[3][0]:moved[3][1]]  # both "Paris" became the same city
    assert len({new[s:e] for s, e, _ in moved}) == 3  # and no two names became one
    kept, same = counterfactual_text(text, [(0, 8, "PERSON"), (4, 10, "PERSON")], {"PERSON": ["Napoleon"]}, random.Random(0))
    assert kept == text and same == [(0, 8, "PERSON")]  # no other name to use; the overlapping span is left alone


def test_counterfactual_questions_are_answered_only_by_their_own_passage(corpus_chunks):
    plain = cloze_questions(corpus_chunks, per_chunk=2, seed=0)
    assert cloze_questions(corpus_chunks, per_chunk=2, seed=0, counterfactual=0) == plain
    more = cloze_questions(corpus_chunks, per_chunk=2, seed=0, counterfactual=2)
    originals = {c.text for c in corpus_chunks}
    swapped = [q for q in more if q.context[0] not in originals]
    assert swapped and len(more) > len(plain)
    for q in swapped:
        assert q.answer in q.context[0] and q.answer not in q.question
        assert q.doc_id in {c.doc_id for c in corpus_chunks}  # the held-out split by document still holds
    assert any(all(q.answer not in c.text for c in corpus_chunks if c.doc_id == q.doc_id) for q in swapped)


def test_lookup_questions_ask_for_the_words_after_a_phrase(corpus_chunks):
    text = corpus_chunks[0].text
    qs = lookup_questions(text, "d", random.Random(0), 3)
    assert len(qs) == 3
    for q in qs:
        phrase = q.question.split('"')[1]
        assert q.question == f'What comes after "{phrase}"?' and text.count(phrase) == 1
        assert text[text.index(phrase) + len(phrase):].lstrip().startswith(q.answer)  # the words right after it
        assert 1 <= len(q.answer.split()) <= 4 and q.context == (text,) and q.doc_id == "d"
    plain = cloze_questions(corpus_chunks, per_chunk=2, seed=0)
    mixed = cloze_questions(corpus_chunks, per_chunk=2, seed=0, lookup=2)
    assert len([q for q in mixed if q.question.startswith("What comes after")]) == 2 * len(corpus_chunks)
    assert [q for q in mixed if not q.question.startswith("What comes after")][:2] == plain[:2]
    only = cloze_questions(corpus_chunks, per_chunk=0, seed=0, lookup=2)
    assert only and all(q.question.startswith("What comes after") for q in only)


def test_noisy_questions_drop_and_shuffle_words_locally():
    q = "When was the piano invented by Bartolomeo Cristofori inside a workshop near Florence?"  # no repeated word
    assert add_noise(q, 0.0, random.Random(0)) == q
    words = q.rstrip("?").split()
    for seed in range(20):
        out = add_noise(q, 0.2, random.Random(seed))
        got = out.rstrip("?").split()
        assert out.endswith("?") and got[0] == "When" and len(got) <= len(words)
        assert sorted(got) == sorted(w for w in got if w in words)  # only the question's own words
        pos = {w: i for i, w in enumerate(words)}
        kept = sorted(got[1:], key=pos.__getitem__)  # the same words in their original order
        assert all(abs(got[1:].index(w) - i) <= 3 for i, w in enumerate(kept))
    assert any(add_noise(q, 0.2, random.Random(s)) != q for s in range(5))


def test_qa_rows_put_the_loss_on_the_answer_only(tokenizer, tmp_path):
    ex = [QaExample("Where was the piano invented?", "Italy", ("The piano was invented in Italy.",)),
          QaExample("What is Rust?", "a language", ())]
    build_qa_dataset(ex, tokenizer, tmp_path, passage_len=64, retrieve=lambda q: ["Rust is a language."])
    ds = LmDataset(tmp_path)
    x, y, mask = ds.batch([0, 1], True)
    answer = tokenizer.encode("Italy") + [tokenizer.eos_id]
    assert y[0][mask[0]].tolist() == answer
    prompt = qa_prompt_ids(tokenizer, ex[0].context, ex[0].question, 64)
    assert x[0, : len(prompt)].tolist() == prompt and prompt[-1] == tokenizer.a_id
    assert tokenizer.decode(x[1].tolist()).count("Rust is a language.") == 1  # retrieved when absent


def test_packed_rows_share_the_context_and_score_every_answer(tokenizer, tmp_path):
    ctx = ("The piano was invented in Italy. Bees dance in Spain.",)
    ex = [QaExample("Where was the piano invented?", "Italy", ctx), QaExample("Where do bees dance?", "Spain", ctx),
          QaExample("What dances?", "Bees", ctx), QaExample("What is Rust?", "a language", ("Rust is a language.",))]
    meta = build_qa_dataset(ex, tokenizer, tmp_path, passage_len=64, pack=2)
    assert meta["rows"] == 3 and meta["questions"] == 4  # 2 + 1 (pack limit) share ctx; Rust has its own row
    ds = LmDataset(tmp_path)
    x, y, mask = ds.batch([0], True)
    eos = tokenizer.eos_id
    assert y[0][mask[0]].tolist() == tokenizer.encode("Italy") + [eos] + tokenizer.encode("Spain") + [eos]
    text = tokenizer.decode(x[0].tolist())
    assert text.count("The piano was invented") == 1 and "Where do bees dance?" in text
    first = qa_prompt_ids(tokenizer, ctx, ex[0].question, 64)
    assert x[0, : len(first)].tolist() == first  # the first pair is exactly the inference prompt
    assert ds.row_loss_tokens[0] == int(mask[0].sum())  # the step normaliser counts answers only
    # a length cap starts a new row instead of overflowing the model context
    one_row = len(first) + len(tokenizer.encode("Italy")) + 1
    capped = build_qa_dataset(ex[:2], tokenizer, tmp_path / "capped", passage_len=64, pack=8, max_row=one_row)
    assert capped["rows"] == 2 and capped["longest_row"] <= one_row


PASSAGE = ("The harbour opened in 1850. Its lighthouse was built by Ada Lovelace in 1861. "
           "The harbour was closed in 1990 after the fishing fleet left. Tourists now visit the harbour.")


def test_focus_keeps_the_sentences_sharing_the_questions_rarer_words_in_passage_order():
    assert focus_passage(PASSAGE, "Who built the lighthouse?", 1) == "Its lighthouse was built by Ada Lovelace in 1861."
    # "harbour" is in three of four sentences, so "closed" decides; stems match ("closing" ~ "closed")
    assert focus_passage(PASSAGE, "When did the harbour's closing happen?", 1).startswith("The harbour was closed")
    two = focus_passage(PASSAGE, "Who visits the lighthouse now?", 2)
    assert two == "Its lighthouse was built by Ada Lovelace in 1861. Tourists now visit the harbour."
    assert focus_passage(PASSAGE, "Who built the lighthouse?", 0) == PASSAGE  # 0: the whole passage
    assert focus_passage(PASSAGE, "Who built the lighthouse?", 4) == PASSAGE  # no more sentences than asked
    assert focus_passage(PASSAGE, "zebra?", 1) == "The harbour opened in 1850."  # no shared word: the first


def test_sentence_scores_weigh_a_word_by_how_few_sentences_share_it():
    sents = ["The harbour opened.", "The harbour was closed.", "The harbour light failed."]
    common, rare = sentence_scores(sents, "When was the harbour closed?")[:2]
    assert 0 < common < rare  # all three share "harbour" (ln 2); only one has "closed" (ln 4)
    assert rare == pytest.approx(math.log(2) + math.log(4))
    assert sentence_scores(sents, "zebra?") == [0.0, 0.0, 0.0]


def test_focused_rows_hold_only_the_sentences_their_question_picks(tokenizer, tmp_path):
    ex = [QaExample("Who built the lighthouse?", "Ada Lovelace", (PASSAGE,)),
          QaExample("When was the lighthouse built?", "1861", (PASSAGE,)),
          QaExample("When was the harbour closed?", "1990", (PASSAGE,))]
    meta = build_qa_dataset(ex, tokenizer, tmp_path, passage_len=128, pack=8, focus=1)
    assert meta["rows"] == 2  # the two lighthouse questions keep the same sentence and share a row
    ds = LmDataset(tmp_path)
    x, _, _ = ds.batch([0, 1], True)
    first, second = tokenizer.decode(x[0].tolist()), tokenizer.decode(x[1].tolist())
    assert "Ada Lovelace" in first and "1990" not in first and "When was the lighthouse built?" in first
    assert "1990" in second and "1861" not in second
    focused = qa_prompt_ids(tokenizer, [focus_passage(PASSAGE, ex[2].question, 1)], ex[2].question, 128)
    assert x[1, : len(focused)].tolist() == focused  # exactly the inference prompt of a focused model


def test_sentences_never_start_mid_word():
    text = "Dr Smith met Jones in 1999. It rained. Y" + "y" * 500 + ". The end came in 2001."
    got = [text[a:b] for a, b in question_sentences(text, min_chars=5)]
    assert got == ["Dr Smith met Jones in 1999.", "It rained.", "The end came in 2001."]  # the overlong one is skipped


def test_load_qa_jsonl_validates(tmp_path):
    good = tmp_path / "qa.jsonl"
    good.write_text(json.dumps({"question": "q?", "answer": "a", "context": ["c1", "c2"]}) + "\n\n")
    assert load_qa_jsonl(good) == [QaExample("q?", "a", ("c1", "c2"))]
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "q"}\n')
    with pytest.raises(InvalidInput, match="bad.jsonl:1"):
        load_qa_jsonl(bad)
    bad.write_text("not json\n")
    with pytest.raises(InvalidInput):
        load_qa_jsonl(bad)
    with pytest.raises(NotFound):
        load_qa_jsonl(tmp_path / "missing.jsonl")


def test_squad_metrics():
    assert exact_match("The Italy!", ["italy"]) == 1.0
    assert token_f1("in northern Italy", ["Italy"]) == pytest.approx(0.5)
    assert token_f1("", ["Italy"]) == 0.0 and token_f1("Rome", ["Italy", "Rome"]) == 1.0


def test_context_token_ids_are_the_passages(tokenizer):
    from trainer.lm.qa_bounds import context_token_ids

    ids = qa_prompt_ids(tokenizer, ["Tea is brewed.", "Bees dance."], "What?", 64)
    assert context_token_ids(ids, tokenizer) == tuple(tokenizer.encode("Tea is brewed.") + tokenizer.encode("Bees dance."))
    assert context_token_ids([1, 5, 9, 6], tokenizer) == ()


def test_noun_phrase_spans_skip_pronouns_and_stop_words():
    spacy = pytest.importorskip("spacy")
    from spacy.tokens import Doc

    from trainer.lm.qa_synthetic import cloze_question, noun_phrase_spans

    words = ["Historians", "exaggerate", "his", "brutality", "and", "it", "grows"]
    doc = Doc(spacy.blank("en").vocab, words=words, spaces=[True] * 6 + [False],
              heads=[1, 1, 3, 1, 1, 6, 1], deps=["nsubj", "ROOT", "poss", "dobj", "cc", "nsubj", "conj"],
              pos=["NOUN", "VERB", "PRON", "NOUN", "CCONJ", "PRON", "VERB"])
    text = doc.text
    assert [text[s:e] for s, e, label in noun_phrase_spans(doc)] == ["Historians", "his brutality"]
    assert {label for *_, label in noun_phrase_spans(doc)} == {"NP"}
    assert {label for *_, label in noun_phrase_spans(doc, head_nouns=True)} == {"NP"}  # no content word before the head

    words = ["Warsaw", "defeated", "the", "Red", "Armies"]
    doc = Doc(spacy.blank("en").vocab, words=words, spaces=[True] * 4 + [False], heads=[1, 1, 4, 4, 1],
              deps=["nsubj", "ROOT", "det", "amod", "dobj"], pos=["PROPN", "VERB", "DET", "ADJ", "NOUN"],
              lemmas=["Warsaw", "defeat", "the", "red", "army"])
    (s, e, label), = [sp for sp in noun_phrase_spans(doc, head_nouns=True) if sp[2] != "NP"]
    assert (doc.text[s:e], label) == ("the Red Armies", "NP:army")
    assert cloze_question(doc.text, s, e, label, fronted=True) == "What army Warsaw defeated?"


def test_extractive_params_copy_from_the_passages_and_avoid_the_question(tokenizer):
    ids = qa_prompt_ids(tokenizer, ["The piano was invented in Italy.", "Rust is a language."],
                        "Where was the piano invented?", 100)
    p = extractive_params(SamplingParams(), ids, tokenizer)
    assert p.extract_from == (*tokenizer.encode("The piano was invented in Italy."), *tokenizer.encode("Rust is a language."))
    assert p.extract_avoid == tuple(tokenizer.encode("Where was the piano invented?"))
    bare = qa_prompt_ids(tokenizer, [], "Where was the piano invented?", 100)
    assert extractive_params(SamplingParams(), bare, tokenizer) == SamplingParams()  # nothing to copy: free decoding
    with pytest.raises(InvalidInput, match="passages"):
        extract_from_context(SamplingParams(), bare, tokenizer)
    assert (p.extract_starts, p.extract_ends) == answer_bounds(p.extract_from, p.extract_avoid, tokenizer)
    unbounded = extractive_params(SamplingParams(), ids, tokenizer, bounds=False)
    assert unbounded.extract_starts is None and unbounded.extract_ends is None


def test_answers_start_at_words_the_question_does_not_have(tokenizer):
    source = tokenizer.encode("Bartolomeo Cristofori invented the piano in Italy around 1700.")
    question = tokenizer.encode("Who invented the piano?")
    text = [tokenizer.piece_bytes(t) for t in source]

    def opened(opening):
        starts, ends = answer_bounds(source, question, tokenizer, opening)
        assert all(text[i].startswith(b" ") or not text[i - 1][-1:].isalnum() for i in starts)  # word (or number) edges
        assert all(j == len(source) or not (text[j - 1][-1:].isalnum() and text[j][:1].isalnum()) for j in ends)
        return {tokenizer.decode(source[i:]).split()[0] for i in starts}

    assert {"Bartolomeo", "invented", "the", "in", "1700."} <= opened("any")
    assert opened("not_asked") == opened("any") - {"invented", "piano"}  # the question's words never open
    assert opened("content") == opened("not_asked") - {"the", "in"}  # nor do stop words
    assert opened("content") == {"Bartolomeo", "Cristofori", "Italy", "around", "1700."}
    assert answer_bounds(source, question, tokenizer) == answer_bounds(source, question, tokenizer, "typed")
    asked = tokenizer.encode("Cristofori invented pianos, Italy")
    assert answer_bounds(asked, asked, tokenizer)[0] is None  # every word asked: no start is refused


def test_answer_type_reads_the_kind_of_answer_from_the_wh_phrase():
    assert answer_type("How many Grammys has Lady Gaga won?") == "number"
    assert answer_type("In what year did the war end?") == answer_type("When did the war end?") == "number"
    assert answer_type("Who wrote Hamlet?") == answer_type("Which city hosted the games?") == "name"
    assert answer_type("What did Tesla invent?") is answer_type("Where is Paris?") is None


def test_typed_answers_open_on_the_kind_of_word_the_question_asks_for(tokenizer):
    def opened(passage, question, opening="typed"):
        source = tokenizer.encode(passage)
        starts, _ = answer_bounds(source, tokenizer.encode(question), tokenizer, opening)
        return {tokenizer.decode(source[i:]).split()[0] for i in starts}

    passage = "Bartolomeo Cristofori invented the piano in Italy around 1700."
    assert opened(passage, "Who invented the piano?") == {"Bartolomeo", "Cristofori", "Italy"}
    assert opened(passage, "In what year was the piano invented?") == {"1700."}
    untyped = "What did Cristofori make in Italy?"
    assert opened(passage, untyped) == opened(passage, untyped, "content")
    no_number = "Cristofori invented the piano in Italy."  # nothing of the asked kind: the content rule alone
    when = "When was the piano invented?"
    assert opened(no_number, when) == opened(no_number, when, "content")


def test_passage_sentences_keep_a_lone_line_with_the_sentence_it_introduces():
    from trainer.lm.qa_focus import passage_sentences

    text = ("tty --- Terminal control functions\n\nsetraw(fd)\n\nChange the mode of fd to raw. If omitted, e.g. "
            "it defaults.\n\nsetcbreak(fd)\n\nChange the mode of fd to cbreak.\n\nlast(x)")
    got = [text[s:e] for s, e in passage_sentences(text)]
    assert got == ["tty --- Terminal control functions",  # two lone lines in a row: the first stands alone
                   "setraw(fd)\n\nChange the mode of fd to raw.", "If omitted, e.g. it defaults.",
                   "setcbreak(fd)\n\nChange the mode of fd to cbreak.", "last(x)"]
    # a lower-case piece after a blank line is not glued to the sentence before it
    assert [text2[s:e] for text2 in ["One here.\n\nsecond starts low."] for s, e in passage_sentences(text2)] == [
        "One here.", "second starts low."]
    assert passage_sentences("Plain text, e.g. this one. Two.") == [(0, 26), (27, 31)]


def test_passage_sentences_keep_the_indexers_rejoined_sentences():
    from trainer.lm.qa_focus import passage_sentences

    text = "It was Lyndon B. Johnson. Build type (e.g. Makefile Generators). Done."
    assert [text[s:e] for s, e in passage_sentences(text)] == [
        "It was Lyndon B. Johnson.", "Build type (e.g. Makefile Generators).", "Done."]


def test_replay_takes_seeded_chunks_of_documents_not_set_aside_until_the_token_budget(corpus_chunks, tokenizer):
    from trainer.lm.service import replay_chunks

    aside = {corpus_chunks[0].doc_id}
    picked = replay_chunks(corpus_chunks, tokenizer, 20, aside, seed=3)
    assert picked and all(c.doc_id not in aside for c in picked)
    n = [len(tokenizer.encode(c.text)) for c in picked]
    assert sum(n) >= 20 and sum(n[:-1]) < 20  # stops at the first chunk that reaches the budget
    assert picked == replay_chunks(corpus_chunks, tokenizer, 20, aside, seed=3)
    assert replay_chunks(corpus_chunks, tokenizer, 0, set(), seed=3) == []
    everything = replay_chunks(corpus_chunks, tokenizer, 10**9, set(), seed=3)
    assert sorted(map(id, everything)) == sorted(map(id, corpus_chunks))


class WordTokenizer:
    """One token per whitespace word; the special symbols get fixed ids."""

    ctx_open, ctx_close, q_id, a_id = 3, 4, 5, 6

    def encode(self, text: str) -> list[int]:
        return [100 + len(w) for w in text.split()]


def test_prompt_follows_the_training_format():
    plan = plan_prompt(WordTokenizer(), ["alpha beta", "gamma"], "why so", n_ctx=100, max_tokens=10, passage_len=50)
    assert plan.ids == [1, 3, 105, 104, 4, 3, 105, 4, 5, 103, 102, 6]
    assert plan.passages == 2 and plan.max_new == 10


def test_prompt_drops_low_ranked_passages_then_shortens_to_fit():
    passages = [" ".join(["w"] * 40), " ".join(["v"] * 40)]
    plan = plan_prompt(WordTokenizer(), passages, "q", n_ctx=40, max_tokens=64, passage_len=40)
    assert plan.passages == 1 and plan.passage_len < 40
    assert len(plan.ids) + 8 <= 40 and plan.max_new == 40 - len(plan.ids)


def test_question_that_cannot_fit_is_a_context_overflow():
    with pytest.raises(ContextOverflow):
        plan_prompt(WordTokenizer(), [], " ".join(["q"] * 60), n_ctx=20, max_tokens=8, passage_len=10)
