import jinja2
import pytest

from common.errors import InvalidInput
from quantize.metadata import chat_template_from_prompt_format, padded_vocab, parse_prompt_format, render_prompt
from quantize.spm_vocab import SpmVocab

FMT = "<s><ctx> {context} </ctx><q> {question} <a> {answer}</s>"


def test_parse_prompt_format():
    p = parse_prompt_format(FMT)
    assert (p.bos, p.ctx_open, p.ctx_close, p.question, p.answer) == (True, "<ctx>", "</ctx>", "<q>", "<a>")
    with pytest.raises(InvalidInput):
        parse_prompt_format("{question} then {context}")


def test_render_prompt_puts_no_space_next_to_symbols():
    assert render_prompt(FMT, ["one", "two"], "why?") == "<ctx>one</ctx><ctx>two</ctx><q>why?<a>"
    assert render_prompt(FMT, ["a "], "b") == "<ctx>a </ctx><q>b<a>"  # text kept verbatim, as qa_prompt_ids encodes it
    assert render_prompt(FMT, [], "q") == "<q>q<a>"


def test_chat_template_renders_the_same_prompt():
    tmpl = jinja2.Environment().from_string(chat_template_from_prompt_format(FMT))
    msgs = [{"role": "system", "content": "one"}, {"role": "system", "content": "two"},
            {"role": "user", "content": "first"}, {"role": "user", "content": "why?"}]
    assert tmpl.render(messages=msgs, bos_token="<s>") == "<s>" + render_prompt(FMT, ["one", "two"], "why?")


def _vocab(n: int) -> SpmVocab:
    return SpmVocab([f"t{i}" for i in range(n)], [0.0] * n, [1] * n, 0, 1, 2, -1, 2, True, "identity", True, False)


def test_padded_vocab_fills_unused_rows_and_refuses_too_few():
    tokens, scores, types = padded_vocab(_vocab(5), 8)
    assert len(tokens) == len(scores) == len(types) == 8
    assert types[5:] == [5, 5, 5] and tokens[5] == "<unused0>"
    with pytest.raises(InvalidInput, match="embedding rows"):
        padded_vocab(_vocab(5), 4)
