"""Which characters a text file's bytes are: what a folder of real documents holds besides UTF-8.

Windows editors save "Unicode" text as UTF-16 with a byte-order mark, and older Western documents are in
Windows-1252 (a superset of Latin-1's printable characters); an HTML or XML file may declare its charset.
The order: a byte-order mark (UTF-8, UTF-16, UTF-32); NUL bytes without one mean binary content; UTF-8;
the charset the markup declares; Windows-1252. A decoding other than UTF-8 is kept only when its text is
plausible: almost no unassigned, private-use or control characters, and, for Windows-1252 (which decodes
most byte strings), few non-ASCII bytes, so Cyrillic or CJK text in a legacy code page is refused with a
reason instead of being stored as mojibake.
"""

from __future__ import annotations

import codecs
import unicodedata

# UTF-32's marks first: UTF-32 LE's begins with UTF-16 LE's
_BOMS = ((codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"), (codecs.BOM_UTF8, "utf-8-sig"),
         (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"))
LEGACY = "cp1252"
LEGACY_MAX_NON_ASCII = 0.2  # Western prose: a few percent (é, ü, ’); Cyrillic or Greek read as cp1252: most bytes
MAX_IMPLAUSIBLE = 0.01  # share of unassigned, private-use, surrogate or control characters (not tab or newlines)
_SNIFF = 8192
_SAMPLE = 65536
_HIGH_BYTES = bytes(range(0x80, 0x100))
_LABEL = {"utf-32": "UTF-32", "utf-8-sig": "UTF-8", "utf-16": "UTF-16"}
_READ_AS_LEGACY = ("iso8859-1", "ascii")  # as browsers read these labels (the WHATWG Encoding Standard)


class Undecodable(ValueError):
    """The bytes are not text in any encoding read here; the message says why."""


def _implausible(text: str) -> float:
    """Share of characters no text holds, over the first `_SAMPLE` (a large file costs no more than a page)."""
    sample = text[:_SAMPLE]
    bad = sum(1 for ch in sample if ch not in "\t\n\r\f\v" and unicodedata.category(ch) in ("Cc", "Cn", "Co", "Cs"))
    return bad / max(1, len(sample))


def _declared(raw: bytes) -> str | None:
    """The charset an HTML or XML head declares, when Python knows it."""
    head = raw[:_SNIFF].lstrip()
    if not head.startswith(b"<"):
        return None
    from bs4.dammit import EncodingDetector

    name = EncodingDetector.find_declared_encoding(head, is_html=not head.startswith(b"<?xml"))
    try:
        return codecs.lookup(name).name if name else None
    except LookupError:
        return None


def decode_text(raw: bytes) -> tuple[str, str]:
    """(text, the encoding read); Undecodable with the reason when the bytes are no text read here."""
    for bom, encoding in _BOMS:
        if raw.startswith(bom):
            try:
                text = raw.decode(encoding)
            except UnicodeDecodeError as e:
                raise Undecodable(f"not valid {_LABEL[encoding]} after its byte-order mark (byte {e.start})") from None
            if _implausible(text) > MAX_IMPLAUSIBLE:
                raise Undecodable(f"not {_LABEL[encoding]} text despite its byte-order mark")
            return text, encoding
    if b"\x00" in raw[:_SNIFF]:
        raise Undecodable("binary content (NUL bytes) in a text file")
    try:
        return raw.decode("utf-8"), "utf-8"
    except UnicodeDecodeError as e:
        bad_utf8 = e.start
    declared = _declared(raw)
    declared = LEGACY if declared in _READ_AS_LEGACY else declared
    if declared and not declared.startswith("utf"):  # the file says what it is: no share limit (a UTF-16 label
        # on bytes without its mark is read as UTF-8 by browsers, and they were not UTF-8)
        try:
            text = raw.decode(declared)
            if _implausible(text) <= MAX_IMPLAUSIBLE:
                return text, declared
        except UnicodeDecodeError:
            pass
    try:
        text = raw.decode(LEGACY)
    except UnicodeDecodeError:
        text = ""
    non_ascii = (len(raw) - len(raw.translate(None, _HIGH_BYTES))) / len(raw)
    if text and non_ascii <= LEGACY_MAX_NON_ASCII and _implausible(text) <= MAX_IMPLAUSIBLE:
        return text, LEGACY
    raise Undecodable(f"not valid UTF-8 (byte {bad_utf8}) nor Western (Windows-1252) text; save it as UTF-8")
