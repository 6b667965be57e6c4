"""The indexer's core operations, shared by the CLI and the HTTP server: ingest, reindex, search.

An ingest streams (`indexer.stream`): the scan yields documents one file at a time, batches of the new or changed
ones flow through chunk -> NER -> embed on overlapping threads (or Ray workers, `indexer.ray_ingest`), and every
result lands in the docstore as it comes. The index is then built from the store page by page and switched in
one commit; until that commit the previous generation serves, and a killed run's rows are reused by key.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any
from pathlib import Path

import numpy as np

from common.errors import InvalidInput, NotFound, NothingIngested
from common.hashing import sha256_text
from common.settings import IndexerConfig, Settings
from indexer import dense
from indexer.backends import auto_backends, cached_manifest, choose_embedder, describe
from indexer.bm25 import BM25Index
from indexer.chunking import SENTENCE_RULE, index_text
from indexer.embedder import Embedder, load_embedder
from indexer.generation import chunk_ids_of, load_generation, new_name, write_generation
from indexer.loaders import doc_id_for, iter_files, load_file
from indexer.reindex import ReindexPlan, plan_reindex
from indexer.search import MODES
from indexer.progress import IngestProgress
from indexer.stream import (CHUNKER_VERSION, STAGES, ChunkBatch, Enricher, LocalStages, SentencePages, VectorPages,
                            batched, chunk_document, chunker_id, corpus_chunk_ids, count_files, iter_bm25_texts,
                            iter_scan, ordered_chunks, run_stages)
from indexer.types import Chunk, Document, IngestReport, Skipped
from indexer.workspace import Workspace

if TYPE_CHECKING:
    from indexer.ray_ingest import RayOptions

log = logging.getLogger(__name__)

SWEEP_DOCS = 256  # unchanged documents per sweep batch (their chunks checked for entities and vectors)


def scan(paths: Iterable[Path], max_bytes: int) -> tuple[list[Document], list[Skipped], list[Path]]:
    """Load every supported file under the paths into lists (small corpora, benches); ingest streams them."""
    skipped: list[Skipped] = []
    roots: list[Path] = []
    docs = list(iter_scan(paths, max_bytes, skipped, roots))
    return docs, skipped, roots


def nothing_ingested_message(skipped: Sequence[Skipped], shown: int = 3) -> str:
    """One line: how many inputs were refused and the first reasons."""
    reasons = "; ".join(f"{Path(s.path).name}: {s.reason}" for s in skipped[:shown])
    more = f"; and {len(skipped) - shown} more" if len(skipped) > shown else ""
    return f"nothing ingested: all {len(skipped)} input(s) were skipped ({reasons}{more})"


def _in_roots(source: str, roots: Sequence[Path]) -> bool:
    p = Path(source)
    return any(p == r or r in p.parents for r in roots)


def ingest(settings: Settings, paths: Sequence[Path], enricher: Enricher | None = None,
           progress: bool = True, ray: RayOptions | None = None) -> IngestReport:
    """Bring the workspace index in line with the files under `paths` (incremental, streamed and atomic).

    With `ray`, chunking, NER and embedding of new or changed documents run on a Ray cluster's workers; the
    docstore writes, the index build and the commit stay here."""
    if not paths:
        raise InvalidInput("give at least one file or folder to ingest")
    t0 = time.perf_counter()
    ws = Workspace.open(settings)
    with ws.writer():
        skipped: list[Skipped] = []
        roots: list[Path] = []
        meter = IngestProgress(STAGES, enabled=progress)
        docs = iter_scan(paths, int(settings.indexer.max_file_mb * 2**20), skipped, roots,  # checks the paths
                         on_file=lambda: meter.update("load", 1))
        meter.expect("load", count_files(roots) if progress else 0)
        sources = ws.store.active_sources()
        try:
            report = _apply(ws, _counting_docs(docs, meter), lambda d: _in_roots(sources.get(d, ""), roots),
                            enricher, None, progress, ray=ray, skipped=skipped, meter=meter,
                            sample=_file_sample(roots, int(settings.indexer.max_file_mb * 2**20)))
        finally:
            meter.close()
    report.skipped = skipped + report.skipped
    report.seconds = time.perf_counter() - t0
    return report


def reindex(settings: Settings, embedder: str | None = None, enricher: Enricher | None = None,
            progress: bool = True, ray: RayOptions | None = None) -> IngestReport:
    """Rebuild the index from the stored documents, optionally with another embedder, then switch."""
    t0 = time.perf_counter()
    ws = Workspace.open(settings)
    with ws.writer():
        if ws.store.count_documents() == 0 and ws.active_index_name() is None:
            raise NotFound(f"workspace {ws.home} has no documents; run `ragkiln ingest PATH` first")
        meter = IngestProgress(STAGES, enabled=progress)
        meter.expect("load", ws.store.count_documents(), final=True)
        try:
            report = _apply(ws, _counting_docs(ws.store.iter_documents(), meter, files=False), lambda _d: False,
                            enricher, embedder, progress, force=embedder is not None, ray=ray, meter=meter,
                            sample=lambda base, cfg: _stored_sample(ws, base, cfg))
        finally:
            meter.close()
    report.seconds = time.perf_counter() - t0
    return report


def upsert_documents(settings: Settings, docs: Sequence[Document], delete_ids: Sequence[str] = (),
                     enricher: Enricher | None = None) -> IngestReport:
    """Add or replace documents given directly (API uploads) and delete others, in one generation.
    The stored documents not named stay as they are (they are outside this call's scope)."""
    t0 = time.perf_counter()
    ws = Workspace.open(settings)
    with ws.writer():
        indexed = ws.store.active_documents()
        missing = [i for i in delete_ids if i not in indexed]
        if missing:
            raise NotFound(f"no document with id {missing[0]!r}")
        delete = set(delete_ids) - {d.doc_id for d in docs}
        report = _apply(ws, docs, lambda d: d in delete, enricher, None, progress=False)
    report.seconds = time.perf_counter() - t0
    return report


def _resolve_embedder(ws: Workspace, override: str | None) -> Embedder:
    """The torch model to index with: the override, else the active index's (its base when an int8 export made
    it), else the configured one. `indexer.embed_backend` then decides what computes the vectors."""
    threads = ws.settings.indexer.threads
    if override is not None:
        emb = load_embedder(override, threads)
    elif (section := ws.active_embedder()) is not None:
        emb = load_embedder(section.get("base", {}).get("path") or section["path"], threads)
    else:
        emb = load_embedder(ws.settings.indexer.embedder, threads)
    if emb.backend != "torch":  # an export directory given as the model: its torch base
        emb = load_embedder(emb.base_path, threads)
    return emb


def sample_texts(docs: Sequence[Document], embedder: Embedder, cfg: IndexerConfig) -> list[str]:
    """Chunk texts as they are embedded (title + chunk), from documents in a fixed random order spread over the
    corpus: the first `embed_sample_chunks` check an int8 export's parity and speed, the next ones calibrate
    OpenVINO. Chunking a few hundred documents costs only their tokenization."""
    by_id = {d.doc_id: d for d in docs}
    return _sample_texts(sorted(by_id), by_id.__getitem__, embedder, cfg)


def _sample_texts(ids: Sequence[str], fetch: Callable[[str], Document | None], embedder: Embedder,
                  cfg: IndexerConfig) -> list[str]:
    """`sample_texts` over sorted document ids, each document fetched when the order reaches it."""
    order = np.random.default_rng(0).permutation(len(ids))
    return _chunk_sample((fetch(ids[int(i)]) for i in order), embedder, cfg)


def _chunk_sample(docs: Iterable[Document | None], embedder: Embedder, cfg: IndexerConfig) -> list[str]:
    """The first `embed_sample_chunks + embed_calibration_chunks` chunk texts of `docs` (drawn lazily)."""
    want = cfg.embed_sample_chunks + cfg.embed_calibration_chunks
    out: list[str] = []
    for d in docs:
        if d is None:
            continue
        out.extend(index_text(d.title, d.text[sp.start:sp.end])
                   for sp in chunk_document(d, embedder, cfg.chunk_tokens, cfg.chunk_overlap))
        if len(out) >= want:
            break
    return out[:want]


def _stored_sample(ws: Workspace, embedder: Embedder, cfg: IndexerConfig) -> list[str]:
    """`sample_texts` over the workspace's active documents (read only when an export is to be made)."""
    stored = ws.store.active_documents()
    return _sample_texts(sorted(stored), lambda i: ws.store.get_document_version(i, stored[i][0]), embedder, cfg)


def _file_sample(roots: Sequence[Path], max_bytes: int) -> Callable[[Embedder, IndexerConfig], list[str]]:
    """`sample_texts` drawn from the files an ingest will scan, before it scans them: files in a fixed random
    order, and the documents of a many-document file (a BEIR corpus.jsonl) in one too. Reading a few files twice
    lets the int8 export be made first, so the stream (or Ray's workers) embeds with it from the first batch."""
    def sample(embedder: Embedder, cfg: IndexerConfig) -> list[str]:
        files = [(f, root) for root in roots for f in iter_files(root)]
        rng = np.random.default_rng(0)

        def docs() -> Iterator[Document]:
            for i in rng.permutation(len(files)):
                f, root = files[int(i)]
                found = load_file(f, doc_id_for(f, root), max_bytes).documents
                yield from (found[int(j)] for j in rng.permutation(len(found)))

        return _chunk_sample(docs(), embedder, cfg)

    return sample


def _ready_embedder(ws: Workspace, base: Embedder, cfg: IndexerConfig) -> tuple[Embedder | None, dict[str, Any] | None]:
    """The embedder `choose_embedder` picks, when it can pick without this corpus's chunks: torch, or int8
    exports already made. (None, None) when an export is still to be made from the corpus (its parity sample
    and calibration chunks): `_apply` then makes it from its caller's sample, or after the stream."""
    setting = cfg.embed_backend
    wanted = [] if setting == "torch" else [setting] if setting != "auto" else auto_backends()
    if all(cached_manifest(ws.models, base, b) is not None for b in wanted):
        return choose_embedder(ws.models, base, cfg, lambda: [])
    return None, None


def _bm25_config(cfg: IndexerConfig) -> dict[str, Any]:
    """BM25 settings recorded in the manifest; changing any of them rebuilds the index on the next ingest."""
    return {"bm25_k1": cfg.bm25_k1, "bm25_b": cfg.bm25_b, "bm25_context_chunks": cfg.bm25_context_chunks,
            "stemmer_language": cfg.stemmer_language}


def _sentence_rule(cfg: IndexerConfig) -> str | None:
    """Which sentences have vectors (recorded in the manifest; a change rebuilds), None without sentence vectors."""
    return SENTENCE_RULE if cfg.sentence_share > 0 else None


def _same_setup(old: Any, embedder: Embedder | None, chunker: str, cfg: IndexerConfig) -> bool:
    """Whether the previous generation was built the way this one will be (then FAISS is updated in place)."""
    return (old is not None and embedder is not None and old.embedder["id"] == embedder.id
            and old.manifest["config"]["faiss_factory"] == cfg.faiss_factory
            and old.manifest["chunker"] == chunker and old.manifest["config"].get("sentences") == _sentence_rule(cfg)
            and all(old.manifest["config"].get(k) == v for k, v in _bm25_config(cfg).items()))


class _Run:
    """One `_apply`: what the scan saw, as it streams, and the sweeps over documents it did not rework."""

    def __init__(self, ws: Workspace, indexed: dict[str, tuple[str, str]], chunker: str,
                 removable: Callable[[str], bool], meter: IngestProgress, skipped: list[Skipped] | None) -> None:
        self.ws, self.store, self.indexed, self.chunker = ws, ws.store, indexed, chunker
        self.removable, self.meter, self.skipped = removable, meter, skipped
        self.scanned: dict[str, str] = {}  # doc_id -> sha256 of every document the scan gave
        self.kept: dict[str, str] = {}  # indexed documents outside the scan's scope, kept as they are
        self.plan: ReindexPlan | None = None

    def to_rework(self, source: Iterable[Document]) -> Iterator[Document]:
        """The documents to (re)chunk: new versions, then kept ones chunked under another chunker. Every
        scanned id and hash is remembered (a few dozen bytes a document); texts are not."""
        coded: list[Document] = []  # unchanged documents whose code blocks are written again (`put_code_blocks`)
        for d in source:
            self.scanned[d.doc_id] = d.sha256
            if self.indexed.get(d.doc_id) != (d.sha256, self.chunker):
                self._expect(1)
                yield d
            elif d.code:
                coded.append(d)
                if len(coded) >= SWEEP_DOCS:
                    self.store.put_code_blocks(coded)
                    coded = []
        self.store.put_code_blocks(coded)
        if self.skipped and not self.scanned:  # ingesting nothing would also drop what these paths held before
            raise NothingIngested(nothing_ingested_message(self.skipped))
        self.kept = {i: sha for i, (sha, _) in self.indexed.items() if i not in self.scanned and not self.removable(i)}
        rechunk = sorted(i for i in self.kept if self.indexed[i][1] != self.chunker)
        self._expect(len(rechunk))
        self.plan = plan_reindex(self.indexed, {**self.scanned, **self.kept}, self.chunker, self.removable)
        self.meter.finish_totals()
        for i in rechunk:
            d = self.store.get_document_version(i, self.kept[i])
            if d is not None:
                yield d

    def _expect(self, docs: int) -> None:
        """Every document chunked also passes the NER and embed stages (the stream's batches go through all three)."""
        for stage in ("chunk", "ner", "embed"):
            self.meter.expect(stage, docs)

    @property
    def corpus(self) -> dict[str, tuple[str, str]]:
        """The new active corpus: doc_id -> (sha256, chunker)."""
        return {i: (sha, self.chunker) for i, sha in sorted({**self.scanned, **self.kept}.items())}

    def unchanged(self) -> list[str]:
        """Documents of the new corpus the stages did not see: their chunks are stored already."""
        return sorted(i for i, sha in {**self.scanned, **self.kept}.items() if self.indexed.get(i) == (sha, self.chunker))

    def sweep(self, doc_ids: Sequence[str], ner: bool, embed: bool) -> Iterator[ChunkBatch]:
        """The stored chunks of these documents in batches, for the NER and/or embed stages to complete."""
        if not (ner or embed) or not doc_ids:
            return
        self.meter.expect("ner", len(doc_ids))  # both stages see every batch, whichever they complete
        self.meter.expect("embed", len(doc_ids))
        corpus = {**self.scanned, **self.kept}
        for s in range(0, len(doc_ids), SWEEP_DOCS):
            page = doc_ids[s:s + SWEEP_DOCS]
            ids = [c for i in page for c in self.store.chunk_ids_for(i, corpus[i], self.chunker)]
            yield ChunkBatch(ordered_chunks(self.store, ids), len(page), ner=ner, embed=embed)


def _apply(ws: Workspace, source: Iterable[Document], removable: Callable[[str], bool],
           enricher: Enricher | None, embedder_override: str | None, progress: bool,
           force: bool = False, ray: RayOptions | None = None, skipped: list[Skipped] | None = None,
           meter: IngestProgress | None = None,
           sample: Callable[[Embedder, IndexerConfig], list[str]] | None = None) -> IngestReport:
    """`sample` gives chunk texts to make a missing int8 export from before the stream starts; without one (or
    when it finds none) the export is made after the stream, from the stored corpus, and the vectors then."""
    cfg = ws.settings.indexer
    store = ws.store
    # No row clean-up before the work: chunks, entities and embeddings of a killed run are reused by
    # key (same document version and chunker) below, and the clean-up after this run's commit drops
    # whatever neither it nor the previous generation uses.
    ws.remove_stale_generations()
    base = _resolve_embedder(ws, embedder_override)
    chunker = chunker_id(base, cfg.chunk_tokens, cfg.chunk_overlap)
    indexed = store.active_documents()
    old_path = ws.active_index_path()
    old = load_generation(old_path) if old_path is not None else None
    # What computes the vectors: torch, or an int8 export (made once on this corpus's chunks, then cached).
    # Its id keys the vector cache, so a switch of backend re-embeds instead of mixing vectors.
    embedder, selection = _ready_embedder(ws, base, cfg)
    if embedder is None and sample is not None and (texts := sample(base, cfg)):
        log.info("exporting %s to int8 (%s), once, on %d chunks of the corpus", base.id, cfg.embed_backend, len(texts))
        embedder, selection = choose_embedder(ws.models, base, cfg, lambda: texts)
    meter = meter if meter is not None else IngestProgress(STAGES, enabled=progress)
    run = _Run(ws, indexed, chunker, removable, meter, skipped)
    local = LocalStages(store, base, chunker, cfg.chunk_tokens, cfg.chunk_overlap, enricher, embedder,
                        cfg.embed_batch_size, meter, sentences=_sentence_rule(cfg) is not None)

    def sweeps() -> Iterator[ChunkBatch]:  # runs once the scan is over: the plan is known then
        assert run.plan is not None
        if run.plan.is_noop and _same_setup(old, embedder, chunker, cfg) and not force:
            return
        # Unchanged documents: entities for chunks never enriched; vectors unless the old index holds them.
        yield from run.sweep(run.unchanged(), ner=enricher is not None,
                             embed=embedder is not None and not _same_setup(old, embedder, chunker, cfg))

    try:
        # 1. Stream: new document versions stored, chunked, enriched and embedded as they are scanned.
        batches = batched(run.to_rework(source))
        if ray is None:
            run_stages(itertools.chain(batches, sweeps()), local.stages(), store=store)
        else:
            from indexer.ray_ingest import process_on_ray

            process_on_ray(ray, batches, local, embedder, enricher, cfg)
            run_stages(sweeps(), local.stages()[1:], store=store)
        assert run.plan is not None
        plan = run.plan
        report = IngestReport(added=len(plan.added), changed=len(plan.changed), removed=len(plan.removed),
                              unchanged=len(plan.unchanged))
        if embedder is None:  # an int8 export to make first, from this corpus's chunks (now stored)
            corpus = run.corpus
            corpus_ids = sorted(corpus)
            embedder, selection = choose_embedder(ws.models, base, cfg, lambda: _sample_texts(
                corpus_ids, lambda i: store.get_document_version(i, corpus[i][0]), base, cfg))
            local.embedder = embedder
            if not (plan.is_noop and _same_setup(old, embedder, chunker, cfg) and not force):
                run_stages(run.sweep(corpus_ids, ner=False, embed=True), local.stages()[2:], store=store)
    finally:
        meter.close()
    same_setup = _same_setup(old, embedder, chunker, cfg)
    if plan.is_noop and same_setup and not force:
        report.chunks_total = int(old.dense.ntotal)  # type: ignore[union-attr]
        report.documents_total = len(indexed)
        report.index_dir = str(old_path)
        log.info("nothing changed: %d documents unchanged", len(plan.unchanged))
        return report

    # 2. The new generation, read back from the store a page at a time: FAISS updated in place when
    # possible, else rebuilt; BM25 rebuilt.
    new_active = run.corpus
    ids = corpus_chunk_ids(store, new_active)
    embedded = local.counts["embedded"]
    sentences = None
    counts: dict[str, int] = {}
    if same_setup and dense.supports_removal(cfg.faiss_factory):
        old_ids = chunk_ids_of(old.dense)  # type: ignore[union-attr]
        remove = np.setdiff1d(old_ids, ids)
        add = np.setdiff1d(ids, old_ids)
        pages = VectorPages(store, embedder, add, cfg.embed_batch_size)
        index = dense.update_index_paged(old.dense, remove, pages())  # type: ignore[union-attr]
        if old.sentences is not None:  # type: ignore[union-attr]
            spages = SentencePages(store, embedder, add, cfg.embed_batch_size)
            sentences = dense.update_index_paged(old.sentences, remove, spages())  # type: ignore[union-attr]
            most = max(spages.most, old.manifest["counts"]["max_sentences"])  # type: ignore[union-attr]
            counts = {"sentences": int(sentences.ntotal), "max_sentences": most}
    else:  # the vectors a page at a time: the build holds the index and one page, not a copy of every vector
        pages = VectorPages(store, embedder, ids, cfg.embed_batch_size)
        index = dense.build_index_paged(embedder.dim, cfg.faiss_factory, len(ids), pages)
        if _sentence_rule(cfg) is not None:
            spages = SentencePages(store, embedder, ids, cfg.embed_batch_size)
            n_sent = spages.total()
            try:
                sentences = dense.build_index_paged(embedder.dim, cfg.faiss_factory, n_sent, spages)
            except InvalidInput:  # fewer sentences than the factory trains on (chunks of one sentence have none)
                sentences = dense.build_index_paged(embedder.dim, "Flat", n_sent, spages)
            counts = {"sentences": n_sent, "max_sentences": spages.most}
    report.chunks_embedded = embedded + pages.embedded
    bm25 = BM25Index.build(iter_bm25_texts(store, ids, new_active, cfg.bm25_context_chunks),  # type: ignore[arg-type]
                           ids, cfg.bm25_k1, cfg.bm25_b, cfg.stemmer_language)
    name = new_name()
    corpus_hash = sha256_text("\n".join(f"{k}:{v[0]}" for k, v in sorted(new_active.items())))
    write_generation(
        ws.indexes / name,
        {
            "embedder": {**describe(embedder), "selection": selection},
            "chunker": chunker,
            "config": {
                "faiss_factory": cfg.faiss_factory, "chunk_tokens": cfg.chunk_tokens,
                "chunk_overlap": cfg.chunk_overlap, **_bm25_config(cfg), "sentences": _sentence_rule(cfg),
            },
            "counts": {"documents": len(new_active), "chunks": int(len(ids)), **counts},
            "corpus_sha256": corpus_hash,
        },
        index, bm25, sentences,
    )
    # 3. The commit point: one SQLite transaction switches the corpus and the index together.
    store.commit_generation(new_active, name)
    store.collect_garbage()
    ws.remove_stale_generations()
    report.chunks_total = int(len(ids))
    report.documents_total = len(new_active)
    report.index_dir = str(ws.indexes / name)
    return report


def _counting_docs(docs: Iterable[Document], meter: IngestProgress, files: bool = True) -> Iterator[Document]:
    """The documents, counted by the load stage (as its items when the scan counts files, else as its unit)."""
    for d in docs:
        meter.update("load", 0 if files else 1, 1)
        yield d


def search(settings: Settings, query: str, k: int = 10, mode: str = "hybrid",
           allowed_ids: set[int] | None = None, embedder: str | None = None,
           with_entities: bool = False) -> list:
    if mode not in MODES:
        raise InvalidInput(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    ws = Workspace.open(settings)
    return ws.searcher(embedder).search(query, k=k, mode=mode, allowed_ids=allowed_ids,  # type: ignore[arg-type]
                                        with_entities=with_entities)


__all__ = ["ingest", "reindex", "search", "upsert_documents", "chunk_document", "chunker_id", "scan", "ReindexPlan",
           "Chunk", "CHUNKER_VERSION"]
