"""What a document folder holds besides UTF-8 is read, and what is not text is refused with a reason."""

from __future__ import annotations

import codecs

import pytest

from indexer.encoding import Undecodable, decode_text

WESTERN = "Caf\u00e9 au lait, na\u00efve \u2018quotes\u2019 \u2013 r\u00e9sum\u00e9.\nSecond line."


@pytest.mark.parametrize("raw,text,encoding", [
    (WESTERN.encode("utf-8"), WESTERN, "utf-8"),
    (codecs.BOM_UTF8 + WESTERN.encode("utf-8"), WESTERN, "utf-8-sig"),
    (WESTERN.encode("utf-16"), WESTERN, "utf-16"),  # what Windows Notepad saves as "Unicode"
    (codecs.BOM_UTF16_BE + WESTERN.encode("utf-16-be"), WESTERN, "utf-16"),
    (WESTERN.encode("utf-32"), WESTERN, "utf-32"),
    (WESTERN.encode("cp1252"), WESTERN, "cp1252"),
    ("Un caf\u00e9, s'il vous pla\u00eet.".encode("latin-1"), "Un caf\u00e9, s'il vous pla\u00eet.", "cp1252"),
])
def test_text_in_the_encodings_documents_come_in_is_read(raw, text, encoding):
    assert decode_text(raw) == (text, encoding)


def test_a_declared_charset_is_read():
    raw = '<html><head><meta charset="iso-8859-15"></head><body>\u20ac 5</body></html>'.encode("iso-8859-15")
    text, encoding = decode_text(raw)
    assert "\u20ac 5" in text and encoding == "iso8859-15"
    xml = '<?xml version="1.0" encoding="koi8-r"?><doc>\u041f\u0440\u0438\u0432\u0435\u0442</doc>'.encode("koi8-r")
    assert "\u041f\u0440\u0438\u0432\u0435\u0442" in decode_text(xml)[0]
    # latin-1 declared is read as browsers read it: Windows-1252 (0x93/0x94 are curly quotes)
    legacy = b'<meta charset="iso-8859-1"><p>\x93quoted\x94</p>'
    assert decode_text(legacy) == ('<meta charset="iso-8859-1"><p>\u201cquoted\u201d</p>', "cp1252")


@pytest.mark.parametrize("raw,reason", [
    (b"abc\x00\x01\x02", "NUL bytes"),
    (b"\x7fELF\x02\x01\x00\x00", "NUL bytes"),
    (("\u041f\u0440\u0438\u0432\u0435\u0442 \u043c\u0438\u0440. " * 20).encode("cp1251"), "UTF-8"),  # mojibake if read
    (("\u65e5\u672c\u8a9e\u306e\u6587\u7ae0\u3067\u3059\u3002" * 10).encode("shift_jis"), "UTF-8"),
    (b"\x80\x81 x", "UTF-8"),  # 0x81 is no Windows-1252 character
    (b"\xff\xfe\xfa bad utf8", "UTF-16"),  # a UTF-16 mark before bytes that read as unassigned characters
    (codecs.BOM_UTF16_LE + b"abc", "UTF-16"),  # an odd byte count
    (codecs.BOM_UTF8 + b"caf\xe9", "UTF-8 after"),
    (b'<meta charset="utf-16"><p>' + "\u65e5\u672c\u8a9e".encode("shift_jis") * 30, "UTF-8"),  # a label without a mark
])
def test_what_is_not_text_is_refused_with_why(raw, reason):
    with pytest.raises(Undecodable, match=reason):
        decode_text(raw)
