from __future__ import annotations

from pathlib import Path

import pytest

from common.errors import InvalidInput, NotFound
from ner.readers import NerExample, check_policy, iob_to_spans, read_conll, read_examples, read_jsonl, to_docs


def test_iob2_spans() -> None:
    tags = ["B-PER", "I-PER", "O", "B-LOC", "B-LOC", "I-LOC"]
    assert iob_to_spans(tags) == [(0, 2, "PER"), (3, 4, "LOC"), (4, 6, "LOC")]


def test_iob1_spans_start_with_inside_tags() -> None:
    # IOB1: I- opens a chunk; B- only separates two adjacent chunks of the same type.
    tags = ["I-ORG", "I-ORG", "O", "I-PER", "B-PER", "I-MISC"]
    assert iob_to_spans(tags) == [(0, 2, "ORG"), (3, 4, "PER"), (4, 5, "PER"), (5, 6, "MISC")]


def test_type_change_inside_chunk_splits_it() -> None:
    assert iob_to_spans(["B-ORG", "I-LOC", "I-LOC"]) == [(0, 1, "ORG"), (1, 3, "LOC")]


def test_iobes_spans() -> None:
    tags = ["S-PER", "B-ORG", "I-ORG", "E-ORG", "S-ORG", "O"]
    assert iob_to_spans(tags) == [(0, 1, "PER"), (1, 4, "ORG"), (4, 5, "ORG")]


@pytest.mark.parametrize("bad", ["B-", "X-PER", "PER", "b_PER"])
def test_invalid_tags_are_errors(bad: str) -> None:
    with pytest.raises(InvalidInput, match="invalid NER tag"):
        iob_to_spans(["O", bad], "f.txt:3")


def test_read_conll_with_docstart_and_iob1(tmp_path: Path) -> None:
    p = tmp_path / "d.conll"
    p.write_text(
        "-DOCSTART- -X- -X- O\n\n"
        "EU NNP B-NP I-ORG\nrejects VBZ B-VP O\nGerman JJ B-NP I-MISC\ncall NN I-NP O\n\n"
        "-DOCSTART- -X- -X- O\n"
        "Peter NNP B-NP I-PER\nBlackburn NNP I-NP I-PER\n",
        encoding="utf-8",
    )
    exs = read_conll(p)
    assert [e.text for e in exs] == ["EU rejects German call", "Peter Blackburn"]
    assert exs[0].spans == ((0, 2, "ORG"), (11, 17, "MISC"))
    assert exs[1].spans == ((0, 15, "PER"),)
    assert exs[0].words == ("EU", "rejects", "German", "call")
    assert exs[0].source == "d.conll:3"


def test_read_conll_rejects_lines_without_tag(tmp_path: Path) -> None:
    p = tmp_path / "d.txt"
    p.write_text("EU B-ORG\nrejects\n", encoding="utf-8")
    with pytest.raises(InvalidInput, match="d.txt:2"):
        read_conll(p)


def test_missing_file_is_not_found(tmp_path: Path) -> None:
    with pytest.raises(NotFound):
        read_examples(tmp_path / "nope.jsonl")


def test_read_jsonl_and_validation(tmp_path: Path) -> None:
    p = tmp_path / "d.jsonl"
    p.write_text('{"text": "Pfizer makes aspirin", "entities": [[13, 20, "DRUG"], [0, 6, "ORG"]]}\n\n', encoding="utf-8")
    (ex,) = read_jsonl(p)
    assert ex.spans == ((0, 6, "ORG"), (13, 20, "DRUG"))  # sorted by start
    assert ex.words is None


@pytest.mark.parametrize(
    ("line", "msg"),
    [
        ('{"text": "abc", "entities": [[0, 9, "X"]]}', "outside the text"),
        ('{"text": "abcdef", "entities": [[0, 3, "X"], [2, 5, "Y"]]}', "overlap"),
        ('{"text": "abc", "entities": [[0, 2]]}', "is not"),
        ('{"entities": []}', "string 'text'"),
        ("{not json", "invalid JSON"),
    ],
)
def test_read_jsonl_errors_name_the_line(tmp_path: Path, line: str, msg: str) -> None:
    p = tmp_path / "bad.jsonl"
    p.write_text('{"text": "ok", "entities": []}\n' + line + "\n", encoding="utf-8")
    with pytest.raises(InvalidInput, match=msg) as ei:
        read_jsonl(p)
    assert "bad.jsonl:2" in str(ei.value)


def _misaligned() -> list[NerExample]:
    # "Pfizer" is a whole token; "aspiri" ends inside the token "aspirin".
    return [NerExample("Pfizer sells aspirin now", ((0, 6, "ORG"), (13, 19, "DRUG")), source="x:1")]


def test_misaligned_spans_are_an_error_by_default() -> None:
    import spacy

    with pytest.raises(InvalidInput, match="1 of 2 entity spans do not align") as ei:
        to_docs(spacy.blank("en"), _misaligned())
    assert "'aspiri'" in str(ei.value)


def test_misaligned_spans_expand_or_skip_are_reported() -> None:
    import spacy

    nlp = spacy.blank("en")
    docs, rep = to_docs(nlp, _misaligned(), misaligned="expand")
    assert [(e.text, e.label_) for e in docs[0].ents] == [("Pfizer", "ORG"), ("aspirin", "DRUG")]
    assert (rep.misaligned, rep.total_spans) == (1, 2)
    docs, rep = to_docs(nlp, _misaligned(), misaligned="skip")
    assert [e.text for e in docs[0].ents] == ["Pfizer"]
    assert rep.misaligned == 1 and rep.examples == ["x:1: 'aspiri' [13, 19) DRUG"]


def test_pretokenized_examples_keep_their_tokens() -> None:
    import spacy

    ex = NerExample("U.S. forces", ((0, 4, "LOC"),), words=("U.S.", "forces"))
    docs, rep = to_docs(spacy.blank("en"), [ex])
    assert [t.text for t in docs[0]] == ["U.S.", "forces"]
    assert [(e.text, e.label_) for e in docs[0].ents] == [("U.S.", "LOC")]
    assert rep.misaligned == 0


def test_check_policy() -> None:
    assert check_policy("skip") == "skip"
    with pytest.raises(InvalidInput):
        check_policy("drop")
