"""Token-aware chunking as pure functions over character offsets.

Chunks are cut at sentence boundaries where possible, measured in the embedder's own tokens, and keep
character offsets into the source document so citations can point at exact spans. The tokenizer is
passed in as token spans (start, end) so this module stays free of I/O and model code.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Sequence

from indexer.types import Chunk, ChunkSpan

# A sentence ends at . ! ? (optionally followed by quotes/brackets) before whitespace, or at a blank line.
_SENT_END = re.compile(r"""(?<=[.!?])["')\]]*\s+|\n\s*\n""")
PARAGRAPH_BREAK = re.compile(r"\n[ \t]*\n")  # a blank line, which no sentence crosses
_MAX_SENTENCE_CHARS = 2000  # longer "sentences" (tables, code, no punctuation) are cut at whitespace
# A cut the splitter makes but the sentence goes on across (never across a blank line): the next piece opens
# lower-case ("et al. found", "approx. two"); the piece ends in a Latin abbreviation that introduces what follows
# ("e.g. Makefile Generators", "i.e. The", "cf. Smith", "vs. Placebo"); or it ends inside a name's initials, after a
# capitalised word ("Lyndon B."), two or more ("C. J.", "W. E. B."), the piece's only words, or one before a piece
# that opens with another ("C." + "J. Anderson"). A citation, a sentence vector or a reader's sentence ending at
# "(e.g." says nothing.
_OPENS_LOWER = re.compile(r"[\"'(\[]?[a-z]")
_ENDS_IN_ABBREVIATION = re.compile(r"(?:^|[^\w.])(?:e\.\s?g|i\.\s?e|cf|vs|viz)\.$", re.IGNORECASE)
_INITIALS_END = re.compile(r"(?:^|[\s(])(?P<name>[A-Z][\w'’-]*\s+)?(?P<initials>(?:[A-Z]\.\s*)+)$")
_OPENS_WITH_INITIAL = re.compile(r"[A-Z]\.\s")


def sentence_spans(text: str) -> list[tuple[int, int]]:
    """Split text into sentence spans (start, end), trimmed of surrounding whitespace."""
    spans: list[tuple[int, int]] = []
    for s, e in _joined(text, _pieces(text)):
        spans.extend(_split_long(text, s, e))
    return spans


def _pieces(text: str) -> list[tuple[int, int]]:
    """The splitter's cuts, before any is rejoined."""
    spans: list[tuple[int, int]] = []
    pos = 0
    for m in _SENT_END.finditer(text):
        _add_trimmed(text, pos, m.start() if m.group(0).startswith("\n") else m.end(), spans)
        pos = m.end()
    _add_trimmed(text, pos, len(text), spans)
    return spans


def _joined(text: str, pieces: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for s, e in pieces:
        if out and not PARAGRAPH_BREAK.search(text, out[-1][1], s) and _goes_on(text, out[-1], s):
            out[-1] = (out[-1][0], e)
        else:
            out.append((s, e))
    return out


def _goes_on(text: str, prev: tuple[int, int], s: int) -> bool:
    """The sentence `prev` ends in goes on in the piece at `s`."""
    piece = text[max(prev[0], prev[1] - 200):prev[1]]  # its end: a run of rejoined pieces stays linear
    return bool(_OPENS_LOWER.match(text, s) or _ENDS_IN_ABBREVIATION.search(piece)) or _cut_in_a_name(piece, text, s)


def _cut_in_a_name(piece: str, text: str, s: int) -> bool:
    """The piece (the end of a sentence) stops inside a name's initials, so the piece at `s` goes on with it."""
    m = _INITIALS_END.search(piece)
    if m is None:
        return False
    several = m.group("initials").count(".") > 1
    alone = m.start("initials") == 0
    return m.group("name") is not None or several or alone or bool(_OPENS_WITH_INITIAL.match(text, s))


def _add_trimmed(text: str, s: int, e: int, spans: list[tuple[int, int]]) -> None:
    while s < e and text[s].isspace():
        s += 1
    while e > s and text[e - 1].isspace():
        e -= 1
    if e > s:
        spans.append((s, e))


def _split_long(text: str, s: int, e: int) -> list[tuple[int, int]]:
    if e - s <= _MAX_SENTENCE_CHARS:
        return [(s, e)]
    out: list[tuple[int, int]] = []
    while e - s > _MAX_SENTENCE_CHARS:
        cut = text.rfind(" ", s, s + _MAX_SENTENCE_CHARS)
        if cut <= s:
            cut = s + _MAX_SENTENCE_CHARS
        _add_trimmed(text, s, cut, out)
        s = cut
    _add_trimmed(text, s, e, out)
    return out


def chunk_spans(
    sentences: Sequence[tuple[int, int]],
    token_starts: Sequence[int],
    token_ends: Sequence[int],
    max_tokens: int,
    overlap: int,
) -> list[ChunkSpan]:
    """Pack sentences into chunks of at most `max_tokens` tokens.

    `token_starts`/`token_ends` are the sorted character offsets of the document's tokens. Consecutive
    chunks share trailing sentences worth at most `overlap` tokens; a sentence longer than `max_tokens`
    is cut at token boundaries (with `overlap` tokens shared between its pieces).
    """
    if max_tokens < 1:
        raise ValueError("max_tokens must be positive")
    if not 0 <= overlap < max_tokens:
        raise ValueError("overlap must be in [0, max_tokens)")
    # Each unit: (first token index, end token index exclusive, char start, char end).
    units: list[tuple[int, int, int, int]] = []
    for s, e in sentences:
        t0 = bisect.bisect_left(token_starts, s)
        t1 = bisect.bisect_left(token_starts, e)
        if t1 - t0 <= max_tokens:
            units.append((t0, t1, s, e))
            continue
        step = max_tokens - overlap
        for a in range(t0, t1, step):
            b = min(a + max_tokens, t1)
            cs = s if a == t0 else token_starts[a]
            ce = e if b == t1 else token_ends[b - 1]
            units.append((a, b, cs, ce))
            if b == t1:
                break

    chunks: list[ChunkSpan] = []
    i = 0
    while i < len(units):
        j = i
        n = 0
        while j < len(units) and (j == i or n + units[j][1] - units[j][0] <= max_tokens):
            n += units[j][1] - units[j][0]
            j += 1
        chunks.append(ChunkSpan(ord=len(chunks), start=units[i][2], end=units[j - 1][3], n_tokens=n))
        if j >= len(units):
            break
        # Step back over trailing sentences that fit in the overlap budget, never to the chunk's start.
        k, shared = j, 0
        while overlap and k - 1 > i and shared + units[k - 1][1] - units[k - 1][0] <= overlap:
            k -= 1
            shared += units[k][1] - units[k][0]
        i = k
    return chunks


def index_text(title: str, text: str) -> str:
    """What the retrievers see for a chunk: its document title then its text."""
    if title and not text.startswith(title):
        return f"{title}\n{text}"
    return text


# Sentences of fewer words get no vector of their own: code lines, headings and "Example:" made 43% of the how-to
# sample corpus's sentences, and dropping them lost nothing on four dev corpora (bench/sentence_dense_probe.py
# --min-words). Part of the sentence vectors' cache key, so a change re-embeds them.
MIN_SENTENCE_WORDS = 8
SENTENCE_RULE = f"sentences>={MIN_SENTENCE_WORDS}w"


def sentence_texts(title: str, text: str) -> list[str]:
    """A chunk's sentences as the dense side embeds them (title first), each with a vector of its own beside the
    chunk's: one sentence of an abstract restates a claim, one of a paragraph answers a question, and the chunk's
    single vector blurs it with its neighbours. None for a chunk of one sentence (its vector would be the chunk's)."""
    spans = sentence_spans(text)
    if len(spans) < 2:
        return []
    return [index_text(title, text[a:b]) for a, b in spans if len(text[a:b].split()) >= MIN_SENTENCE_WORDS]


def sentence_cache_key(embedder_id: str) -> str:
    """The docstore key of an embedder's sentence vectors: the embedder and the rule choosing the sentences."""
    return f"{embedder_id}|{SENTENCE_RULE}"


def bm25_texts(chunks: Sequence[Chunk], context: int) -> dict[int, str]:
    """Each chunk's BM25 text: title plus the document span covering `context` chunks on either side.

    Cutting a document into chunks splits its term evidence; scoring a chunk with its neighbours'
    words restores it while hits stay chunk-sized (SciFact train split, nDCG@10: chunk alone 0.689,
    whole document 0.696, chunk with one neighbour each side 0.698; bench/bm25_variants.py).
    """
    by_doc: dict[str, list[Chunk]] = {}
    for c in chunks:
        by_doc.setdefault(c.doc_id, []).append(c)
    out: dict[int, str] = {}
    for sib in by_doc.values():
        sib.sort(key=lambda c: c.ord)
        for i, c in enumerate(sib):
            out[c.id] = index_text(c.title, _merge_spans(sib[max(0, i - context): i + context + 1]))
    return out


def reading_windows(hits: Sequence[tuple[str, int]], context: int) -> list[tuple[str, int, int, int]]:
    """Hits as (doc_id, ord), best first -> what to read: (doc_id, first ord, last ord, index of its best hit),
    best first. Each hit is widened by `context` chunks either side, and windows of one document that overlap
    or touch become one, so a sentence cut by a chunk boundary is read whole and no sentence twice (the last
    ord may pass the document's end: the store returns the chunks there are)."""
    spans = sorted((doc, max(0, o - context), o + context, i) for i, (doc, o) in enumerate(hits))
    out: list[tuple[str, int, int, int]] = []
    for doc, lo, hi, i in spans:  # sorted by document, then start: a window touches only the one before it
        if out and out[-1][0] == doc and lo <= out[-1][2] + 1:
            _, first, last, best = out[-1]
            out[-1] = (doc, first, max(last, hi), min(best, i))
        else:
            out.append((doc, lo, hi, i))
    return sorted(out, key=lambda w: w[3])


def _merge_spans(run: Sequence[Chunk]) -> str:
    """The text of consecutive chunks of one document with their overlaps counted once."""
    parts = [run[0].text]
    end = run[0].end
    for c in run[1:]:
        if c.start >= end:
            parts.append(" " + c.text)
        else:
            parts.append(c.text[end - c.start:])
        end = max(end, c.end)
    return "".join(parts)
