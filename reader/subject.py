"""Two corpus-independent hints of what a question about documentation wants named.

- A document's *subject*: what its title says the document is about, before any description
  ("filecmp" in "filecmp --- File and Directory Comparisons", "Super Bowl 50" in "Super_Bowl_50",
  "Errors and Exceptions" in "8. Errors and Exceptions — Python 3.11.2 documentation"). A sentence or
  span naming its document's subject is the usual answer to "which tool / how do I ..." questions,
  which paraphrase a description and rarely repeat the name.
- A *code-shaped* word: an identifier no prose word looks like (`snake_case`, dotted `sys.argv`,
  a call `f()`, an inner capital `RobotFileParser`).

Both are plain string functions so the reader's features stay pure and testable.
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


def title_subject(title: str) -> str:
    """The subject a title names: its part before a description separator, numbering dropped, at most
    `MAX_SUBJECT_WORDS` words; "" when the title has none that short."""
    t = " ".join(title.replace("_", " ").split())
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
