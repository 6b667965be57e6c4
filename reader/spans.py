"""Candidate answer spans inside a parsed sentence, and the features that rank them.

Candidates are token-aligned (so never mid-word): named entities, noun chunks, numbers, each token's
dependency subtree and its head-with-left-dependents, single content words, and each of these with a
leading determiner/preposition/punctuation or trailing punctuation cut off, up to `max_tokens` tokens.

Features follow Rajpurkar et al. (2016)'s logistic-regression baseline for SQuAD (answer type against
the wh-word, overlap with the question, distance and dependency path to the question's words in the
sentence, length, part of speech), as sparse named features: a string key with a value, most of them
indicators and many of them conjoined with the question's wh-class. A linear model over them
(`reader.model.LinearModel`) is fitted by `reader.fit`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from reader.parse import Parsed
from reader.question import QuestionInfo
from reader.subject import Signature, is_code, mentions, role_in, signature_spans

MAX_TOKENS = 10
_CUT_FRONT = frozenset({"DET", "ADP", "PUNCT", "CCONJ", "PART", "SCONJ"})
_SINGLE = frozenset({"NOUN", "PROPN", "NUM", "ADJ", "VERB", "ADV", "SYM", "X"})
_CLOSED_PREV = frozenset("in on at by of from to for as than after before since during until about with "
                         "between into over under around near the a an , ( called named known is was were are "
                         "became become include including such".split())


_OPENING = frozenset("([{\"'“‘«")
_CLOSING = frozenset(".,;:!?)]}\"'”’»")


def word_aligned(text: str, start: int, end: int) -> bool:
    """True when [start, end) neither starts nor ends inside a word of `text`: it starts at the text's
    start or after whitespace or an opening bracket/quote, and ends at the text's end or before
    whitespace, closing punctuation or an opening bracket ("setraw" of "setraw(fd)"; never "16" of
    "2015–16", "art" of "state-of-the-art")."""
    if start >= end or start < 0 or end > len(text):
        return False
    if start > 0 and not (text[start - 1].isspace() or text[start - 1] in _OPENING):
        return False
    return end == len(text) or text[end].isspace() or text[end] in _CLOSING or text[end] in "(["


def subtree_edges(p: Parsed) -> tuple[list[int], list[int]]:
    """For each token, the first and last token index of its dependency subtree."""
    n = len(p.tokens)
    lo, hi = list(range(n)), list(range(n))
    for i in range(n):  # walk up from every token; parses are shallow, n is small
        seen = 0
        h = i
        while p.tokens[h].head != h and seen < n:
            h = p.tokens[h].head
            lo[h], hi[h] = min(lo[h], i), max(hi[h], i)
            seen += 1
    return lo, hi


def _has_alnum(text: str) -> bool:
    return any(c.isalnum() for c in text)


def candidate_spans(p: Parsed, max_tokens: int = MAX_TOKENS) -> dict[tuple[int, int], frozenset[str]]:
    """Token ranges [i, j) that may answer, each with the kinds of unit it is (ent, np, num, sub, left, tok)."""
    found: dict[tuple[int, int], set[str]] = {}
    toks = p.tokens

    def add(i: int, j: int, kind: str) -> None:
        while i < j and toks[i].is_punct:
            i += 1
        while j > i and toks[j - 1].is_punct:
            j -= 1
        if j - i < 1:
            return
        if j - i > 1 and toks[i].pos in _CUT_FRONT:  # "the Broncos" -> "Broncos", "in 1990" -> "1990"
            add(i + 1, j, kind if kind.endswith("-cut") else kind + "-cut")
        if j - i > max_tokens or all(t.is_stop or t.is_punct or not _has_alnum(t.text) for t in toks[i:j]):
            return  # nothing to name: stop words, punctuation, symbols alone ("|" of "[STATIC | SHARED]")
        if j - i == 1 and toks[i].pos not in _SINGLE and not toks[i].like_num:
            return
        found.setdefault((i, j), set()).add(kind)

    for i, j, _label in p.ents:
        add(i, j, "ent")
    for i, j in p.noun_chunks:
        add(i, j, "np")
    lo, hi = subtree_edges(p)
    for k, t in enumerate(toks):
        if t.is_punct:
            continue
        add(lo[k], hi[k] + 1, "sub")
        add(lo[k], k + 1, "left")
        if t.pos in _SINGLE:
            add(k, k + 1, "tok")
    k = 0
    while k < len(toks):  # runs of numbers ("3.5 million", "24 – 10")
        if toks[k].like_num or toks[k].pos == "NUM":
            j = k
            while j + 1 < len(toks) and (toks[j + 1].like_num or toks[j + 1].pos == "NUM"):
                j += 1
            add(k, j + 1, "num")
            k = j + 1
        else:
            k += 1
    return {s: frozenset(kinds) for s, kinds in found.items()
            if word_aligned(p.text, toks[s[0]].start, toks[s[1] - 1].end)}


@dataclass(frozen=True)
class SentenceContext:
    """What every candidate of one sentence shares: where the question's words are, the tree."""

    parsed: Parsed
    matched: tuple[int, ...]  # token indices whose lemma is a question content lemma
    ancestors: tuple[tuple[int, ...], ...]  # each token's chain of heads up to the root (itself first)
    ent_label: dict[tuple[int, int], str]
    subject: str = ""  # the sentence's document subject (`reader.subject.title_subject`), "" when asked or none
    signature: Signature = None  # the sentence's opening signature line (`reader.subject.signature_spans`)


def sentence_context(p: Parsed, q: QuestionInfo, subject: str = "") -> SentenceContext:
    matched = tuple(i for i, t in enumerate(p.tokens) if t.lemma in q.lemmas and not t.is_punct and not t.is_stop)
    chains = []
    for i in range(len(p.tokens)):
        chain = [i]
        while p.tokens[chain[-1]].head != chain[-1] and len(chain) <= len(p.tokens):
            chain.append(p.tokens[chain[-1]].head)
        chains.append(tuple(chain))
    if subject and mentions(q.text, subject):
        subject = ""
    return SentenceContext(p, matched, tuple(chains), {(i, j): lab for i, j, lab in p.ents}, subject,
                           signature_spans(p.text))


def span_head(p: Parsed, i: int, j: int) -> int:
    """The span's syntactic head: its first token whose head lies outside the span (else the last)."""
    for k in range(i, j):
        h = p.tokens[k].head
        if h == k or not i <= h < j:
            return k
    return j - 1


def dep_path(ctx: SentenceContext, a: int, b: int) -> tuple[str, int]:
    """The dependency path from token a up to the common ancestor and down to token b, as labels, and
    its length in arcs."""
    up, down = ctx.ancestors[a], ctx.ancestors[b]
    common = next((x for x in up if x in set(down)), None)
    if common is None:
        return "none", 99
    ua, db = up[: up.index(common)], down[: down.index(common)]
    toks = ctx.parsed.tokens
    label = "^".join(toks[x].dep for x in ua) + "|" + "v".join(toks[x].dep for x in reversed(db))
    return label, len(ua) + len(db)


def _bucket(n: int) -> str:
    return str(n) if n <= 4 else ("5-6" if n <= 6 else ("7-9" if n <= 9 else "10+"))


def span_features(q: QuestionInfo, ctx: SentenceContext, i: int, j: int, kinds: frozenset[str]) -> dict[str, float]:
    """Named features of candidate tokens [i, j) of the sentence in `ctx`, for question `q`."""
    p = ctx.parsed
    toks = p.tokens
    wh = q.wh
    f: dict[str, float] = {"bias": 1.0}
    n = j - i
    f["len=" + _bucket(n)] = 1.0
    f[f"len={_bucket(n)}|wh={wh}"] = 1.0
    for kind in kinds:
        f["kind=" + kind] = 1.0
        f[f"kind={kind}|wh={wh}"] = 1.0
    label = ctx.ent_label.get((i, j))
    if label is None:
        inside = {toks[k].ent for k in range(i, j) if toks[k].ent}
        ent_key = "part:" + sorted(inside)[0] if inside else "none"
    else:
        ent_key = label
    f["ent=" + ent_key] = 1.0
    f[f"ent={ent_key}|wh={wh}"] = 1.0
    f[f"ent={ent_key}|kind={q.kind}"] = 1.0
    if q.head:
        f[f"ent={ent_key}|qhead={q.head}"] = 1.0
    h = span_head(p, i, j)
    head = toks[h]
    f[f"hpos={head.pos}|wh={wh}"] = 1.0
    f[f"hdep={head.dep}|wh={wh}"] = 1.0
    f[f"hpos={head.pos}|hdep={head.dep}"] = 1.0
    f[f"hdep={head.dep}|role={q.role}"] = 1.0
    f[f"ent={ent_key}|role={q.role}"] = 1.0
    f[f"hlemma={head.lemma}|wh={wh}"] = 1.0  # "century", "percent", "million": kept when seen often enough
    if q.head:
        f[f"hpos={head.pos}|qhead={q.head}"] = 1.0
        if head.lemma == q.head:
            f["head_is_qhead"] = 1.0
    f[f"first={toks[i].pos}|wh={wh}"] = 1.0
    f[f"last={toks[j - 1].pos}|wh={wh}"] = 1.0
    f[f"first={toks[i].pos}|last={toks[j - 1].pos}"] = 1.0
    if any(toks[k].like_num for k in range(i, j)):
        f[f"has_num|wh={wh}"] = 1.0
    if toks[i].text[:1].isupper():
        f[f"cap|wh={wh}"] = 1.0
    # overlap with the question: answers rarely repeat the words asked with
    content = [k for k in range(i, j) if not toks[k].is_stop and not toks[k].is_punct]
    asked = [k for k in content if toks[k].lemma in q.lemmas]
    if content:
        frac = len(asked) / len(content)
        f["asked_frac"] = frac
        if frac == 1.0:
            f["all_asked"] = 1.0
    else:
        f["no_content"] = 1.0
    if any(toks[k].text == "," for k in range(i, j)):
        f["comma"] = 1.0
    text = p.span_text(i, j)
    if ctx.subject and text.lower().removesuffix("()") == ctx.subject.lower():
        f["is_subject"] = 1.0
        f[f"is_subject|wh={wh}"] = 1.0
    if is_code(text):
        f["code"] = 1.0
        f[f"code|wh={wh}"] = 1.0
    role = role_in(ctx.signature, toks[i].start, toks[j - 1].end)
    if role:  # the name a signature line defines, or one of its parameters
        f["sig=" + role] = 1.0
        f[f"sig={role}|wh={wh}"] = 1.0
    if any(toks[k].pos == "VERB" for k in range(i, j)):
        f[f"verb|wh={wh}"] = 1.0
    # where the span stands relative to the question's words in the sentence
    outside = [m for m in ctx.matched if m < i or m >= j]
    if outside:
        d = min(i - m if m < i else m - j + 1 for m in outside)
        f["log_dist"] = math.log1p(d)
        f["dist=" + _bucket(d)] = 1.0
        left = sum(1 for m in outside if m < i)
        f["asked_left_frac"] = left / len(outside)
        near_left = sum(1 for m in outside if i - 3 <= m < i)
        near_right = sum(1 for m in outside if j <= m < j + 3)
        f[f"near_left={min(near_left, 2)}"] = 1.0
        f[f"near_right={min(near_right, 2)}"] = 1.0
        nearest = min(outside, key=lambda m: abs(m - h))
        path, arcs = dep_path(ctx, h, nearest)
        f["tree_dist"] = math.log1p(arcs)
        if arcs <= 3:
            f[f"path={path}"] = 1.0
            f[f"path={path}|wh={wh}"] = 1.0
            f[f"path={path}|role={q.role}"] = 1.0
        root_side = toks[nearest].head == h or head.head == nearest
        if root_side:
            f[f"adjacent|hdep={head.dep}|wh={wh}"] = 1.0
    else:
        f["no_asked_in_sentence"] = 1.0
    if i > 0:
        prev = toks[i - 1]
        if prev.lemma in q.lemmas:
            f["prev_asked"] = 1.0
        word = prev.text.lower()
        if word in _CLOSED_PREV:
            f[f"prev={word}|wh={wh}"] = 1.0
        f[f"prevpos={prev.pos}|wh={wh}"] = 1.0
    else:
        f["at_start"] = 1.0
    if j < len(toks):
        nxt = toks[j]
        if nxt.lemma in q.lemmas:
            f["next_asked"] = 1.0
        f[f"nextpos={nxt.pos}|wh={wh}"] = 1.0
        if nxt.text in (",", ".", ";", ")", ":"):
            f[f"next_punct|wh={wh}"] = 1.0
    else:
        f["at_end"] = 1.0
    return f


def sentence_candidates(q: QuestionInfo, p: Parsed, max_tokens: int = MAX_TOKENS, subject: str = ""
                        ) -> tuple[list[tuple[int, int]], list[dict[str, float]]]:
    """Every candidate [i, j) of a sentence and its features, in a fixed order; `subject` is the
    subject of the sentence's document."""
    ctx = sentence_context(p, q, subject)
    spans = candidate_spans(p, max_tokens)
    keys = sorted(spans)
    return keys, [span_features(q, ctx, i, j, spans[(i, j)]) for i, j in keys]


def char_span(p: Parsed, i: int, j: int) -> tuple[int, int]:
    """Character offsets of tokens [i, j) in the parsed text."""
    return p.tokens[i].start, p.tokens[j - 1].end


def spans_text(p: Parsed, spans: Sequence[tuple[int, int]]) -> list[str]:
    return [p.span_text(i, j) for i, j in spans]
