"""Uploads judged by content; ids from client names never become paths."""

from __future__ import annotations

import pytest

from common.errors import InvalidInput
from server.documents import doc_id_from_filename, parse_upload, sniff_kind


@pytest.mark.parametrize("data,kind", [
    (b"%PDF-1.4 ...", "pdf"),
    (b"<!DOCTYPE html><html><body>x</body></html>", "html"),
    (b"  <html><p>x</p></html>", "html"),
    (b"# Title\n\nSome text", "markdown"),
    ("plain text, caf\u00e9".encode(), "text"),
    ("plain text, caf\u00e9".encode("cp1252"), "text"),
    ("<html><body>caf\u00e9</body></html>".encode("utf-16"), "html"),
])
def test_kind_comes_from_the_bytes(data, kind):
    assert sniff_kind(data) == kind


@pytest.mark.parametrize("data", [b"", b"\x7fELF\x02\x01\x00\x00", b"PK\x03\x04\x00\x00zip", b"\xff\xfe\xfa bad utf8",
                                  b"\x80\x81 not text"])
def test_binary_or_empty_uploads_are_refused(data):
    with pytest.raises(InvalidInput):
        sniff_kind(data)


def test_doc_id_is_the_last_name_component_only():
    assert doc_id_from_filename("../../etc/passwd") == "passwd"
    assert doc_id_from_filename("C:\\Users\\x\\notes.txt") == "notes.txt"
    assert doc_id_from_filename("a\x00b\nc.md") == "abc.md"
    for bad in (None, "", "..", "/"):
        with pytest.raises(InvalidInput):
            doc_id_from_filename(bad)


def test_upload_named_like_a_pdf_but_holding_text_is_parsed_as_text(tmp_path):
    doc = parse_upload(tmp_path, b"Just words about rivers.\nMore words.", "evil.pdf", None, 1 << 20)
    assert doc.doc_id == "evil.pdf" and doc.text.startswith("Just words") and doc.title == ""
    assert doc.source == "upload:text"
    assert list((tmp_path / "uploads").iterdir()) == []  # the temporary file is gone
    assert sorted(p.name for p in tmp_path.iterdir()) == ["uploads"]


def test_html_upload_gets_its_title_and_loses_its_markup(tmp_path):
    doc = parse_upload(tmp_path, b"<html><head><title>Rivers</title></head><body><p>Water flows.</p>"
                                 b"<script>alert(1)</script></body></html>", "r", None, 1 << 20)
    assert doc.title == "Rivers" and "Water flows." in doc.text and "alert" not in doc.text


def test_broken_pdf_is_a_clear_error_and_leaves_nothing_behind(tmp_path):
    with pytest.raises(InvalidInput, match="pdf"):
        parse_upload(tmp_path, b"%PDF-1.4 not really a pdf", "x.pdf", None, 1 << 20)
    assert list((tmp_path / "uploads").iterdir()) == []
