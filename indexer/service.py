"""The indexer's core operations, shared by the CLI and the HTTP server: ingest, reindex, search."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any
from pathlib import Path

import numpy as np
from tqdm import tqdm

from common.errors import InvalidInput, NotFound, NothingIngested
from common.hashing import sha256_text
from common.settings import IndexerConfig, Settings
from indexer import dense
from indexer.backends import choose_embedder, describe
from indexer.bm25 import BM25Index
from indexer.chunking import bm25_texts, chunk_spans, index_text, sentence_spans
from indexer.embedder import Embedder, load_embedder
from indexer.generation import chunk_ids_of, load_generation, new_name, write_generation
from indexer.loaders import doc_id_for, iter_files, load_file
from indexer.reindex import ReindexPlan, plan_reindex
from indexer.search import MODES
from indexer.types import Chunk, ChunkSpan, Document, Entity, IngestReport, Skipped
from indexer.workspace import Workspace

log = logging.getLogger(__name__)

CHUNKER_VERSION = 1
Enricher = Callable[[Sequence[str]], list[list[Entity]]]


def chunker_id(embedder: Embedder, chunk_tokens: int, overlap: int) -> str:
    """Chunks depend on the tokenizer's vocabulary and the sizes; a change of either re-chunks every document.

    Hashing the vocabulary (not the tokenizer files) keeps a fine-tuned copy of the same tokenizer, saved
    by another library version, on the same chunks."""
    vocab = embedder.tokenizer.get_vocab()
    tok_hash = sha256_text("\n".join(f"{t}\t{i}" for t, i in sorted(vocab.items(), key=lambda kv: kv[1])))[:12]
    return sha256_text(f"{tok_hash}:{chunk_tokens}:{overlap}:v{CHUNKER_VERSION}")[:10]


def chunk_document(doc: Document, embedder: Embedder, chunk_tokens: int,
                   overlap: int) -> list[ChunkSpan]:
    """Sentence-aware chunks of one document, measured in the embedder's tokens."""
    sents = sentence_spans(doc.text)
    if not sents:
        return []
    max_tokens = min(chunk_tokens, embedder.max_tokens - 2)  # room for [CLS] and [SEP]
    starts: list[int] = []
    ends: list[int] = []
    # Tokenise sentence by sentence: bounded memory on large files, offsets shifted back into the doc.
    for i in range(0, len(sents), 512):
        block = sents[i:i + 512]
        for (s, _e), (ts, te) in zip(block, embedder.token_spans([doc.text[s:e] for s, e in block])):
            starts.extend(s + x for x in ts)
            ends.extend(s + x for x in te)
    return chunk_spans(sents, starts, ends, max_tokens, min(overlap, max_tokens - 1))


def scan(paths: Iterable[Path], max_bytes: int) -> tuple[list[Document], list[Skipped], list[Path]]:
    """Load every supported file under the paths; returns documents, skips and the resolved roots."""
    docs: list[Document] = []
    skipped: list[Skipped] = []
    roots: list[Path] = []
    seen: dict[str, str] = {}
    for raw in paths:
        root = Path(raw).expanduser()
        if not root.exists():
            raise NotFound(f"path {raw} does not exist")
        root = root.resolve()
        roots.append(root)
        for f in iter_files(root):
            res = load_file(f, doc_id_for(f, root), max_bytes)
            skipped.extend(res.skipped)
            for d in res.documents:
                if d.doc_id in seen:
                    skipped.append(Skipped(d.source, f"duplicate document id {d.doc_id!r} (first from {seen[d.doc_id]})"))
                    continue
                seen[d.doc_id] = d.source
                docs.append(d)
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
           progress: bool = True) -> IngestReport:
    """Bring the workspace index in line with the files under `paths` (incremental and atomic)."""
    if not paths:
        raise InvalidInput("give at least one file or folder to ingest")
    t0 = time.perf_counter()
    ws = Workspace.open(settings)
    with ws.writer():
        docs, skipped, roots = scan(paths, int(settings.indexer.max_file_mb * 2**20))
        if skipped and not docs:  # ingesting nothing would also drop what these paths held before
            raise NothingIngested(nothing_ingested_message(skipped))
        sources = ws.store.active_sources()
        report = _apply(ws, docs, lambda d: _in_roots(sources.get(d, ""), roots), enricher, None, progress)
    report.skipped = skipped + report.skipped
    report.seconds = time.perf_counter() - t0
    return report


def reindex(settings: Settings, embedder: str | None = None, enricher: Enricher | None = None,
            progress: bool = True) -> IngestReport:
    """Rebuild the index from the stored documents, optionally with another embedder, then switch."""
    t0 = time.perf_counter()
    ws = Workspace.open(settings)
    with ws.writer():
        docs = list(ws.store.iter_documents())
        if not docs and ws.active_index_name() is None:
            raise NotFound(f"workspace {ws.home} has no documents; run `ragkiln ingest PATH` first")
        report = _apply(ws, docs, lambda _d: False, enricher, embedder, progress, force=embedder is not None)
    report.seconds = time.perf_counter() - t0
    return report


def upsert_documents(settings: Settings, docs: Sequence[Document], delete_ids: Sequence[str] = (),
                     enricher: Enricher | None = None) -> IngestReport:
    """Add or replace documents given directly (API uploads) and delete others, in one generation."""
    ws = Workspace.open(settings)
    with ws.writer():
        keep = {d.doc_id for d in docs}
        stored = {d.doc_id: d for d in ws.store.iter_documents()}
        missing = [i for i in delete_ids if i not in stored]
        if missing:
            raise NotFound(f"no document with id {missing[0]!r}")
        merged = [d for i, d in stored.items() if i not in keep and i not in set(delete_ids)] + list(docs)
        return _apply(ws, merged, lambda d: d in set(delete_ids), enricher, None, progress=False)


def _resolve_embedder(ws: Workspace, override: str | None) -> Embedder:
    """The torch model to index with: the override, else the active index's (its base when an int8 export made
    it), else the configured one. `indexer.embed_backend` then decides what computes the vectors."""
    threads = ws.settings.indexer.threads
    if override is not None:
        emb = load_embedder(override, threads)
    elif (active := ws.active_index_path()) is not None:
        section = load_generation(active).manifest["embedder"]
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
    want = cfg.embed_sample_chunks + cfg.embed_calibration_chunks
    ordered = sorted(docs, key=lambda d: d.doc_id)
    out: list[str] = []
    for i in np.random.default_rng(0).permutation(len(ordered)):
        d = ordered[int(i)]
        out.extend(index_text(d.title, d.text[sp.start:sp.end])
                   for sp in chunk_document(d, embedder, cfg.chunk_tokens, cfg.chunk_overlap))
        if len(out) >= want:
            break
    return out[:want]


def _bm25_config(cfg: IndexerConfig) -> dict[str, Any]:
    """BM25 settings recorded in the manifest; changing any of them rebuilds the index on the next ingest."""
    return {"bm25_k1": cfg.bm25_k1, "bm25_b": cfg.bm25_b, "bm25_context_chunks": cfg.bm25_context_chunks,
            "stemmer_language": cfg.stemmer_language}


def _apply(ws: Workspace, docs: Sequence[Document], removable: Callable[[str], bool],
           enricher: Enricher | None, embedder_override: str | None, progress: bool,
           force: bool = False) -> IngestReport:
    cfg = ws.settings.indexer
    store = ws.store
    # No row clean-up before the work: chunks, entities and embeddings of a killed run are reused by
    # key (same document version and chunker) below, and the clean-up after this run's commit drops
    # whatever neither it nor the previous generation uses.
    ws.remove_stale_generations()
    base = _resolve_embedder(ws, embedder_override)
    chunker = chunker_id(base, cfg.chunk_tokens, cfg.chunk_overlap)
    indexed = store.active_documents()
    # Documents outside this scan's scope stay as they are (ingesting folder B keeps folder A).
    scanned_ids = {d.doc_id for d in docs}
    kept = [store.get_document_version(i, sha) for i, (sha, _) in indexed.items()
            if i not in scanned_ids and not removable(i)]
    docs = list(docs) + [d for d in kept if d is not None]
    # What computes the vectors: torch, or an int8 export (made once on this corpus's chunks, then cached).
    # Its id keys the vector cache, so a switch of backend re-embeds instead of mixing vectors.
    embedder, selection = choose_embedder(ws.models, base, cfg, lambda: sample_texts(docs, base, cfg))
    plan = plan_reindex(indexed, {d.doc_id: d.sha256 for d in docs}, chunker, removable)
    report = IngestReport(added=len(plan.added), changed=len(plan.changed), removed=len(plan.removed),
                          unchanged=len(plan.unchanged))
    old_path = ws.active_index_path()
    old = load_generation(old_path) if old_path is not None else None
    same_setup = (old is not None and old.embedder["id"] == embedder.id
                  and old.manifest["config"]["faiss_factory"] == cfg.faiss_factory
                  and old.manifest["chunker"] == chunker
                  and all(old.manifest["config"].get(k) == v for k, v in _bm25_config(cfg).items()))
    if plan.is_noop and same_setup and not force:
        report.chunks_total = int(old.dense.ntotal)  # type: ignore[union-attr]
        report.documents_total = len(indexed)
        report.index_dir = str(old_path)
        log.info("nothing changed: %d documents unchanged", len(plan.unchanged))
        return report

    # 1. Store new document versions and their chunks (not active yet: the old index still rules).
    by_id = {d.doc_id: d for d in docs}
    todo = [by_id[i] for i in plan.added + plan.changed]
    store.put_documents(todo)
    for d in tqdm(todo, desc="chunk", disable=not progress or not todo, unit="doc"):
        store.put_chunks(d, chunker, chunk_document(d, base, cfg.chunk_tokens, cfg.chunk_overlap))
    new_active = {i: (by_id[i].sha256, chunker) for i in plan.added + plan.changed + plan.unchanged}
    # Unchanged docs chunked under another chunker (settings changed) need new chunks too.
    for i in plan.unchanged:
        if not store.chunk_ids_for(i, by_id[i].sha256, chunker):
            store.put_documents([by_id[i]])
            store.put_chunks(by_id[i], chunker, chunk_document(by_id[i], base, cfg.chunk_tokens, cfg.chunk_overlap))
    chunk_ids: list[int] = []
    for i, (sha, ch) in sorted(new_active.items()):
        chunk_ids.extend(store.chunk_ids_for(i, sha, ch))
    ids = np.array(sorted(chunk_ids), dtype=np.int64)
    chunks = store.get_chunks(ids.tolist())

    # 2. Entities for chunks never enriched (only new or changed documents).
    if enricher is not None:
        pending = store.unenriched_chunks(ids.tolist())
        for i in tqdm(range(0, len(pending), 256), desc="ner", disable=not progress or not pending, unit="batch"):
            part = pending[i:i + 256]
            ents = enricher([c.text for c in part])
            store.put_entities(
                (c.id, [Entity(e.text, e.label, e.norm, e.start, e.end, c.start + e.start, c.start + e.end)
                        for e in es]) for c, es in zip(part, ents))

    # 3. Embeddings: reuse the cache, embed only what is missing.
    cached = store.get_embeddings(ids.tolist(), embedder.id, embedder.dim)
    missing = [int(i) for i in ids if int(i) not in cached]
    if missing:
        texts = [index_text(chunks[i].title, chunks[i].text) for i in missing]
        bs = cfg.embed_batch_size
        with tqdm(total=len(missing), desc="embed", disable=not progress, unit="chunk") as bar:
            for s in range(0, len(missing), bs * 8):
                part = missing[s:s + bs * 8]
                vecs = embedder.encode(texts[s:s + bs * 8], batch_size=bs)
                store.put_embeddings(part, embedder.id, vecs)
                cached.update(zip(part, vecs))
                bar.update(len(part))
    report.chunks_embedded = len(missing)

    # 4. The new generation: FAISS updated in place when possible, else rebuilt; BM25 rebuilt.
    vec_of = lambda sel: np.stack([cached[int(i)] for i in sel]) if len(sel) else np.zeros((0, embedder.dim), np.float32)  # noqa: E731
    if same_setup and dense.supports_removal(cfg.faiss_factory):
        old_ids = chunk_ids_of(old.dense)  # type: ignore[union-attr]
        remove = np.setdiff1d(old_ids, ids)
        add = np.setdiff1d(ids, old_ids)
        index = dense.update_index(old.dense, cfg.faiss_factory, remove, add, vec_of(add))  # type: ignore[union-attr]
    else:
        index = dense.build_index(embedder.dim, cfg.faiss_factory, ids, vec_of(ids))
    bm25_text = bm25_texts([chunks[int(i)] for i in ids], cfg.bm25_context_chunks)
    bm25 = BM25Index.build([bm25_text[int(i)] for i in ids], ids, cfg.bm25_k1, cfg.bm25_b, cfg.stemmer_language)
    name = new_name()
    corpus_hash = sha256_text("\n".join(f"{k}:{v[0]}" for k, v in sorted(new_active.items())))
    write_generation(
        ws.indexes / name,
        {
            "embedder": {**describe(embedder), "selection": selection},
            "chunker": chunker,
            "config": {
                "faiss_factory": cfg.faiss_factory, "chunk_tokens": cfg.chunk_tokens,
                "chunk_overlap": cfg.chunk_overlap, **_bm25_config(cfg),
            },
            "counts": {"documents": len(new_active), "chunks": int(len(ids))},
            "corpus_sha256": corpus_hash,
        },
        index, bm25,
    )
    # 5. The commit point: one SQLite transaction switches the corpus and the index together.
    store.commit_generation(new_active, name)
    store.collect_garbage()
    ws.remove_stale_generations()
    report.chunks_total = int(len(ids))
    report.documents_total = len(new_active)
    report.index_dir = str(ws.indexes / name)
    return report


def search(settings: Settings, query: str, k: int = 10, mode: str = "hybrid",
           allowed_ids: set[int] | None = None, embedder: str | None = None,
           with_entities: bool = False) -> list:
    if mode not in MODES:
        raise InvalidInput(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    ws = Workspace.open(settings)
    return ws.searcher(embedder).search(query, k=k, mode=mode, allowed_ids=allowed_ids,  # type: ignore[arg-type]
                                        with_entities=with_entities)


__all__ = ["ingest", "reindex", "search", "upsert_documents", "chunk_document", "scan", "ReindexPlan", "Chunk"]
