"""Corpus-independent hints of what a question about documentation wants named.

- A document's *subject*: what its title says the document is about, before any description
  ("filecmp" in "filecmp --- File and Directory Comparisons", "Super Bowl 50" in "Super_Bowl_50",
  "Errors and Exceptions" in "8. Errors and Exceptions — Python 3.11.2 documentation"). A sentence or
  span naming its document's subject is the usual answer to "which tool / how do I ..." questions,
  which paraphrase a description and rarely repeat the name.
- A *code-shaped* word: an identifier no prose word looks like (`snake_case`, dotted `sys.argv`,
  a call `f()`, an inner capital `RobotFileParser`).
- Whether a span *names a means*: a code-shaped word, a call ("range" in "range()"), or its document's
  subject. A how-to question is answered by one (`make_parser`, `add_executable`); a span that names none
  ("typically", "a readable", "Example") says less than the sentence it was cut from.
- A member's *qualified name*: an answer naming the function or class that a signature line defines,
  on a page whose subject is a module ("spawn" from "spawn(argv[, ...])" on the pty page), is given as
  "pty.spawn": the name a user can import, and the answer to "how do I ...?" and "which module ...?" at once.

All are plain string functions so the reader's features stay pure and testable.
"""

from __future__ import annotations

import re

# "NAME --- description", "NAME — description", "NAME: description", "Page | Site"
SEPARATORS = re.compile(r"\s+(?:-{2,3}|—|–|-|\|)\s+|:\s+")
_NUMBERING = re.compile(r"^(?:\d+(?:\.\d+)*\.?|[IVX]+\.)\s+")
MAX_SUBJECT_WORDS = 4
_CODE = re.compile(
    r"^(?:[A-Za-z_][\w]*_[\w]*"  # snake_case, __init__
    r"|[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)+"  # dotted name: sys.argv, os.path.join
    r"|[A-Za-z_][\w.]*\(\)?"  # a call or signature: len(, deepcopy()
    r"|[a-z]+[A-Z]\w*|[A-Z][a-z]+[A-Z]\w*)$"  # inner capital: camelCase, RobotFileParser
)
_WORDISH = re.compile(r"[\w.()]+")


def title_subject(title: str, keep_underscores: bool = False) -> str:
    """The subject a title names: its part before a description separator, numbering dropped, at most
    `MAX_SUBJECT_WORDS` words; "" when the title has none that short. Underscores become spaces
    ("Super_Bowl_50") unless kept, as a module's name needs them ("py_compile")."""
    t = " ".join((title if keep_underscores else title.replace("_", " ")).split())
    if not t:
        return ""
    head = SEPARATORS.split(t, maxsplit=1)[0].strip()
    head = _NUMBERING.sub("", head).strip()
    if not head or len(head.split()) > MAX_SUBJECT_WORDS:
        return ""
    return head


def mentions(text: str, phrase: str) -> bool:
    """True when `phrase` occurs in `text` as whole words (case-insensitive)."""
    if not phrase:
        return False
    return re.search(r"(?<![\w.])" + re.escape(phrase) + r"(?![\w])", text, re.IGNORECASE) is not None


def is_code(word: str) -> bool:
    """True for a code-shaped identifier (see the module docstring); numbers like 3.11 are not."""
    w = word.strip(".,;:!?\"'`")
    if not w or w[0].isdigit() or not _CODE.match(w):
        return False
    return max(len(part) for part in w.split(".")) > 1  # not "e.g", "i.e"


def code_words(text: str) -> list[str]:
    """The code-shaped words of `text`, in order."""
    return [w.rstrip(".,;:") for w in _WORDISH.findall(text) if is_code(w.rstrip(".,;:"))]


_IDENTIFIER = re.compile(r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*")
_SIGNATURE_LINE = re.compile(r"^(\s*)([A-Za-z_][\w.]*)(\(.*\))?\s*(?:->.*)?$")


Signature = tuple[tuple[int, int], tuple[int, int] | None] | None  # what `signature_spans` returns


def signature_spans(sentence: str) -> Signature:
    """When a sentence opens with a signature line ("name(args)", or a lone code-shaped name), the
    character spans of the name and of what its brackets hold; None otherwise."""
    first_line = sentence.split("\n", 1)[0]
    m = _SIGNATURE_LINE.match(first_line)
    if m is None or (m.group(3) is None and not is_code(m.group(2))):
        return None
    name = (m.start(2), m.end(2))
    return name, ((m.start(3) + 1, m.end(3) - 1) if m.group(3) else None)


def role_in(sig: Signature, start: int, end: int) -> str | None:
    """`signature_role` given the sentence's `signature_spans`, computed once per sentence."""
    if sig is None:
        return None
    (ns, ne), args = sig
    if (start, end) == (ns, ne):
        return "name"
    if args is not None and args[0] <= start and end <= args[1]:
        return "arg"
    return None


def signature_role(sentence: str, start: int, end: int) -> str | None:
    """"name" for the span of a sentence's opening signature name, "arg" for a span inside its brackets."""
    return role_in(signature_spans(sentence), start, end)


def qualified_name(span: str, sentence: str, span_start: int, subject: str) -> str | None:
    """`subject.span` when the span is the name that opens the sentence's signature line (`signature_role`)
    and the subject is a module-like identifier (lower case or code-shaped, but not all capitals: CMAKE_BUILD_TYPE or
    CXX_STANDARD names a variable or a property, whose page shows calls that use it, not members); None otherwise.
    A name already under the subject stays as it is."""
    if signature_role(sentence, span_start, span_start + len(span)) != "name" or not subject:
        return None
    if not _IDENTIFIER.fullmatch(subject) or subject.isupper() or not (subject.islower() or is_code(subject)):
        return None
    if span == subject or span.startswith(subject + "."):
        return None
    return f"{subject}.{span}"


def names_a_means(span: str, sentence: str, span_start: int, subject: str) -> bool:
    """Whether a span names what a how-to question can be answered with (see the module docstring)."""
    if code_words(span):
        return True
    end = span_start + len(span)
    if sentence[end:end + 1] == "(":
        return True
    return bool(subject) and span.strip().lower() == subject.lower()
