"""Readers for annotated NER data: CoNLL (IOB1, IOB2 or IOBES) and JSONL with character spans.

Both produce `NerExample`s (text + character spans). CoNLL keeps its gold tokens so training and
evaluation use the tokenization the annotators saw; JSONL is tokenized by the pipeline, and spans
that do not fall on token boundaries are reported by `to_docs` according to a policy, never dropped
silently.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from common.errors import InvalidInput, NotFound
from common.jsonl import iter_jsonl

MisalignedPolicy = Literal["error", "expand", "skip"]


@dataclass(frozen=True)
class NerExample:
    """One annotated text. `words` is set when the source is pre-tokenized (CoNLL)."""

    text: str
    spans: tuple[tuple[int, int, str], ...]  # (start, end, label), character offsets
    words: tuple[str, ...] | None = None
    source: str = ""  # "file:line" of the first line, for error messages


@dataclass
class AlignmentReport:
    """Spans that did not fall on token boundaries, and what was done with them."""

    policy: str = "error"
    total_spans: int = 0
    misaligned: int = 0
    examples: list[str] = field(default_factory=list)  # a few "source: 'span text' [s, e) LABEL"

    def to_dict(self) -> dict[str, object]:
        return {
            "policy": self.policy,
            "total_spans": self.total_spans,
            "misaligned": self.misaligned,
            "examples": self.examples,
        }


# ---------------------------------------------------------------------------------------------
# CoNLL


def iob_to_spans(tags: Sequence[str], where: str = "") -> list[tuple[int, int, str]]:
    """Token spans [start, end) from IOB1, IOB2 or IOBES tags, decoded as conlleval does.

    A chunk starts at B-X, S-X, or an I-X/E-X that does not continue a chunk of type X (IOB1, or
    an IOB2 inconsistency); it ends before O, B-, S-, or a tag of another type, and after E-/S-.
    """
    spans: list[tuple[int, int, str]] = []
    start, label = -1, ""
    for i, tag in enumerate(tags):
        if tag == "O":
            prefix, typ = "O", ""
        else:
            prefix, sep, typ = tag.partition("-")
            if not sep or prefix not in ("B", "I", "E", "S") or not typ:
                raise InvalidInput(f"{where}: invalid NER tag {tag!r} at token {i + 1} (expected O, B-X, I-X, E-X or S-X)")
        continues = start >= 0 and prefix in ("I", "E") and typ == label
        if start >= 0 and not continues:
            spans.append((start, i, label))
            start, label = -1, ""
        if prefix != "O" and not continues:
            start, label = i, typ
        if prefix in ("E", "S"):
            spans.append((start, i + 1, label))
            start, label = -1, ""
    if start >= 0:
        spans.append((start, len(tags), label))
    return spans


def words_to_example(words: Sequence[str], tags: Sequence[str], source: str = "") -> NerExample:
    """Join tokens with single spaces and turn token spans into character spans."""
    offsets: list[int] = []
    pos = 0
    for w in words:
        offsets.append(pos)
        pos += len(w) + 1
    text = " ".join(words)
    spans = tuple(
        (offsets[s], offsets[e - 1] + len(words[e - 1]), lab) for s, e, lab in iob_to_spans(tags, source)
    )
    return NerExample(text=text, spans=spans, words=tuple(words), source=source)


def read_conll(path: Path) -> list[NerExample]:
    """Sentences of a CoNLL file: one `token ... tag` per line (tag last), blank lines between
    sentences, `-DOCSTART-` lines ignored (they also end a sentence)."""
    path = _existing(path)
    out: list[NerExample] = []
    words: list[str] = []
    tags: list[str] = []
    first = 0

    def flush() -> None:
        if words:
            out.append(words_to_example(words, tags, f"{path.name}:{first}"))
        words.clear()
        tags.clear()

    with open(path, encoding="utf-8") as f:
        for lineno, raw in enumerate(f, 1):
            line = raw.strip()
            if not line or line.startswith("-DOCSTART-"):
                flush()
                continue
            cols = line.split()
            if len(cols) < 2:
                raise InvalidInput(f"{path.name}:{lineno}: expected 'token ... tag', got {line[:60]!r}")
            if not words:
                first = lineno
            words.append(cols[0])
            tags.append(cols[-1])
    flush()
    return out


# ---------------------------------------------------------------------------------------------
# JSONL


def read_jsonl(path: Path) -> list[NerExample]:
    """Lines `{"text": str, "entities": [[start, end, label], ...]}`; offsets are checked here
    (inside the text, non-empty, not overlapping), token alignment later by `to_docs`."""
    out: list[NerExample] = []
    for where, obj in iter_jsonl(path, "annotation file"):
        if not isinstance(obj, dict) or not isinstance(obj.get("text"), str):
            raise InvalidInput(f"{where}: expected an object with a string 'text'")
        text = obj["text"]
        ents = obj.get("entities", obj.get("spans", []))
        if not isinstance(ents, list):
            raise InvalidInput(f"{where}: 'entities' must be a list of [start, end, label]")
        spans = []
        for ent in ents:
            if isinstance(ent, dict):
                ent = [ent.get("start"), ent.get("end"), ent.get("label")]
            if (
                not isinstance(ent, list | tuple)
                or len(ent) != 3
                or not isinstance(ent[0], int)
                or not isinstance(ent[1], int)
                or not isinstance(ent[2], str)
                or not ent[2]
            ):
                raise InvalidInput(f"{where}: entity {ent!r} is not [start, end, label]")
            s, e, lab = ent
            if not 0 <= s < e <= len(text):
                raise InvalidInput(f"{where}: entity [{s}, {e}, {lab!r}] is outside the text (length {len(text)})")
            spans.append((s, e, lab))
        spans.sort()
        for (s1, e1, l1), (s2, e2, l2) in zip(spans, spans[1:], strict=False):
            if s2 < e1:
                raise InvalidInput(f"{where}: entities [{s1}, {e1}, {l1!r}] and [{s2}, {e2}, {l2!r}] overlap")
        out.append(NerExample(text=text, spans=tuple(spans), source=where))
    return out


def read_examples(path: Path) -> list[NerExample]:
    """Dispatch on the file: `.jsonl`/`.json` is JSONL, anything else CoNLL."""
    path = Path(path)
    if path.suffix.lower() in (".jsonl", ".json", ".ndjson"):
        return read_jsonl(path)
    return read_conll(path)


def labels_of(examples: Iterable[NerExample]) -> list[str]:
    return sorted({lab for ex in examples for _s, _e, lab in ex.spans})


def _existing(path: Path) -> Path:
    path = Path(path)
    if not path.is_file():
        raise NotFound(f"annotation file {path} does not exist")
    return path


# ---------------------------------------------------------------------------------------------
# To spaCy docs


def to_docs(nlp, examples: Sequence[NerExample], misaligned: MisalignedPolicy = "error", max_report: int = 5):  # type: ignore[no-untyped-def]
    """Gold spaCy Docs (tokens + `doc.ents`) and an AlignmentReport.

    Pre-tokenized examples keep their words; others go through `nlp.make_doc`. A span that does not
    start and end on token boundaries is: an InvalidInput listing the first offenders ("error"),
    widened to the enclosing tokens ("expand"), or left out ("skip"); the last two are counted in
    the report, which callers print.
    """
    from spacy.tokens import Doc

    report = AlignmentReport(policy=misaligned)
    docs = []
    for ex in examples:
        if ex.words is not None:
            doc = Doc(nlp.vocab, words=list(ex.words), spaces=[True] * (len(ex.words) - 1) + [False])
        else:
            doc = nlp.make_doc(ex.text)
        ents = []
        for s, e, lab in ex.spans:
            report.total_spans += 1
            span = doc.char_span(s, e, label=lab, alignment_mode="strict")
            if span is None:
                report.misaligned += 1
                if len(report.examples) < max_report:
                    report.examples.append(f"{ex.source}: {ex.text[s:e]!r} [{s}, {e}) {lab}")
                if misaligned == "expand":
                    span = doc.char_span(s, e, label=lab, alignment_mode="expand")
                if span is None or len(span) == 0:
                    continue
            ents.append(span)
        try:
            doc.ents = _drop_overlaps(ents)
        except ValueError as err:  # pragma: no cover - overlaps are rejected by the readers
            raise InvalidInput(f"{ex.source}: {err}") from err
        docs.append(doc)
    if misaligned == "error" and report.misaligned:
        raise InvalidInput(
            f"{report.misaligned} of {report.total_spans} entity spans do not align with token boundaries "
            f"(first: {report.examples[0]}); fix the offsets or pass --misaligned expand|skip"
        )
    return docs, report


def _drop_overlaps(spans):  # type: ignore[no-untyped-def]
    # Expanding can make two spans share a token; keep the first, as spaCy's filter_spans would.
    from spacy.util import filter_spans

    return filter_spans(spans)


def check_policy(policy: str) -> MisalignedPolicy:
    if policy not in ("error", "expand", "skip"):
        raise InvalidInput(f"misaligned-span policy must be error, expand or skip, not {policy!r}")
    return policy  # type: ignore[return-value]
