"""Grounded extractive answers, the core both front ends call: which retrieved passages support an answer
(`reader.grounding`), each read with its document's neighbouring chunks, and the reader's span with its
sentence and document offsets. `/v1/answer` serves this for ragkiln's own models (and with no model at
all); `ragkiln ask` prints it; bench/reader.py --served and bench/demo_answers.py measure it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from common.errors import InvalidInput
from common.settings import Settings
from indexer import chunking
from indexer.workspace import Workspace
from ner.filters import EntityFilter, parse_entity_filters, search_with_entities
from indexer.types import Chunk, Hit
from reader.grounding import relevant_hits
from reader.question import question_class
from reader.read import Example
from reader.sentences import Passage
from reader.serve import ReaderRuntime, ReadResult
from reader.serve import make_reader_runtime as reader_runtime_for

NO_ANSWER = "I could not find anything in the indexed documents that answers this question."
EXAMPLE_MAX_CHARS = 2000  # a longer code block is cut at a line end before this
_EXAMPLE_REACH = 1000  # how far past its sentence a block may start (the rest of its paragraph may lie between)


def make_reader_runtime(settings: Settings, **cache_sizes: int) -> ReaderRuntime:
    """A reader with the shipped weights; its pipeline (server.reader_pipeline) is loaded on first use.
    `cache_sizes`: vector_cache / parse_cache entries (a bench reading a whole corpus wants more)."""
    return reader_runtime_for(settings.server.reader_pipeline, **cache_sizes)


def reader_passages(hits: Sequence[Hit], n: int) -> list[Passage]:
    """The first `n` hits as the reader's passages (rank = position among the relevant hits, best first)."""
    return [Passage(h.chunk.text, h.chunk.doc_id, h.chunk.start, rank=i + 1, score=float(h.score), title=h.chunk.title)
            for i, h in enumerate(hits[:n])]


@dataclass(frozen=True)
class ReadWindow:
    """A passage the reader reads: its best hit and the chunks of the document span it covers."""

    hit: Hit
    chunks: tuple[Chunk, ...]
    passage: Passage

    def holder(self, doc_offset: int) -> Hit:
        """The window's best hit, with the chunk that holds `doc_offset` (what a citation names)."""
        inside = [c for c in self.chunks if c.start <= doc_offset]
        return replace(self.hit, chunk=inside[-1]) if inside else self.hit


def reading_windows(hits: Sequence[Hit], n: int, store: Any = None, context: int = 0) -> list[ReadWindow]:
    """The first `n` hits as the reader reads them: each with `context` chunks of its document either side,
    a document's touching windows as one (indexer.chunking.reading_windows), cut from the stored document;
    without a store, the hits' own chunks."""
    hits = list(hits[:n])
    if store is None:
        return [ReadWindow(h, (h.chunk,), p) for h, p in zip(hits, reader_passages(hits, n))]
    out = []
    for rank, (_doc, first, last, best) in enumerate(chunking.reading_windows(
            [(h.chunk.doc_id, h.chunk.ord) for h in hits], context), start=1):
        h = hits[best]
        chunks, text = store.window(h.chunk.id, first, last)
        if not chunks:  # the chunk left the store under us (a reindex): read the hit as it came
            chunks, text = [h.chunk], h.chunk.text
        out.append(ReadWindow(h, tuple(chunks), Passage(text, h.chunk.doc_id, chunks[0].start, rank=rank,
                                                        score=float(h.score), title=h.chunk.title)))
    return out


def clip_example(start: int, text: str, limit: int = EXAMPLE_MAX_CHARS) -> Example:
    """A block as an Example, cut at the last line end within `limit` characters when it is longer."""
    if len(text) > limit:
        cut = text.rfind("\n", 0, limit)
        text = text[: cut if cut > limit // 2 else limit].rstrip()
    return Example(text, start, start + len(text))


def answer_example(store: Any, question: str, chunk_id: int, sentence: tuple[int, int]) -> Example | None:
    """The code block holding the answer's sentence, or the one right after the sentence's paragraph, for a
    how-to question (reader.question's "how_to"); None for other questions, without a store, or when the
    document has no such block (a plain-text document has none)."""
    if store is None or question_class(question) != "how_to":
        return None
    s0, s1 = sentence
    block = store.code_block_at(chunk_id, s0, s1 + _EXAMPLE_REACH)
    if block is None:
        return None
    b0, _b1, text = block
    if b0 > s1 and "\n" in store.document_text(chunk_id, s1, b0).rstrip():  # the sentence's paragraph ended before
        return None
    return clip_example(b0, text)


def read_relevant(runtime: ReaderRuntime, embedder: Any, question: str, relevant: Sequence[Hit],
                  question_vec: np.ndarray | None = None, store: Any = None, context: int = 0
                  ) -> tuple[ReadResult, list[Hit]]:
    """The reader's answer from the relevant hits (best first), and the hits it read, one per passage (the
    answer's passage as the chunk holding the answer). What /v1/answer serves for an extractive answer, reading
    `context` neighbouring chunks of `store` either side of each hit; bench/reader.py --served and
    bench/demo_answers.py call it too."""
    windows = reading_windows(relevant, runtime.weights.settings.passages, store, context)
    result = runtime.read(question, [w.passage for w in windows], embedder, question_vec)
    used = [w.hit for w in windows]
    a = result.answer
    if a is not None:
        used[a.passage] = windows[a.passage].holder(a.doc_start)
        example = answer_example(store, question, used[a.passage].chunk.id, (a.sentence_doc_start, a.sentence_doc_end))
        result = replace(result, example=example)
    return result, used


@dataclass(frozen=True)
class GroundedAnswer:
    """An extractive answer: the span (a module member by its qualified name, "pty.spawn"), its sentence and
    the chunk holding it, with document offsets. `text` is NO_ANSWER when no retrieved passage supports an
    answer (`grounded` False, as /v1/answer says it) or the supporting ones hold no span (`hit` None)."""

    text: str
    grounded: bool
    hit: Hit | None = None  # the chunk holding the answer, as retrieved
    span: tuple[int, int] = (0, 0)  # document offsets of the span
    sentence: str = ""
    sentence_span: tuple[int, int] = (0, 0)  # document offsets of the sentence
    hits: tuple[Hit, ...] = ()  # what retrieval returned, best first
    problem: str | None = None  # why the reader could not read (its pipeline failed to load)
    seconds: float = 0.0  # reading time
    example: Example | None = None  # the code a how-to answer's sentence introduces (`answer_example`)


def ask(searcher: Any, runtime: ReaderRuntime, question: str, settings: Settings, k: int = 5,
        mode: str = "hybrid", filters: Sequence[EntityFilter] = ()) -> GroundedAnswer:
    """Retrieve `k` hits (among the chunks holding every entity of `filters`), keep those that support an
    answer, read them with their neighbours: what `/v1/answer` answers extractively for the same question,
    retrieval, entity filters and settings."""
    hits = search_with_entities(searcher, searcher.store, question, k=k, mode=mode, filters=filters)["hits"]
    relevant = relevant_hits(hits, question, searcher.gen.bm25, settings.server)
    if not relevant:
        return GroundedAnswer(NO_ANSWER, False, hits=tuple(hits))
    result, used = read_relevant(runtime, searcher.embedder, question, relevant, None, searcher.store,
                                 settings.server.reader_context_chunks)
    a = result.answer
    if a is None:
        return GroundedAnswer(NO_ANSWER, True, hits=tuple(hits), problem=result.problem, seconds=result.seconds)
    return GroundedAnswer(a.name or a.text, True, used[a.passage], (a.doc_start, a.doc_end), a.sentence,
                          (a.sentence_doc_start, a.sentence_doc_end), tuple(hits), result.problem, result.seconds,
                          result.example)


def answer_question(settings: Settings, question: str, k: int = 5, mode: str = "hybrid",
                    entity_specs: Sequence[str] = ()) -> GroundedAnswer:
    """`ragkiln ask`: the workspace's index and the shipped reader, for one question (`entity_specs`: LABEL or
    LABEL:value, as `ragkiln search --entity`)."""
    if not question.strip():
        raise InvalidInput("question must not be empty")
    filters = parse_entity_filters(entity_specs)
    searcher = Workspace.existing(settings).searcher()
    return ask(searcher, make_reader_runtime(settings), question, settings, k=k, mode=mode, filters=filters)
