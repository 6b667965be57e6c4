"""The held-out answer check: the QA-tuned model against the extractive reader, and the gate that reads it."""

from __future__ import annotations

import torch

from quantize.gate import answers_gate, gate_model
from trainer.lm.answer_check import (compare_answers, model_answerer, pick_questions, read_heldout,
                                     write_heldout)
from trainer.lm.model import Transformer
from trainer.lm.qa import QaExample

EXAMPLES = [QaExample("Where was the piano invented?", "Italy", ("The piano was invented in Italy.",), "piano"),
            QaExample("Which way does the Nile flow?", "north", ("The Nile flows north.",), "rivers"),
            QaExample("What is SQLite written in?", "C", ("SQLite is written in C.",), "sql"),
            QaExample("Who built the first piano?", "Bartolomeo Cristofori", ("Cristofori built it.",), "piano")]


def test_both_answerers_are_scored_against_the_same_answers():
    model = {"Italy": "Italy", "north": "the north", "C": "Python", "Bartolomeo Cristofori": "Cristofori"}
    check = compare_answers(EXAMPLES, lambda e: model[e.answer], lambda e: None if e.answer == "C" else "Italy")
    assert check.questions == 4
    assert check.model_em == 0.5  # "the north" normalises to "north"; Python and Cristofori are not exact
    assert abs(check.model_f1 - (1 + 1 + 0 + 2 / 3) / 4) < 1e-4  # Cristofori: precision 1, recall 1/2
    assert check.reader_f1 == check.reader_em == 0.25  # no answer scores 0
    assert check.model_wins and check.to_dict()["model_wins"]
    assert not compare_answers(EXAMPLES, lambda e: "", lambda e: e.answer).model_wins


def test_questions_are_sampled_reproducibly_and_get_their_passages(tmp_path):
    bare = [QaExample(f"question {i}?", "x") for i in range(10)]
    got = pick_questions(bare, 3, seed=1, retrieve=lambda q: [f"passage for {q}"])
    assert [e.context for e in got] == [(f"passage for {e.question}",) for e in got] and len(got) == 3
    assert got == pick_questions(bare, 3, seed=1, retrieve=lambda q: [f"passage for {q}"])
    assert pick_questions(bare, 3, seed=1) == []  # nothing to read them from
    assert pick_questions(EXAMPLES, 10, seed=0) == EXAMPLES  # own passages kept, nothing sampled away
    path = tmp_path / "heldout.jsonl"
    assert write_heldout(path, EXAMPLES) == 4 and read_heldout(path) == EXAMPLES
    assert read_heldout(tmp_path / "missing.jsonl") == []


def test_the_model_answers_greedily_from_a_prompt_that_fits(tokenizer, tiny_args):
    torch.manual_seed(0)
    model = Transformer(tiny_args)
    answer = model_answerer(model, tokenizer, passage_len=320, context_sentences=0, repeat_penalty=1.1, max_tokens=5)
    long = QaExample("Where was the piano invented?", "Italy", ("The piano was invented in Italy. " * 80,))
    assert len(tokenizer.encode(long.context[0])) > tiny_args.max_seq_len  # the passage is cut to fit
    first = answer(long)
    assert isinstance(first, str) and first == answer(long)  # greedy: the same every time
    assert len(tokenizer.encode(first)) <= 5


def test_the_gate_keeps_a_model_that_answers_worse_than_the_reader_extractive():
    good_ppl = {"metrics": {"heldout_ppl": 20.0}, "model_args": {"vocab_size": 400}}
    worse = {**good_ppl, "metrics": {**good_ppl["metrics"], "heldout_answers": {
        "questions": 100, "model_f1": 0.04, "reader_f1": 0.31}}}
    ok, why = gate_model(worse, None, "q8_0")
    assert not ok and "0.040" in why and "0.310" in why and "100 held-out questions" in why
    better = {**good_ppl, "metrics": {**good_ppl["metrics"], "heldout_answers": {
        "questions": 100, "model_f1": 0.5, "reader_f1": 0.31}}}
    assert gate_model(better, None, "q8_0")[0]
    ok, why = gate_model(good_ppl, None, "q8_0")  # never compared: the perplexity bound alone
    assert ok and "not compared" in why
    assert gate_model(worse, None, "q8_0", override=True)[0]  # server.generative still decides first
    assert answers_gate({"questions": 5, "model_f1": 0.2, "reader_f1": 0.2}, "")[0]  # a tie may generate


def test_the_build_report_states_the_call():
    from pipeline.report_summary import summary_rows

    stages = {"qa": {"outputs": {"synthetic_questions": 40, "heldout_answers": {
        "questions": 12, "model_f1": 0.05, "reader_f1": 0.4}}}}
    rows = dict(summary_rows(stages))
    assert rows["answers in the LM's own words"].endswith("the reader answers for it")
    assert "12 held-out questions" in rows["answers in the LM's own words"]
