import pytest

from common.errors import InvalidInput, NotFound
from common.jsonl import iter_jsonl


def test_yields_values_with_their_line_and_skips_blank_lines(tmp_path):
    p = tmp_path / "x.jsonl"
    p.write_text('{"a": 1}\n\n   \n[2]\n', encoding="utf-8")
    assert list(iter_jsonl(p)) == [(f"{p}:1", {"a": 1}), (f"{p}:4", [2])]


@pytest.mark.parametrize("raw, err, where", [
    ('{"a": 1}\n{oops\n', InvalidInput, ":2: invalid JSON"),
    (b'{"a": 1}\n"\xff\xfe"\n', InvalidInput, "not UTF-8"),
])
def test_bad_lines_name_the_file_and_line(tmp_path, raw, err, where):
    p = tmp_path / "bad.jsonl"
    p.write_bytes(raw if isinstance(raw, bytes) else raw.encode())
    with pytest.raises(err, match=where):
        list(iter_jsonl(p))


def test_missing_file_says_what_was_expected(tmp_path):
    with pytest.raises(NotFound, match="pairs file .* does not exist"):
        list(iter_jsonl(tmp_path / "nope.jsonl", "pairs file"))
