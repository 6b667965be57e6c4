"""reStructuredText and Markdown rendered to the plain text that is stored, chunked, cited and answered
from: markup (directives, roles, table rules, link targets) never reaches a chunk or an answer.

Parsed with the real parsers (docutils, markdown-it-py), not regexes. The rendered text *is* the
stored document text, so chunk and citation offsets point into it. Blocks are separated by a blank
line; a list item or a table row is one line.

Code (a literal block, a doctest, a fenced or indented code block, an HTML <pre>) is rendered between
CODE_OPEN and CODE_CLOSE; `split_code` takes the marks out and returns where each block lies, so the
store can keep them (an answer to "How do I ...?" shows the example its sentence introduces).
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterable
from typing import Any

# Sphinx directives whose body is navigation or build machinery, never prose: dropped whole.
NON_PROSE_DIRECTIVES = frozenset({
    "toctree", "index", "highlight", "currentmodule", "sectionauthor", "moduleauthor", "codeauthor",
    "literalinclude", "include", "autosummary", "automodule", "autoclass", "autofunction", "automethod",
    "autoattribute", "autodata", "autoexception", "tabularcolumns", "testsetup", "testcleanup", "only",
    "audit-event", "impl-detail", "program", "opcode", "cmdoption", "pdbcommand", "module",
})
# Sphinx's names for docutils' `code` (the argument is the language, the body code to keep as written): read
# like it, with any of Sphinx's options (caption, linenos, emphasize-lines), which docutils' own would refuse.
CODE_DIRECTIVES = frozenset({"code-block", "sourcecode"})
# Sphinx's own wording for version notes (their argument is only a version number).
VERSION_NOTES = {"versionadded": "New in version {}.", "versionchanged": "Changed in version {}.",
                 "deprecated": "Deprecated since version {}.", "deprecated-removed": "Deprecated since version {}."}
_ROLE = re.compile(r":([A-Za-z][\w.+-]*(?::[\w.+-]+)?):`")
_DIRECTIVE = re.compile(r"^\s*\.\.\s+([A-Za-z][\w.+-]*(?::[\w.+-]+)?)::", re.MULTILINE)
_SIGNATURE = re.compile(r"^[\w.]+(\s*\(|\[|:\s|\s*$)")  # name(args), name[T], name: type, a bare name
_ADORNMENT = re.compile(r"^([=\-~*^#\"'`:.+_])\1{2,}\s*$")
# Control characters no decoded text keeps (indexer.loaders drops them before parsing) that bracket code.
CODE_OPEN, CODE_CLOSE = "\x02", "\x03"


def code(block: str) -> str:
    """A rendered code block, marked for `split_code` (a blank one is left unmarked)."""
    return f"{CODE_OPEN}{block}{CODE_CLOSE}" if block.strip() else block


def split_code(text: str) -> tuple[str, tuple[tuple[int, int], ...]]:
    """The text without code marks, and the (start, end) of each marked block in it, from its first line
    with text (that line's indentation kept) to its last character that is not whitespace."""
    out: list[str] = []
    spans: list[tuple[int, int]] = []
    pos, n, start = 0, 0, -1
    for m in re.finditer(f"[{CODE_OPEN}{CODE_CLOSE}]", text):
        out.append(text[pos:m.start()])
        n += m.start() - pos
        pos = m.end()
        if m.group() == CODE_OPEN:
            start = n
        elif start >= 0:
            spans.append((start, n))
            start = -1
    out.append(text[pos:])
    clean = "".join(out)
    trimmed = []
    for a, b in spans:
        body = clean[a:b]
        lead = len(body) - len(body.lstrip())
        a2 = a + body.rfind("\n", 0, lead) + 1  # the start of the first line with text
        b2 = b - (len(body) - len(body.rstrip()))
        if b2 > a2:
            trimmed.append((a2, b2))
    return clean, tuple(trimmed)


def looks_like_rst(text: str) -> bool:
    """Two or more reStructuredText constructs: a section adornment under (or over) a title line, a
    directive, a role, or a link target. A `.txt` file holding RST (Sphinx sources) is read as RST."""
    lines = text.splitlines()
    signals = 0
    for i in range(1, len(lines)):
        if _ADORNMENT.match(lines[i]) and lines[i - 1].strip() and len(lines[i].rstrip()) >= len(lines[i - 1].rstrip()):
            signals += 1
            break
    signals += bool(_DIRECTIVE.search(text)) + bool(_ROLE.search(text))
    signals += bool(re.search(r"^\.\. _[^:]+:\s*$", text, re.MULTILINE))
    return signals >= 2


# ---- reStructuredText ------------------------------------------------------------------------

def _role_text(name: str, text: str) -> str:
    """What Sphinx shows for a cross-reference: the explicit title of `title <target>`, the last
    component of `~a.b.c`, and `()` after a function or method."""
    m = re.match(r"^(.*?)\s*<([^>]*)>$", text, re.DOTALL)
    if m and m.group(1):
        return m.group(1)
    target = m.group(2) if m else text
    target = target.lstrip("!")
    if target.startswith("~"):
        target = target[1:].rsplit(".", 1)[-1]
    if name.split(":")[-1] in ("func", "meth") and not target.endswith(")"):
        target += "()"
    if name.split(":")[-1] in ("ref", "doc", "term") and " " not in target:
        target = target.rsplit("/", 1)[-1].replace("-", " ").replace("_", " ")
    return target


def _register_unknown(text: str) -> None:
    """Give every role and directive the text uses that docutils does not know a generic meaning, so
    Sphinx sources parse without errors (the registries are docutils' own, process-wide)."""
    from docutils import nodes, utils
    from docutils.parsers.rst import Directive, directives, roles
    from docutils.parsers.rst.directives import misc

    def generic_role(name: str, rawtext: str, text: str, lineno: int, inliner: Any,
                     options: dict | None = None, content: list | None = None) -> tuple[list, list]:
        return [nodes.literal(rawtext, _role_text(name, utils.unescape(text)))], []

    class AnyOption(dict):
        def __missing__(self, key: str) -> Any:
            return directives.unchanged

    class GenericDirective(Directive):
        has_content = True
        optional_arguments = 1
        final_argument_whitespace = True
        option_spec = AnyOption(_=directives.unchanged)

        def run(self) -> list:
            name = self.name.split(":")[-1]
            if name in NON_PROSE_DIRECTIVES:
                return []
            out: list = []
            arg = " ".join(self.arguments).strip()
            if name in VERSION_NOTES:
                out.append(nodes.paragraph(text=VERSION_NOTES[name].format(arg.split()[0] if arg else "")))
            elif arg:
                arg = re.sub(r"\\\s+", " ", arg).replace("\n", " ")  # a backslash-newline continues a line
                if _SIGNATURE.match(arg):  # an API signature is code, not markup: kept verbatim
                    out.append(nodes.paragraph(text=arg))
                else:  # prose written on the directive's line (seealso, note): parsed like any text
                    inline, _messages = self.state.inline_text(arg, self.lineno)
                    out.append(nodes.paragraph("", "", *inline))
            if self.content:
                box = nodes.container()
                self.state.nested_parse(self.content, self.content_offset, box)
                out.extend(box.children)
            return out

    class CodeDirective(GenericDirective):
        def run(self) -> list:
            body = "\n".join(self.content).rstrip()
            return [nodes.literal_block(body, body)] if body.strip() else []

    class ClassDirective(GenericDirective):
        """Sphinx's `.. class:: Name(args)` (an API entry) shares its name with docutils' own `class`
        directive (a class attribute for what follows), which keeps nothing of the signature: a
        signature-shaped argument (a bracket, a dot or a capital) is read as Sphinx's."""

        def run(self) -> list:
            arg = " ".join(self.arguments)
            if not arg or "(" in arg or "." in arg or any(c.isupper() for c in arg):
                return super().run()
            return misc.Class.run(self)  # type: ignore[arg-type]

    if "class" in _DIRECTIVE.findall(text):
        directives.register_directive("class", ClassDirective)
    for name in set(_ROLE.findall(text)):
        lookup = roles._roles.get(name) or roles._role_registry.get(name)
        if lookup is None:
            roles.register_local_role(name, generic_role)
    for name in set(_DIRECTIVE.findall(text)):
        if name in CODE_DIRECTIVES:
            directives.register_directive(name, CodeDirective)
        elif name not in directives._directives and name not in directives._directive_registry:
            directives.register_directive(name, GenericDirective)


def rst_to_text(text: str) -> tuple[str, str]:
    """(title, plain text) of a reStructuredText document."""
    from docutils.core import publish_doctree

    _register_unknown(text)
    doc = publish_doctree(text, settings_overrides={
        "report_level": 5, "halt_level": 5, "warning_stream": io.StringIO(), "file_insertion_enabled": False,
        "raw_enabled": False, "syntax_highlight": "none", "doctitle_xform": True, "input_encoding": "unicode",
    })
    title = doc.get("title", "") or ""
    return title, "\n\n".join(b for b in _rst_blocks(doc) if b.strip())


def _skipped() -> tuple[type, ...]:
    from docutils import nodes

    return (nodes.system_message, nodes.comment, nodes.substitution_definition, nodes.target, nodes.raw,
            nodes.pending, nodes.problematic, nodes.footnote_reference, nodes.citation_reference)


def _plain(node: Any) -> str:
    """A node's words without the parser's messages; block children are separated by a space."""
    from docutils import nodes

    if isinstance(node, _skipped()):
        return ""
    if isinstance(node, nodes.Text):
        return str(node)
    sep = "" if isinstance(node, nodes.TextElement) else " "
    return sep.join(_plain(c) for c in node.children)


def _inline(node: Any) -> str:
    return re.sub(r"\s+", " ", _plain(node)).strip()


def _rst_blocks(node: Any) -> list[str]:
    from docutils import nodes

    if isinstance(node, _skipped()):
        return []
    if isinstance(node, (nodes.title, nodes.paragraph, nodes.term, nodes.rubric, nodes.attribution)):
        return [_inline(node)]
    if isinstance(node, (nodes.literal_block, nodes.doctest_block)):
        return [code(_plain(node).rstrip())]
    if isinstance(node, nodes.line_block):  # verse and addresses: kept line by line, not code
        return [node.astext().rstrip()]
    if isinstance(node, (nodes.bullet_list, nodes.enumerated_list)):
        items = ["- " + " ".join(_rst_blocks(item)) for item in node.children]
        return ["\n".join(i for i in items if i.strip() != "-")]
    if isinstance(node, nodes.field):
        name, body = node.children[0], node.children[1]
        return [f"{_inline(name)}: {' '.join(_rst_blocks(body))}"]
    if isinstance(node, nodes.table):
        rows = [" | ".join(_inline(entry) for entry in row.children) for row in node.findall(nodes.row)]
        title = [_inline(t) for t in node.children if isinstance(t, nodes.title)]
        return ["\n".join(title + [r for r in rows if r.strip(" |")])]
    if isinstance(node, nodes.Text):
        text = str(node).strip()
        return [text] if text else []
    out: list[str] = []
    for child in node.children:
        out.extend(_rst_blocks(child))
    return out


# ---- Markdown ----------------------------------------------------------------------------------

_FRONT_KEY = re.compile(r"""^([A-Za-z_][\w-]*)\s*[:=]\s*(.*?)\s*$""")


def front_matter(text: str) -> tuple[dict[str, str], str]:
    """The top-level scalar fields of a Markdown file's front matter (YAML between `---` lines, or Hugo's TOML
    between `+++` lines) and the text after it; ({}, text) when it has none. Static site generators (Jekyll,
    Hugo, Docusaurus, npm's docs) keep a page's title and description there; read as Markdown, it became a
    heading of "title: npm-install section: 1 description: Install a package"."""
    lines = text.split("\n")
    fence = lines[0].strip() if lines else ""
    if fence not in ("---", "+++"):
        return {}, text
    end = next((i for i in range(1, min(len(lines), 200)) if lines[i].strip() == fence), None)
    if end is None:
        return {}, text
    fields: dict[str, str] = {}
    for ln in lines[1:end]:
        if not ln.strip() or ln[0] in " \t-#[":  # nested values, list items, comments, TOML tables
            continue
        m = _FRONT_KEY.match(ln)
        if m is None:
            return {}, text  # not key/value lines: a thematic break and a paragraph, not front matter
        fields[m.group(1).lower()] = m.group(2).strip("'\"")
    return (fields, "\n".join(lines[end + 1:])) if fields else ({}, text)


def markdown_to_text(text: str) -> tuple[str, str]:
    """(title, plain text) of a CommonMark/GFM document: the front matter's title and description (as a rendered
    page shows them at its top: "npm-version: Bump a package version"), else the first heading; the description
    also opens the text. The title goes with every chunk, and a page's one-line summary is what tells its chunks
    apart from other pages' (bench/loader_rules.py --rule front-matter: the title alone lost to the raw block)."""
    from markdown_it import MarkdownIt

    fields, text = front_matter(text)
    md = MarkdownIt("commonmark").enable("table").enable("strikethrough")
    tokens = md.parse(text)
    about = fields.get("description", "")
    blocks: list[str] = [about] if about else []
    title = ": ".join(t for t in (fields.get("title", ""), about) if t)
    row: list[str] = []
    rows: list[str] | None = None
    item_depth = 0
    pending_item = False
    for i, tok in enumerate(tokens):
        if tok.type == "heading_open" and not title and tokens[i + 1].type == "inline":
            title = _md_inline(tokens[i + 1].children or [])
        if tok.type == "table_open":
            rows = []
        elif tok.type == "table_close" and rows is not None:
            blocks.append("\n".join(rows))
            rows = None
        elif tok.type == "tr_open":
            row = []
        elif tok.type == "tr_close" and rows is not None:
            rows.append(" | ".join(row))
        elif tok.type in ("list_item_open",):
            item_depth += 1
            pending_item = True
        elif tok.type == "list_item_close":
            item_depth -= 1
        elif tok.type == "inline":
            line = _md_inline(tok.children or [])
            if rows is not None:
                row.append(line)
            elif pending_item:
                blocks.append("- " + line)
                pending_item = False
            elif line:
                blocks.append(line)
        elif tok.type in ("fence", "code_block"):
            blocks.append(code(tok.content.rstrip()))
        elif tok.type == "html_block":
            plain = _html_text(tok.content)
            if plain:
                blocks.append(plain)
    return title, _join_md(blocks)


def _join_md(blocks: Iterable[str]) -> str:
    """Blank lines between blocks, but consecutive list items stay one block (one line each)."""
    out: list[str] = []
    for b in blocks:
        if out and b.startswith("- ") and out[-1].split("\n")[-1].startswith("- "):
            out[-1] += "\n" + b
        else:
            out.append(b)
    return "\n\n".join(b for b in out if b.strip())


def _md_inline(children: list[Any]) -> str:
    parts: list[str] = []
    for c in children:
        if c.type in ("text", "code_inline"):
            parts.append(c.content)
        elif c.type in ("softbreak", "hardbreak"):
            parts.append(" ")
        elif c.type == "image":
            parts.append(c.content or "")
        elif c.type == "html_inline":
            continue
    return re.sub(r"\s+", " ", "".join(parts)).strip()


def _html_text(html: str) -> str:
    from bs4 import BeautifulSoup

    return re.sub(r"\s+", " ", BeautifulSoup(html, "html.parser").get_text(" ")).strip()
