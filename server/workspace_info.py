"""What the served workspace holds and what to try in it: the web page's welcome panel (`GET /v1/workspace`).

Counts come from the docstore (active corpus), the models from what the server loaded (the index's
embedder, the NER pipeline, the GGUF generator and the other types its export holds). The example
queries come from the corpus itself, never from a fixed list: a few document titles spread over the
corpus and its most mentioned informative entities (`ner.filters.entity_problem`, the rule that
also cleans the facets).
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from common.errors import NotFound, RagkilnError
from ner.filters import EntityRow, corpus_entity_rows
from server.state import ServerState, find_generator

log = logging.getLogger(__name__)

TITLE_EXAMPLES = 3
ENTITY_EXAMPLES = 4
MAX_EXAMPLE_CHARS = 80
LM_ARGS = ("dim", "n_layers", "n_heads", "n_kv_heads", "vocab_size", "max_seq_len")


@dataclass(frozen=True)
class EntityStats:
    distinct: int  # (label, value) pairs
    mentions: int
    informative: int  # pairs the facet rule shows
    labels: dict[str, int]  # label -> informative values


@dataclass(frozen=True)
class GgufInfo:
    type: str
    file: str
    size_bytes: int


@dataclass(frozen=True)
class GeneratorInfo:
    model: str | None  # the served model id; None when the generator is not loaded
    loaded: bool
    source: str | None  # the LM checkpoint the GGUF files were exported from
    lm_args: dict[str, Any]
    gguf_types: list[GgufInfo]
    problem: str | None


@dataclass(frozen=True)
class Example:
    query: str
    kind: str  # "title" | "entity"
    filter: str | None = None  # LABEL:value for entity examples


@dataclass(frozen=True)
class WorkspaceSummary:
    documents: int
    chunks: int
    index: str | None
    embedder: str | None
    embedding_dim: int | None
    ner: str | None
    entities: EntityStats
    generator: GeneratorInfo
    examples: list[Example] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


class WorkspaceInfo:
    """`describe_workspace` with the entity pass (one read of the entity table and the chunk texts)
    kept until another index generation becomes active."""

    def __init__(self) -> None:
        self._key: str | None = None
        self._rows: list[EntityRow] = []
        self._lock = threading.Lock()

    def describe(self, state: ServerState) -> WorkspaceSummary:
        key = state.workspace.active_index_name() or ""
        with self._lock:
            if self._key != key:
                self._rows, self._key = corpus_entity_rows(state.workspace.store), key
            rows = self._rows
        return describe_workspace(state, rows)


def describe_workspace(state: ServerState, rows: list[EntityRow] | None = None) -> WorkspaceSummary:
    """Counts, models and example queries of the workspace the server serves."""
    store = state.workspace.store
    problems: list[str] = []
    index = embedder = dim = None
    try:
        s = state.searcher()
        index, embedder, dim, chunks = s.name, s.embedder.id, getattr(s.embedder, "dim", None), s.size
    except RagkilnError as e:
        problems.append(f"index: {e}")
        chunks = len(store.active_chunk_ids())
    if rows is None:
        rows = corpus_entity_rows(store)
    ner = None if state.enricher is None else getattr(state.enricher, "name", "loaded")
    if state.enricher is None and state.ner_problem:
        problems.append(f"ner: {state.ner_problem}")
    generator = generator_info(state)
    if generator.problem:
        problems.append(f"generator: {generator.problem}")
    return WorkspaceSummary(
        documents=store.count_documents(), chunks=chunks, index=index, embedder=embedder, embedding_dim=dim, ner=ner,
        entities=entity_stats(rows), generator=generator,
        examples=title_examples(store) + entity_examples(rows), problems=problems,
    )


def entity_stats(rows: list[EntityRow]) -> EntityStats:
    shown = [r for r in rows if r.problem is None]
    return EntityStats(distinct=len(rows), mentions=sum(r.mentions for r in rows), informative=len(shown),
                       labels=dict(Counter(r.label for r in shown).most_common()))


def entity_examples(rows: list[EntityRow], n: int = ENTITY_EXAMPLES) -> list[Example]:
    """The most mentioned informative entities (rows come most mentioned first), one per value."""
    out: list[Example] = []
    seen: set[str] = set()
    for r in rows:
        if len(out) >= n:
            break
        if r.value in seen or r.problem is not None:
            continue
        seen.add(r.value)
        out.append(Example(r.value, "entity", f"{r.label}:{r.value}"))
    return out


def title_examples(store: Any, n: int = TITLE_EXAMPLES) -> list[Example]:
    """Titles of `n` documents spread evenly over the corpus (by id), so the examples cover its breadth."""
    ids = sorted(store.active_documents())
    if not ids:
        return []
    picks = [ids[round(i * (len(ids) - 1) / max(1, n - 1))] for i in range(min(n, len(ids)))]
    out: list[Example] = []
    for doc_id in dict.fromkeys(picks):
        doc = store.get_document(doc_id)
        title = " ".join((doc.title if doc else "").split())
        if title:
            out.append(Example(_shorten(title), "title"))
    return out


def generator_info(state: ServerState) -> GeneratorInfo:
    """The served GGUF model, the LM it came from and the quantization types its export holds."""
    gen = state.generator
    path: Path | None = None
    problem = None if gen is not None else (state.generator_problem or "not loaded")
    if gen is not None:
        raw = getattr(gen.runtime, "path", None)
        path = Path(raw) if raw else None
    else:
        try:
            path = find_generator(state.settings)
        except NotFound as e:
            problem = str(e)
    source, args, types = _export_info(path.parent) if path is not None else (None, {}, [])
    return GeneratorInfo(model=gen.model_id if gen is not None else None, loaded=gen is not None, source=source,
                         lm_args=args, gguf_types=types, problem=problem)


def _export_info(export_dir: Path) -> tuple[str | None, dict[str, Any], list[GgufInfo]]:
    try:
        from common.artifacts import read_manifest
        from quantize.export import GGUF_FORMAT_VERSION, GGUF_KIND

        m = read_manifest(export_dir, GGUF_KIND, GGUF_FORMAT_VERSION)
    except (RagkilnError, ImportError) as e:
        log.debug("no GGUF manifest in %s: %s", export_dir, e)
        return None, {}, []
    args = {k: v for k, v in (m.get("model_args") or {}).items() if k in LM_ARGS}
    types = [GgufInfo(t, str(info.get("file", "")), int(info.get("size_bytes", 0)))
             for t, info in (m.get("types") or {}).items()]
    return m.get("source_name"), args, types


def _shorten(text: str, limit: int = MAX_EXAMPLE_CHARS) -> str:
    if len(text) <= limit:
        return text
    cut = text[:limit].rsplit(" ", 1)[0]
    return cut or text[:limit]
