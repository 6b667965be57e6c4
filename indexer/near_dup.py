"""Near-duplicate hits: the same passage stored in two documents (a generator's one-page print view beside its
chapters, a page copied into two folders, an index page that repeats its first chapter) takes two result slots
and says nothing new. Two chunks are near-duplicates when most of the longer one's word trigrams are the
other's too; the lower-ranked one is folded into the hit it repeats.

Chosen on two corpora we assembled (bench/near_dup.py): in the rustdoc book, 84 % of print.html's chunks share
>= 0.8 of their trigrams with a chapter's chunk; in the sample corpus, no two chunks of different documents do
(the closest, two parallel module pages, share 0.64), and SciFact's abstracts share none above 0.3.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

_WORD = re.compile(r"\w+")


def trigrams(text: str) -> frozenset[int]:
    """The hashed word trigrams of a text, case-folded (a text of fewer than three words: its words)."""
    words = _WORD.findall(text.lower())
    if len(words) < 3:
        return frozenset(hash(w) for w in words)
    return frozenset(hash((words[i], words[i + 1], words[i + 2])) for i in range(len(words) - 2))


def overlap(a: frozenset[int], b: frozenset[int]) -> float:
    """The share of the longer text's trigrams the two have in common: 1 for the same passage, near 1 for one
    cut a few words differently, low when a short text is merely contained in a long one."""
    if not a or not b:
        return 0.0
    return len(a & b) / max(len(a), len(b))


def duplicate_of(grams: frozenset[int], kept: Sequence[frozenset[int]], threshold: float) -> int | None:
    """The index of the first kept text this one nearly repeats (`overlap` >= threshold), else None."""
    if threshold <= 0 or threshold > 1:
        return None
    return next((i for i, k in enumerate(kept) if overlap(grams, k) >= threshold), None)
