import json
import logging

from indexer.loaders import iter_files, load_file
from indexer.stream import iter_scan

MB = 2**20


def test_text_markdown_html(tmp_path):
    (tmp_path / "a.md").write_text("# Title here\n\nBody text.")
    (tmp_path / "b.html").write_text("<html><head><title>T</title><style>x{}</style></head>"
                                     "<body><p>Hello <b>world</b></p><script>evil()</script></body></html>")
    md = load_file(tmp_path / "a.md", "a.md", MB).documents[0]
    assert md.title == "Title here" and "Body text." in md.text and len(md.sha256) == 64
    html = load_file(tmp_path / "b.html", "b.html", MB).documents[0]
    assert html.title == "T" and "Hello" in html.text and "evil" not in html.text and "x{}" not in html.text


def test_code_blocks_of_html_and_markdown_are_kept_and_plain_text_has_none(tmp_path):
    (tmp_path / "c.html").write_text("<html><body><p>Run this:</p><pre>\n  aws s3 ls\n    --recursive\n</pre>"
                                     "<p>Done.</p><pre>  </pre></body></html>")
    (tmp_path / "c.md").write_text("# T\n\nInstall it:\n\n```bash\npip install x\n```\n\nThen:\n\n    kiln go\n")
    (tmp_path / "c.txt").write_text("Control \x02marks\x03 are never text.\n")
    html = load_file(tmp_path / "c.html", "c.html", MB).documents[0]
    assert html.text == "Run this:\n\n  aws s3 ls\n    --recursive\n\nDone." and \
        [html.text[a:b] for a, b in html.code] == ["  aws s3 ls\n    --recursive"]  # code keeps its indentation
    md = load_file(tmp_path / "c.md", "c.md", MB).documents[0]
    assert [md.text[a:b] for a, b in md.code] == ["pip install x", "kiln go"]
    txt = load_file(tmp_path / "c.txt", "c.txt", MB).documents[0]
    assert txt.text == "Control marks are never text.\n" and txt.code == ()


def test_bad_files_are_skipped_with_reasons(tmp_path):
    (tmp_path / "empty.txt").write_text("")
    (tmp_path / "bin.txt").write_bytes(b"abc\x00\x01\x02")
    (tmp_path / "cyrillic.txt").write_bytes(("\u041f\u0440\u0438\u0432\u0435\u0442. " * 9).encode("cp1251"))
    (tmp_path / "img.png").write_bytes(b"\x89PNG\r\n")
    (tmp_path / "big.txt").write_text("x" * 2048)
    (tmp_path / "blank.txt").write_text("   \n\n  ")
    reasons = {}
    for name in ["empty.txt", "bin.txt", "cyrillic.txt", "img.png", "blank.txt"]:
        res = load_file(tmp_path / name, name, MB)
        assert res.documents == [] and len(res.skipped) == 1
        reasons[name] = res.skipped[0].reason
    assert "empty" in reasons["empty.txt"]
    assert "binary" in reasons["bin.txt"]
    assert "UTF-8" in reasons["cyrillic.txt"]
    assert "unsupported" in reasons["img.png"]
    assert "no text" in reasons["blank.txt"]
    big = load_file(tmp_path / "big.txt", "big.txt", 1024)
    assert "limit" in big.skipped[0].reason


def test_legacy_and_utf16_text_files_are_read(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="indexer.stream")
    (tmp_path / "notes.txt").write_bytes("Caf\u00e9 menu.\r\nTwo lines.".encode("utf-16"))  # Notepad's "Unicode"
    (tmp_path / "old.md").write_bytes("# R\u00e9sum\u00e9\n\nNa\u00efve text.".encode("cp1252"))
    notes = load_file(tmp_path / "notes.txt", "notes.txt", MB).documents[0]
    assert notes.text == "Caf\u00e9 menu.\nTwo lines."
    old = load_file(tmp_path / "old.md", "old.md", MB).documents[0]
    assert old.title == "R\u00e9sum\u00e9" and "Na\u00efve text." in old.text
    assert load_file(tmp_path / "old.md", "old.md", MB).encoding == "cp1252"
    assert list(iter_scan([tmp_path], MB, [], [])) and "old.md: read as cp1252" in caplog.text  # the guess is said
    assert "notes.txt: read as utf-16" in caplog.text


def test_beir_jsonl_keeps_good_lines(tmp_path):
    lines = [json.dumps({"_id": "d1", "title": "T1", "text": "one"}), "{not json",
             json.dumps({"_id": "d2", "text": "two"}), json.dumps({"title": "no id"}),
             json.dumps({"_id": "d1", "text": "dup"})]
    (tmp_path / "corpus.jsonl").write_text("\n".join(lines))
    res = load_file(tmp_path / "corpus.jsonl", "corpus.jsonl", MB)
    assert [d.doc_id for d in res.documents] == ["d1", "d2"]
    assert res.documents[0].title == "T1"
    assert len(res.skipped) == 3


def test_beir_folder_yields_only_its_corpus(tmp_path):
    """Queries of a BEIR folder share the corpus's id space; ingesting them as documents would collide."""
    beir = tmp_path / "scifact"
    (beir / "qrels").mkdir(parents=True)
    (beir / "corpus.jsonl").write_text(json.dumps({"_id": "1", "text": "doc"}))
    (beir / "queries.jsonl").write_text(json.dumps({"_id": "1", "text": "query"}))
    (beir / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n1\t1\t1\n")
    assert list(iter_files(beir)) == [beir / "corpus.jsonl"]
    (tmp_path / "notes.jsonl").write_text(json.dumps({"_id": "n", "text": "x"}))
    assert beir / "queries.jsonl" not in list(iter_files(tmp_path))  # nested: walked as a BEIR folder too
    assert tmp_path / "notes.jsonl" in list(iter_files(tmp_path))


def test_pdf_text_extracted(tmp_path):
    pdf = tmp_path / "doc.pdf"
    pdf.write_bytes(minimal_pdf("Hello from a PDF page"))
    res = load_file(pdf, "doc.pdf", MB)
    assert res.skipped == []
    assert "Hello from a PDF page" in res.documents[0].text
    (tmp_path / "broken.pdf").write_bytes(b"%PDF-1.4 garbage")
    assert load_file(tmp_path / "broken.pdf", "broken.pdf", MB).skipped


def minimal_pdf(text: str) -> bytes:
    """A one-page PDF with a Helvetica text line, built by hand (no PDF writer dependency)."""
    stream = f"BT /F1 12 Tf 72 720 Td ({text}) Tj ET".encode()
    objs = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for i, body in enumerate(objs, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % i + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objs) + 1)
    for off in offsets:
        out += b"%010d 00000 n \n" % off
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objs) + 1, xref)
    return bytes(out)


def test_html_inline_elements_stay_on_their_line_and_page_chrome_is_dropped(tmp_path):
    """A browser shows "The csv module reads ..." on one line; the text must too (issue 27: answers
    like "The\\ncsv\\nmodule" came from newlines put between inline elements)."""
    (tmp_path / "p.html").write_text(
        '<html><body><div role="navigation"><a href="i.html">index</a> | <a href="n.html">next</a></div>'
        '<h1>csv</h1><p>The <a href="csv.html"><code><span class="pre">csv</span></code></a>\nmodule reads '
        '<em>files</em>.</p><ul><li>one</li><li>two</li></ul><pre>a = 1\n    b = 2</pre><!-- note --></body></html>')
    text = load_file(tmp_path / "p.html", "p.html", MB).documents[0].text
    assert "The csv module reads files." in text.splitlines()
    assert "index" not in text and "next" not in text and "note" not in text
    assert [ln for ln in text.splitlines() if ln][:4] == ["csv", "The csv module reads files.", "one", "two"]
    assert "a = 1\n    b = 2" in text  # a <pre> keeps its line breaks and indentation


def test_a_page_with_one_main_element_is_read_from_it_alone(tmp_path):
    """A documentation generator's template around <main> (mdBook's keyboard help, a footer without an ARIA
    role) is on every page; the page's own text is inside it. Without one main element the whole page is read."""
    chrome = '<div id="help"><h2>Keyboard shortcuts</h2><p>Press S to search</p></div><div class="footer">© 2026</div>'
    (tmp_path / "m.html").write_text(f"<html><head><title>T</title></head><body>{chrome}<main><h1>Intro</h1>"
                                     "<p>Rustdoc builds docs.</p><div role=\"main\"><p>Nested.</p></div></main></body></html>")
    (tmp_path / "r.html").write_text(f'<html><body>{chrome}<div class="body" role="main"><p>Sphinx body.</p></div>'
                                     "</body></html>")
    (tmp_path / "two.html").write_text(f"<html><body>{chrome}<main><p>One.</p></main><main><p>Two.</p></main></body></html>")
    (tmp_path / "empty.html").write_text(f"<html><body>{chrome}<main> </main><p>Loaded later.</p></body></html>")
    read = lambda name: load_file(tmp_path / name, name, MB).documents[0]  # noqa: E731
    m = read("m.html")
    assert m.title == "T" and m.text == "Intro\n\nRustdoc builds docs.\n\nNested."
    assert read("r.html").text == "Sphinx body."
    for name in ("two.html", "empty.html"):  # no single main element with text: the whole page
        assert "Keyboard shortcuts" in read(name).text


def test_a_redirect_page_is_skipped_with_where_it_goes(tmp_path):
    (tmp_path / "old.html").write_text('<html><head><title>Redirecting...</title><meta http-equiv="Refresh" '
                                       'content="0; URL=new.html#passes"></head><body><p>Redirecting to... '
                                       '<a href="new.html#passes">new.html</a>.</p></body></html>')
    (tmp_path / "live.html").write_text('<html><head><meta http-equiv="refresh" content="300"></head>'
                                        "<body><p>Scores, reloaded every five minutes.</p></body></html>")
    old = load_file(tmp_path / "old.html", "old.html", MB)
    assert old.documents == [] and [s.reason for s in old.skipped] == ["a redirect page (to new.html#passes)"]
    assert load_file(tmp_path / "live.html", "live.html", MB).documents[0].text == "Scores, reloaded every five minutes."
