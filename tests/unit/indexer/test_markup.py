"""reStructuredText and Markdown become plain text: no directive, role, table rule or link target
reaches a chunk, and the text reads as prose."""

from __future__ import annotations

import re
from pathlib import Path

from indexer.loaders import load_file
from indexer.markup import CODE_CLOSE, CODE_OPEN, looks_like_rst, markdown_to_text, rst_to_text, split_code

SAMPLES = Path(__file__).resolve().parents[3] / "samples" / "python-docs"

RST = """\
.. _csv-module:

:mod:`csv` --- CSV File Reading and Writing
============================================

.. module:: csv
   :synopsis: Write and read tabular data to and from delimited files.

.. versionadded:: 3.2

The :mod:`csv` module reads and writes CSV files. Use :func:`csv.reader` or :func:`~csv.writer`;
see :ref:`the dialects <csv-dialects>` and :class:`!Dialect`.

.. toctree::
   :maxdepth: 2

   dialects.rst
   examples.rst

.. function:: reader(csvfile, dialect='excel')

   Return a reader object.

.. note::

   Files should be opened with ``newline=''``.

+--------+-------+
| name   | value |
+========+=======+
| comma  | ,     |
+--------+-------+

* first item
* second item

.. |sub| replace:: never shown
.. a comment that is never shown
"""


def test_rst_roles_directives_and_tables_become_prose():
    title, text = rst_to_text(RST)
    assert title == "csv --- CSV File Reading and Writing"
    assert "The csv module reads and writes CSV files. Use csv.reader() or writer();" in text
    assert "see the dialects and Dialect." in text
    assert "New in version 3.2." in text
    assert "reader(csvfile, dialect='excel')\n\nReturn a reader object." in text
    assert "Files should be opened with newline=''." in text
    assert "name | value\ncomma | ," in text
    assert "- first item\n- second item" in text
    for markup in ("toctree", "dialects.rst", ":maxdepth:", ":mod:", "``", ".. ", "never shown", "synopsis", "+---"):
        assert markup not in text, markup


def test_rst_is_recognised_by_its_constructs_not_its_extension():
    assert looks_like_rst(RST)
    assert not looks_like_rst("Meeting notes: we met at 10:30.\nNext steps: ship it.\n")
    assert not looks_like_rst("A title\n=======\n\nJust one heading and prose.\n")


MD = """\
# Key rotation

Rotate **API keys** every [90 days](https://example.org/policy) with `kiln rotate`.

- step one
- step two

| setting | default |
|---|---|
| period | 90 |

```bash
kiln rotate --all
```

<div class="note">An <b>HTML</b> note.</div>
"""


def test_markdown_keeps_the_words_and_drops_the_markup():
    title, text = markdown_to_text(MD)
    assert title == "Key rotation"
    assert "Rotate API keys every 90 days with kiln rotate." in text
    assert "- step one\n- step two" in text
    assert "setting | default\nperiod | 90" in text
    assert "kiln rotate --all" in text
    assert "An HTML note." in text
    for markup in ("**", "](", "```", "<div", "|---"):
        assert markup not in text, markup


def test_the_sample_corpus_stores_no_markup():
    """Every sample page (Sphinx sources saved as .txt, Markdown, HTML) loads without RST markup."""
    leftovers = re.compile(r"(:[a-z]+:`|^\s*\.\. [a-z-]+::|``|^\s*\.\. _)", re.MULTILINE)
    files = [p for p in SAMPLES.rglob("*") if p.is_file()]
    assert len(files) > 100
    for path in files:
        res = load_file(path, path.name, 64 * 2**20)
        assert not res.skipped, (path, res.skipped)
        for doc in res.documents:
            m = leftovers.search(doc.text)
            assert m is None, f"{path.name}: {m.group(0)!r}"
            assert CODE_OPEN not in doc.text and CODE_CLOSE not in doc.text, path.name
            for a, b in doc.code:
                block = doc.text[a:b]
                assert 0 <= a < b <= len(doc.text) and block == block.rstrip() and block.strip(), (path.name, a, b)
    assert sum(bool(load_file(p, p.name, 64 * 2**20).documents[0].code) for p in files) > 50  # pages with examples


def test_a_sphinx_class_entry_keeps_its_signature():
    """docutils' own `class` directive shares the name and dropped every class's signature line."""
    text = ("code\n====\n\n.. class:: InteractiveConsole(locals=None, filename=\"<console>\")\n\n"
            "   Closely emulate the interactive interpreter.\n\n.. class:: Queue\n\n   A FIFO queue.\n\n"
            ".. class:: special\n\nA paragraph given a class attribute, as docutils means it.\n")
    _title, body = rst_to_text(text)
    assert body.split("\n\n") == ["code", "InteractiveConsole(locals=None, filename=\"<console>\")",
                                  "Closely emulate the interactive interpreter.", "Queue", "A FIFO queue.",
                                  "A paragraph given a class attribute, as docutils means it."]


def test_a_sphinx_code_block_is_code_kept_line_by_line_without_its_language():
    """Sphinx's `code-block` was read as prose: its lines reflowed into a paragraph after a line "cmake"."""
    rst = ("add_custom_command\n------------------\n\nAdd a custom build rule.\n\n.. code-block:: cmake\n"
           "   :caption: the signature\n\n  add_custom_command(OUTPUT output1 [output2 ...]\n"
           "                     COMMAND command1 [ARGS] [args1...])\n\nThis defines a command.\n\n"
           ".. sourcecode::\n\n  set(X 1)\n")
    _t, marked = rst_to_text(rst)
    text, code = split_code(marked)
    assert [text[a:b] for a, b in code] == [
        "add_custom_command(OUTPUT output1 [output2 ...]\n                   COMMAND command1 [ARGS] [args1...])",
        "set(X 1)"]
    assert text.split("\n\n")[1:3] == ["Add a custom build rule.", code and text[code[0][0]:code[0][1]]]
    assert "cmake" not in text.replace("add_custom_command", "") and "caption" not in text


def test_code_blocks_are_marked_and_their_offsets_split_out():
    rst = "Title\n=====\n\nThe following command lists a bucket::\n\n    aws s3 ls s3://b\n\n>>> 1 + 1\n2\n\n| a verse\n"
    _t, marked = rst_to_text(rst)
    text, code = split_code(marked)
    assert [text[a:b] for a, b in code] == ["aws s3 ls s3://b", ">>> 1 + 1\n2"]  # a line block is not code
    assert "The following command lists a bucket:\n\naws s3 ls" in text
    _t, marked = markdown_to_text(MD)
    text, code = split_code(marked)
    assert [text[a:b] for a, b in code] == ["kiln rotate --all"]
    assert split_code(f"a{CODE_OPEN}  x = 1\n{CODE_CLOSE}b{CODE_CLOSE}c{CODE_OPEN} {CODE_CLOSE}") == ("a  x = 1\nbc ", ((1, 8),))
    assert split_code(f"{CODE_OPEN}\n\n  if x:\n    y()\n{CODE_CLOSE}") == ("\n\n  if x:\n    y()\n", ((2, 17),))


def test_front_matter_gives_the_title_and_description_and_never_reaches_the_text():
    from indexer.markup import front_matter, markdown_to_text

    page = ("---\ntitle: npm-install\nsection: 1\ndescription: Install a package\ntags:\n  - cli\n---\n\n"
            "### Synopsis\n\nThis command installs a package.\n")
    title, text = markdown_to_text(page)
    assert title == "npm-install: Install a package"
    assert text == "Install a package\n\nSynopsis\n\nThis command installs a package."
    hugo = '+++\ntitle = "Quick start"\ndraft = false\n[params]\n  weight = 2\n+++\n# Heading\n\nBody.\n'
    assert markdown_to_text(hugo) == ("Quick start", "Heading\n\nBody.")
    # A thematic break, a paragraph and another break are content, not front matter.
    prose = "---\nThis paragraph sits between two rules.\n---\n\nMore.\n"
    assert front_matter(prose) == ({}, prose)
    assert front_matter("---\nno closing fence: here\n\nBody") == ({}, "---\nno closing fence: here\n\nBody")
