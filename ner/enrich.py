"""The Enricher the indexer calls during ingest: texts in, entities with chunk-relative offsets out.

The indexer never imports spaCy; it receives `SpacyEnricher(...)` as a plain callable and fills
the document offsets itself. Texts go through `nlp.pipe` in batches; with `n_process > 1` a pool
of worker processes, started once per enricher, shares the calls that are large enough to pay for
the hand-over (small calls, e.g. one uploaded document, stay in-process). Each worker keeps its BLAS
to one thread: the pool already has a process per core.

Chunks of one document overlap, so `enrich_documents` runs NER once over each document's stretch
of text that its chunks cover and hands every chunk the entities lying wholly inside it: the
shared words are not processed twice, and an entity cut by a chunk edge is found in full in the
chunk that holds it.
"""

from __future__ import annotations

import contextlib
import logging
import re
import unicodedata
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from common.errors import ModelUnavailable
from indexer.types import Entity

if TYPE_CHECKING:
    from spacy.language import Language

    from common.settings import NerConfig

log = logging.getLogger(__name__)

_ARTICLES = ("the ", "a ", "an ")
_WS = re.compile(r"\s+")
_EDGE_PUNCT = " \t\n\"'“”‘’`.,;:!?()[]{}<>"


def normalize_entity(text: str) -> str:
    """The form filters and facets group by: NFKC, lowercase, whitespace collapsed, a leading
    article, surrounding quotes/brackets/punctuation and a trailing possessive removed.

    "The  Pfizer Inc.'s" -> "pfizer inc"; "  U.S. " -> "u.s". Never empty for a non-blank input
    made of letters or digits.
    """
    s = unicodedata.normalize("NFKC", text).lower()
    s = _WS.sub(" ", s).strip()
    for suffix in ("'s", "’s"):
        if s.endswith(suffix) and len(s) > len(suffix):
            s = s[: -len(suffix)]
    s = s.strip(_EDGE_PUNCT)
    for art in _ARTICLES:
        if s.startswith(art) and len(s) > len(art):
            s = s[len(art):]
            break
    s = s.strip(_EDGE_PUNCT)
    return s or _WS.sub(" ", text.lower()).strip()


def doc_entities(doc: Any) -> list[Entity]:
    """Entities of a processed spaCy Doc; offsets are relative to the Doc's text."""
    return [
        Entity(
            text=e.text,
            label=e.label_,
            norm=normalize_entity(e.text),
            start=e.start_char,
            end=e.end_char,
            doc_start=e.start_char,
            doc_end=e.end_char,
        )
        for e in doc.ents
    ]


def region_plan(spans: Sequence[tuple[int, int]], max_chars: int) -> list[tuple[int, int]]:
    """Merge overlapping or touching chunk spans into regions, cutting at a chunk start rather than
    letting a region grow past `max_chars` (a single longer chunk is its own region)."""
    regions: list[tuple[int, int]] = []
    for s, e in sorted(spans):
        if regions and s <= regions[-1][1] and max(e, regions[-1][1]) - regions[-1][0] <= max_chars:
            regions[-1] = (regions[-1][0], max(e, regions[-1][1]))
        else:
            regions.append((s, e))
    return regions


def shift(e: Entity, offset: int) -> Entity:
    """The entity with its offsets moved by `offset` (region-relative -> document-relative)."""
    return Entity(e.text, e.label, e.norm, e.start + offset, e.end + offset, e.doc_start + offset, e.doc_end + offset)


def entities_within(doc_ents: Sequence[Entity], start: int, end: int) -> list[Entity]:
    """Document entities wholly inside [start, end), with chunk-relative `start`/`end`; each kept once."""
    seen: set[tuple[int, int, str]] = set()
    out = []
    for e in doc_ents:
        if start <= e.doc_start and e.doc_end <= end and (e.doc_start, e.doc_end, e.label) not in seen:
            seen.add((e.doc_start, e.doc_end, e.label))
            out.append(Entity(e.text, e.label, e.norm, e.doc_start - start, e.doc_end - start, e.doc_start, e.doc_end))
    return out


def part_size(n_texts: int, per_round: int, batch_size: int) -> int:
    """Texts per hand-over part: at most a batch, with the parts as many as a multiple of `per_round` (workers x
    parts per worker) and about equal. A call of 166 texts cut 64, 64, 38 left one of two workers idle for a third
    of the call (18.8k against 21.7k words/s, bench/results/ner-speed.json); cut 42, 42, 42, 40 it does not."""
    rounds = -(-n_texts // (per_round * batch_size))
    return max(1, -(-n_texts // (per_round * rounds)))


@dataclass(frozen=True)
class PipelineSpec:
    """How to load the pipeline; worker processes load their own copy from it."""

    model: str
    patterns: str | None = None
    phrase_attr: str = "ORTH"
    gemm: str = "numpy"

    def load(self) -> Language:
        from ner.pipeline import load_pipeline

        return load_pipeline(self.model, patterns=self.patterns, phrase_attr=self.phrase_attr,
                             gemm=self.gemm)  # type: ignore[arg-type]


_WORKER_NLP: Any = None
_WORKER_LIMITS: Any = None


def _worker_init(spec: PipelineSpec) -> None:
    global _WORKER_NLP, _WORKER_LIMITS
    _WORKER_NLP = spec.load()
    _WORKER_LIMITS = one_blas_thread()


def one_blas_thread() -> Any:
    """Limit every BLAS/OpenMP pool loaded in this process to one thread (a process per core already).

    threadpoolctl only reaches libraries that are loaded when it is called, so this runs after the
    pipeline (numpy, OpenBLAS) is: limited before, two workers each ran two OpenBLAS threads on the
    two cores and got 15,800 words/s together; limited after, 23,600 with the same batches of 64
    (bench/results/ner-speed.json).
    """
    from threadpoolctl import threadpool_limits

    return threadpool_limits(1)


def _worker_enrich(args: tuple[list[str], int]) -> list[list[Entity]]:
    texts, batch_size = args
    return [doc_entities(d) for d in _WORKER_NLP.pipe(texts, batch_size=batch_size)]


class SpacyEnricher:
    """`enrich(texts) -> list[list[Entity]]`, one list per text, offsets relative to that text.

    `doc_start`/`doc_end` are set equal to `start`/`end`; the indexer shifts them by the chunk's
    position in its document. With `n_process > 1` and a `PipelineSpec`, a pool of worker
    processes (spawned once, each loading the pipeline once) shares large calls; the indexer calls
    the enricher once per few hundred chunks, so re-forking per call (what `nlp.pipe(n_process=)`
    does) would cost more than it saves. Call `close()` (or use `with`) to stop the workers.
    """

    def __init__(
        self,
        nlp: Language | None = None,
        *,
        spec: PipelineSpec | None = None,
        batch_size: int = 64,
        n_process: int = 1,
        min_texts_per_process: int = 32,
        parts_per_process: int = 1,
    ) -> None:
        if nlp is None and spec is None:
            raise ValueError("SpacyEnricher needs a pipeline or a PipelineSpec")
        self._nlp = nlp
        self.spec = spec
        self.batch_size = batch_size
        self.n_process = n_process
        self.min_texts_per_process = min_texts_per_process
        self.parts_per_process = max(1, parts_per_process)  # smaller parts: less idle time at a call's end
        self._pool: Any = None

    @classmethod
    def from_config(cls, cfg: NerConfig) -> SpacyEnricher:
        spec = PipelineSpec(cfg.model, cfg.patterns, cfg.phrase_attr, cfg.gemm)
        enricher = cls(spec=spec, batch_size=cfg.batch_size, n_process=cfg.n_process)
        enricher.nlp  # noqa: B018 - load now so a missing model fails before any work starts
        return enricher

    @property
    def nlp(self) -> Language:
        if self._nlp is None:
            assert self.spec is not None
            self._nlp = self.spec.load()
        return self._nlp

    @property
    def name(self) -> str:
        return f"spacy:{self.nlp.meta.get('name', '?')}-{self.nlp.meta.get('version', '?')}"

    def processes_for(self, n_texts: int) -> int:
        """Worker processes worth using for this many texts (small calls stay in-process)."""
        if self.n_process <= 1:
            return 1
        return max(1, min(self.n_process, n_texts // self.min_texts_per_process))

    def enrich(self, texts: Sequence[str]) -> list[list[Entity]]:
        texts = list(texts)
        if not texts:
            return []
        n_proc = self.processes_for(len(texts))
        if n_proc <= 1:
            return [doc_entities(d) for d in self.nlp.pipe(texts, batch_size=self.batch_size)]
        if self.spec is None:  # a pipeline object only: spaCy's own multiprocessing
            docs = self.nlp.pipe(texts, batch_size=self.batch_size, n_process=n_proc)
            return [doc_entities(d) for d in docs]
        step = part_size(len(texts), n_proc * self.parts_per_process, self.batch_size)
        parts = [(texts[i : i + step], self.batch_size) for i in range(0, len(texts), step)]
        out: list[list[Entity]] = []
        for ents in self._workers().imap(_worker_enrich, parts):
            out.extend(ents)
        return out

    __call__ = enrich

    def enrich_documents(
        self, documents: Sequence[tuple[str, Sequence[tuple[int, int]]]], max_region_chars: int = 20_000
    ) -> list[list[list[Entity]]]:
        """Entities per chunk for documents given as (text, chunk spans), NER run once per region.

        `documents[i] = (text, [(start, end), ...])` with character spans of the chunks in `text`;
        the result mirrors that shape. Overlapping or touching chunks are merged into regions of at
        most `max_region_chars` (a longer one is cut at a chunk start), each region goes through
        `enrich` once, and a chunk gets the region's entities that lie wholly inside its span.
        `start`/`end` are chunk-relative, `doc_start`/`doc_end` document-relative.
        """
        plan = [region_plan(spans, max_region_chars) for _text, spans in documents]
        texts = [text[a:b] for (text, _spans), regions in zip(documents, plan) for a, b in regions]
        found = iter(self.enrich(texts))
        out: list[list[list[Entity]]] = []
        for (_text, spans), regions in zip(documents, plan):
            doc_ents = [shift(e, a) for a, _b in regions for e in next(found)]
            out.append([entities_within(doc_ents, s, e) for s, e in spans])
        return out

    def _workers(self) -> Any:
        if self._pool is None:
            import multiprocessing as mp

            assert self.spec is not None
            self._pool = mp.get_context("spawn").Pool(self.n_process, initializer=_worker_init, initargs=(self.spec,))
        return self._pool

    def close(self) -> None:
        if self._pool is not None:
            self._pool.terminate()
            self._pool.join()
            self._pool = None

    def __enter__(self) -> SpacyEnricher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def make_enricher(cfg: NerConfig) -> SpacyEnricher | None:
    """The enricher ingest should use, or None when NER is disabled in the settings."""
    if not cfg.enabled:
        return None
    return SpacyEnricher.from_config(cfg)


@contextlib.contextmanager
def open_enricher(cfg: NerConfig) -> Iterator[SpacyEnricher | None]:
    """`with open_enricher(settings.ner) as enricher: ingest(..., enricher=enricher)`; workers stop after."""
    try:
        enricher = make_enricher(cfg)
    except ModelUnavailable as e:
        raise ModelUnavailable(f"{e}; or skip entity extraction with --no-ner") from e
    try:
        yield enricher
    finally:
        if enricher is not None:
            enricher.close()
