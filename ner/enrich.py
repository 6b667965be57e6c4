"""The Enricher the indexer calls during ingest: texts in, entities with chunk-relative offsets out.

The indexer never imports spaCy; it receives `SpacyEnricher(...)` as a plain callable and fills
the document offsets itself. Texts go through `nlp.pipe` in batches; with `n_process > 1` a pool
of worker processes, started once per enricher, shares the calls that are large enough to pay for
the hand-over (small calls, e.g. one uploaded document, stay in-process).
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


@dataclass(frozen=True)
class PipelineSpec:
    """How to load the pipeline; worker processes load their own copy from it."""

    model: str
    patterns: str | None = None
    phrase_attr: str = "ORTH"

    def load(self) -> Language:
        from ner.pipeline import load_pipeline

        return load_pipeline(self.model, patterns=self.patterns, phrase_attr=self.phrase_attr)


_WORKER_NLP: Any = None


def _worker_init(spec: PipelineSpec) -> None:
    global _WORKER_NLP
    _WORKER_NLP = spec.load()


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
    ) -> None:
        if nlp is None and spec is None:
            raise ValueError("SpacyEnricher needs a pipeline or a PipelineSpec")
        self._nlp = nlp
        self.spec = spec
        self.batch_size = batch_size
        self.n_process = n_process
        self.min_texts_per_process = min_texts_per_process
        self._pool: Any = None

    @classmethod
    def from_config(cls, cfg: NerConfig) -> SpacyEnricher:
        spec = PipelineSpec(cfg.model, cfg.patterns, cfg.phrase_attr)
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
        step = max(1, min(self.batch_size, -(-len(texts) // n_proc)))
        parts = [(texts[i : i + step], self.batch_size) for i in range(0, len(texts), step)]
        out: list[list[Entity]] = []
        for ents in self._workers().imap(_worker_enrich, parts):
            out.extend(ents)
        return out

    __call__ = enrich

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
