import random

import pytest

from common.errors import ArtifactCorrupt, InvalidInput
from trainer.lm.tokenizer import BOS_ID, EOS_ID, SPECIAL_SYMBOLS, Tokenizer, train_tokenizer

CASES = ["hello world", " leading space", "two  spaces\n\nand\ttabs ", "", "   ", "αβγ 漢字 🙂 emoji",
         "<ctx> passage </ctx><q> who? <a> me", "unseen-word Xylophone42 ∮ ∯", "\n"]


@pytest.mark.parametrize("text", CASES)
def test_text_round_trips(tokenizer, text):
    assert tokenizer.decode(tokenizer.encode(text)) == text
    assert tokenizer.decode_bytes(tokenizer.encode_bytes(text.encode())) == text.encode()


def test_every_byte_string_round_trips(tokenizer):
    rng = random.Random(0)
    samples = [bytes(range(256)), b"\xff\xfe", b"ok\x80\x81tail", b"\xe2\x82"]  # invalid UTF-8 included
    samples += [bytes(rng.randrange(256) for _ in range(rng.randrange(1, 50))) for _ in range(200)]
    for data in samples:
        assert tokenizer.decode_bytes(tokenizer.encode_bytes(data)) == data


def test_special_ids_are_fixed(tokenizer):
    assert [tokenizer.sp.piece_to_id(s) for s in SPECIAL_SYMBOLS] == [3, 4, 5, 6]
    assert tokenizer.sp.id_to_piece(BOS_ID) == "<s>" and tokenizer.sp.id_to_piece(EOS_ID) == "</s>"
    assert 3 in tokenizer.encode("<ctx>x</ctx>") and 4 in tokenizer.encode("<ctx>x</ctx>")


def test_small_corpus_shrinks_vocab():
    tok = train_tokenizer(["a tiny corpus with few words"] * 4, vocab_size=8000)
    assert 300 <= tok.vocab_size < 8000
    assert tok.decode(tok.encode("words unseen Ω")) == "words unseen Ω"


def test_bad_inputs_are_domain_errors(tmp_path):
    with pytest.raises(InvalidInput):
        train_tokenizer([], vocab_size=1000)
    with pytest.raises(InvalidInput):
        train_tokenizer(["text"], vocab_size=10)
    with pytest.raises(ArtifactCorrupt):
        Tokenizer(b"not a model")


def test_save_load_identical(tokenizer, tmp_path):
    tokenizer.save(tmp_path / "t.model")
    again = Tokenizer.load(tmp_path / "t.model")
    assert again.encode("The Moon orbits") == tokenizer.encode("The Moon orbits")
