"""Readers by file type: each turns one file into Documents or a skip reason; one bad file never
stops a run."""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

from common.hashing import sha256_text
from indexer.encoding import Undecodable, decode_text
from indexer.markup import CODE_CLOSE, CODE_OPEN, looks_like_rst, markdown_to_text, rst_to_text, split_code
from indexer.types import Document, Skipped

log = logging.getLogger(__name__)

SUPPORTED = {".txt", ".md", ".markdown", ".rst", ".html", ".htm", ".pdf", ".jsonl"}
UNSUPPORTED_TYPE = "unsupported file type"  # a Skipped reason's start: the CLI lists such files by type


@dataclass(frozen=True)
class LoadResult:
    documents: list[Document]
    skipped: list[Skipped]
    encoding: str = "utf-8"  # what a text file was read as (indexer.encoding; "" for a PDF): a scan says which


def is_beir_dir(root: Path) -> bool:
    """A BEIR dataset folder: its queries and qrels are evaluation data, never documents."""
    return root.is_dir() and (root / "corpus.jsonl").is_file() and (root / "queries.jsonl").is_file()


def iter_files(root: Path) -> Iterator[Path]:
    """Files under a folder in a stable order, hidden files and folders left out; of a BEIR folder,
    only corpus.jsonl."""
    if root.is_file():
        yield root
        return
    for dirpath, dirnames, filenames in os.walk(root):
        if is_beir_dir(Path(dirpath)):
            dirnames[:] = []
            yield Path(dirpath) / "corpus.jsonl"
            continue
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if not name.startswith("."):
                yield Path(dirpath) / name


def doc_id_for(path: Path, root: Path) -> str:
    if root.is_file():
        return path.name
    return path.relative_to(root).as_posix()


def load_file(path: Path, doc_id: str, max_bytes: int) -> LoadResult:
    """Read one file; every failure becomes a Skipped with a reason."""
    ext = path.suffix.lower()
    try:
        if ext not in SUPPORTED:
            return _skip(path, f"{UNSUPPORTED_TYPE} {ext or '(none)'}")
        size = path.stat().st_size
        if size == 0:
            return _skip(path, "empty file")
        if size > max_bytes:
            return _skip(path, f"file is {size / 2**20:.1f} MB, over the {max_bytes / 2**20:.0f} MB limit")
        raw = path.read_bytes()
        mtime = path.stat().st_mtime
        if ext == ".pdf":
            return replace(_from_text(path, doc_id, *_read_pdf(path), mtime), encoding="")
        try:
            text, encoding = decode_text(raw)
        except Undecodable as e:
            return _skip(path, str(e))
        text = text.replace(CODE_OPEN, "").replace(CODE_CLOSE, "")  # the renderers' code marks, never text
        if ext == ".jsonl":
            return replace(_read_beir(path, text, mtime), encoding=encoding)
        if ext in (".html", ".htm"):
            title, body = _read_html(text)
        elif ext in (".md", ".markdown"):
            title, body = markdown_to_text(text)
        elif ext == ".rst" or looks_like_rst(text):
            title, body = rst_to_text(text)
        else:
            title, body = "", text
        return replace(_from_text(path, doc_id, title or path.stem, body, mtime), encoding=encoding)
    except _NotAPage as e:
        return _skip(path, str(e))
    except OSError as e:
        return _skip(path, f"unreadable: {e.strerror or e}")
    except Exception as e:  # a parser bug on one file must not stop the run
        return _skip(path, f"could not parse: {type(e).__name__}: {e}")


def _skip(path: Path, reason: str) -> LoadResult:
    return LoadResult([], [Skipped(str(path), reason)])


def _from_text(path: Path, doc_id: str, title: str, text: str, mtime: float) -> LoadResult:
    text, code = split_code(_normalise(text))
    if not text.strip():
        return _skip(path, "no text content")
    doc = Document(
        doc_id=doc_id, text=text, sha256=sha256_text(title + "\x00" + text), title=title.strip(),
        source=str(path.resolve()), mtime=mtime, code=code,
    )
    return LoadResult([doc], [])


def _normalise(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n")


# Elements that start a new line of text; everything else (code, a, span, em ...) is inline and
# joins its neighbours as the browser shows it, so "The <code>csv</code> module" stays one line.
_HTML_BLOCKS = frozenset(
    "address article aside blockquote body br caption dd details dialog div dl dt fieldset figcaption figure "
    "form h1 h2 h3 h4 h5 h6 hr li main ol p pre section summary table tbody td tfoot th thead tr ul".split())


def _html_lines(node, parts: list[str], pre: bool = False) -> None:  # type: ignore[no-untyped-def]
    from bs4 import CData, NavigableString

    for child in node.children:
        if isinstance(child, NavigableString):
            if type(child) in (NavigableString, CData):  # not comments, doctypes, declarations
                parts.append(str(child) if pre else re.sub(r"\s+", " ", str(child)))
        elif child.name in _HTML_BLOCKS:
            opens = child.name == "pre" and not pre  # a <pre> is code (its blocks are marked for split_code)
            parts.append("\n" + (CODE_OPEN if opens else ""))
            _html_lines(child, parts, pre or child.name == "pre")
            parts.append((CODE_CLOSE if opens else "") + "\n")
        else:
            _html_lines(child, parts, pre)


class _NotAPage(Exception):
    """A file of a supported type that holds no document: skipped with this reason."""


def _main_content(soup):  # type: ignore[no-untyped-def]
    """The page's one main element (`<main>` or role="main") when it has one with text, else the whole page:
    what a documentation generator puts outside it is its template (mdBook's keyboard help and theme menu,
    a sidebar or banner without an ARIA role), repeated on every page."""
    mains = {id(m): m for m in soup.find_all("main") + soup.find_all(attrs={"role": "main"})}  # Tags == by content
    outer = [m for m in mains.values() if not any(id(p) in mains for p in m.parents)]
    if len(outer) == 1 and outer[0].get_text(strip=True):
        return outer[0]
    return soup


def _read_html(text: str) -> tuple[str, str]:
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(text, "html.parser")
    refresh = soup.find("meta", attrs={"http-equiv": re.compile(r"^refresh$", re.I)})
    if refresh is not None and (to := re.search(r"url\s*=\s*['\"]?([^'\"]+)", refresh.get("content") or "", re.I)):
        raise _NotAPage(f"a redirect page (to {to.group(1).strip()})")  # its text only says where to go
    for tag in soup(["script", "style", "noscript", "nav", "header", "footer", "template"]):
        tag.decompose()
    # page chrome marked by its ARIA role (a Sphinx page's "index | modules | next" bar, a search box)
    for tag in soup.find_all(attrs={"role": re.compile(r"^(navigation|banner|contentinfo|search)$")}):
        tag.decompose()
    title = soup.title.get_text(" ", strip=True) if soup.title else ""
    if not title and (h1 := soup.find("h1")):
        title = h1.get_text(" ", strip=True)
    if soup.title:
        soup.title.decompose()
    parts: list[str] = []
    _html_lines(_main_content(soup), parts)
    out: list[str] = []
    block: list[int] | None = None  # the kept lines of the <pre> being read (code: its indentation is kept)
    blocks: list[list[int]] = []
    for raw in "".join(parts).splitlines():
        if CODE_OPEN in raw:
            block = []
        body = raw.replace(CODE_OPEN, "").replace(CODE_CLOSE, "")
        ln = body.rstrip() if block is not None and body.strip() else re.sub(r"[ \t\u00a0]+", " ", body).strip()
        if ln or (out and out[-1]):
            out.append(ln)
            if block is not None and ln:
                block.append(len(out) - 1)
        if CODE_CLOSE in raw and block is not None:
            if block:
                blocks.append(block)
            block = None
    for b in blocks:  # marked for split_code, around the block's first and last lines with text
        out[b[0]] = CODE_OPEN + out[b[0]]
        out[b[-1]] += CODE_CLOSE
    return title, "\n".join(out).strip()


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@contextmanager
def _parser_diagnostics(logger_name: str, path: Path) -> Iterator[None]:
    """A parser library's complaints about one file, logged once at DEBUG under our name: a file it
    cannot read is skipped with a reason already, and one it can read needs no warning on stderr."""
    lib = logging.getLogger(logger_name)
    handler, propagate = _Collect(), lib.propagate
    lib.addHandler(handler)
    lib.propagate = False
    try:
        yield
    finally:
        lib.removeHandler(handler)
        lib.propagate = propagate
        if handler.messages:
            log.debug("%s: %s said: %s", path, logger_name, "; ".join(dict.fromkeys(handler.messages)))


def _read_pdf(path: Path) -> tuple[str, str]:
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    try:
        with _parser_diagnostics("pypdf", path):
            reader = PdfReader(str(path))
            if reader.is_encrypted:
                raise ValueError("encrypted PDF")
            pages = [(p.extract_text() or "") for p in reader.pages]
            title = (reader.metadata.title if reader.metadata and reader.metadata.title else "") or ""
    except PdfReadError as e:
        raise ValueError(f"invalid PDF: {e}") from e
    return title or path.stem, "\n\n".join(p.strip() for p in pages if p.strip())


def _read_beir(path: Path, text: str, mtime: float) -> LoadResult:
    """BEIR corpus.jsonl: one document per line with `_id`, `title`, `text`; bad lines are skipped."""
    docs: list[Document] = []
    skipped: list[Skipped] = []
    seen: set[str] = set()
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        where = f"{path}:{n}"
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            skipped.append(Skipped(where, f"invalid JSON: {e.msg}"))
            continue
        if not isinstance(obj, dict) or "_id" not in obj or not isinstance(obj.get("text"), str):
            skipped.append(Skipped(where, "a BEIR line needs an '_id' and a string 'text'"))
            continue
        doc_id = str(obj["_id"])
        title = obj.get("title") or ""
        body = _normalise(obj["text"])
        if doc_id in seen:
            skipped.append(Skipped(where, f"duplicate _id {doc_id!r}"))
            continue
        if not body.strip() and not str(title).strip():
            skipped.append(Skipped(where, f"document {doc_id!r} has no text"))
            continue
        seen.add(doc_id)
        if not body.strip():
            body = str(title)
        meta = obj.get("metadata") if isinstance(obj.get("metadata"), dict) else {}
        docs.append(
            Document(
                doc_id=doc_id, text=body, sha256=sha256_text(str(title) + "\x00" + body), title=str(title),
                source=str(path.resolve()), mtime=mtime, metadata=meta,
            )
        )
    if not docs and not skipped:
        skipped.append(Skipped(str(path), "no documents in JSONL file"))
    return LoadResult(docs, skipped)
