"""The streamed ingest: documents flow in bounded batches through load -> chunk -> NER -> embed.

Each stage runs on its own thread with a bounded queue in front of it, so while one batch is embedded (torch
releases the GIL) the next is enriched (spaCy, in its worker processes) and the one after that is tokenized
(the Rust tokenizer releases the GIL). Every stage writes what it made into the docstore (chunks, entities,
cached vectors) before passing the batch on and keeps nothing, so memory holds at most a few batches whatever
the corpus size. Nothing here is active until the single commit of `service._apply`: a killed run leaves rows
that the next run reuses by key.
"""

from __future__ import annotations

import copy
import logging
import queue
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from common.errors import NotFound
from common.hashing import sha256_text
from indexer.chunking import (bm25_texts, chunk_spans, index_text, sentence_cache_key, sentence_spans,
                               sentence_texts)
from indexer.docstore import DocStore
from indexer.embedder import Embedder
from indexer.loaders import doc_id_for, iter_files, load_file
from indexer.progress import IngestProgress
from indexer.types import Chunk, ChunkSpan, Document, Entity, Skipped

log = logging.getLogger(__name__)

Enricher = Callable[[Sequence[str]], list[list[Entity]]]

BATCH_DOCS = 256  # documents per batch at most
BATCH_CHARS = 1_000_000  # and at most this many characters (a 64 MB file still travels alone)
QUEUE_DEPTH = 2  # batches waiting in front of each stage
STAGES = (("load", "file", "doc"), ("chunk", "doc", "chunk"), ("ner", "doc", "chunk"), ("embed", "doc", "chunk"))


# 2: sentences go on across "e.g.", a name's initials and a cut before a lower-case word (chunking._goes_on)
CHUNKER_VERSION = 2


def chunker_id(embedder: Any, chunk_tokens: int, overlap: int) -> str:
    """Chunks depend on the tokenizer's vocabulary and the sizes; a change of either re-chunks every document.

    Hashing the vocabulary (not the tokenizer files) keeps a fine-tuned copy of the same tokenizer, saved
    by another library version, on the same chunks."""
    vocab = embedder.tokenizer.get_vocab()
    tok_hash = sha256_text("\n".join(f"{t}\t{i}" for t, i in sorted(vocab.items(), key=lambda kv: kv[1])))[:12]
    return sha256_text(f"{tok_hash}:{chunk_tokens}:{overlap}:v{CHUNKER_VERSION}")[:10]


def chunk_document(doc: Document, embedder: Any, chunk_tokens: int, overlap: int) -> list[ChunkSpan]:
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


def chunking_view(embedder: Any) -> Any:
    """The embedder with a tokenizer of its own for chunking: the chunk stage tokenizes while the embed
    stage encodes, and a fast tokenizer must not be shared by two threads (the embedder serialises both
    behind one lock otherwise). Embedders without that lock are returned as they are."""
    if not (hasattr(embedder, "_doc_lock") and hasattr(embedder, "tokenizer")):
        return embedder
    view = copy.copy(embedder)
    view.tokenizer = copy.deepcopy(embedder.tokenizer)
    view._doc_lock = threading.Lock()
    return view


def iter_scan(paths: Iterable[Path], max_bytes: int, skipped: list[Skipped], roots: list[Path],
              on_file: Callable[[], None] | None = None) -> Iterator[Document]:
    """Every supported document under the paths, one file in memory at a time; skips and the resolved
    roots are appended to the lists given. All paths are checked before the first document."""
    resolved: list[Path] = []
    for raw in paths:
        root = Path(raw).expanduser()
        if not root.exists():
            raise NotFound(f"path {raw} does not exist")
        resolved.append(root.resolve())
    roots.extend(resolved)
    return _iter_scan(resolved, max_bytes, skipped, on_file)


def _iter_scan(roots: list[Path], max_bytes: int, skipped: list[Skipped],
               on_file: Callable[[], None] | None) -> Iterator[Document]:
    seen: dict[str, str] = {}
    for root in roots:
        for f in iter_files(root):
            res = load_file(f, doc_id_for(f, root), max_bytes)
            skipped.extend(res.skipped)
            if res.documents and res.encoding not in ("", "utf-8", "utf-8-sig"):
                log.info("%s: read as %s", f, res.encoding)  # a guess the user may want to check
            if on_file is not None:
                on_file()
            for d in res.documents:
                if d.doc_id in seen:
                    skipped.append(Skipped(d.source, f"duplicate document id {d.doc_id!r} (first from {seen[d.doc_id]})"))
                    continue
                seen[d.doc_id] = d.source
                yield d


def count_files(paths: Iterable[Path]) -> int:
    """Files the scan will open (a directory walk, no reads): the load stage's total."""
    return sum(1 for raw in paths for _ in iter_files(Path(raw).expanduser().resolve()))


def batched(docs: Iterable[Document], max_docs: int = BATCH_DOCS, max_chars: int = BATCH_CHARS
            ) -> Iterator[list[Document]]:
    """Consecutive documents in batches of at most `max_docs` and about `max_chars` characters."""
    batch: list[Document] = []
    chars = 0
    for d in docs:
        batch.append(d)
        chars += len(d.text)
        if len(batch) >= max_docs or chars >= max_chars:
            yield batch
            batch, chars = [], 0
    if batch:
        yield batch


@dataclass
class ChunkBatch:
    """Stored chunks on their way through NER and embedding; `ner`/`embed` say which of the two they need
    (a sweep over unchanged documents may need only one)."""

    chunks: list[Chunk]
    n_docs: int
    ner: bool = True
    embed: bool = True


def store_entities(store: DocStore, chunks: Sequence[Chunk], ents: Sequence[Sequence[Entity]]) -> None:
    """Entities found in chunk texts, with their offsets shifted into the document, stored per chunk."""
    store.put_entities(
        (c.id, [Entity(e.text, e.label, e.norm, e.start, e.end, c.start + e.start, c.start + e.end) for e in es])
        for c, es in zip(chunks, ents))


def ordered_chunks(store: DocStore, ids: Sequence[int]) -> list[Chunk]:
    found = store.get_chunks(ids)
    return [found[i] for i in ids if i in found]


class LocalStages:
    """Chunk, NER and embed stage functions over one docstore, run in this process.

    `embedder` may be None: the vectors are then computed later by a sweep (an int8 export first needs the
    corpus's chunks to be made). `counts["embedded"]` is the number of chunks this run embedded."""

    def __init__(self, store: DocStore, base: Embedder, chunker: str, chunk_tokens: int, chunk_overlap: int,
                 enricher: Enricher | None, embedder: Embedder | None, embed_batch_size: int,
                 progress: IngestProgress, sentences: bool = False) -> None:
        self.store = store
        self.base = base
        self.tok = chunking_view(base)
        self.chunker = chunker
        self.chunk_tokens, self.chunk_overlap = chunk_tokens, chunk_overlap
        self.enricher = enricher
        self.embedder = embedder
        self.embed_batch_size = embed_batch_size
        self.sentences = sentences  # sentence vectors beside the chunks' (`indexer.sentence_share` > 0)
        self.progress = progress
        self.counts = {"embedded": 0, "enriched": 0, "chunked_docs": 0}
        self._lock = threading.Lock()

    def add_counts(self, **counts: int) -> None:
        with self._lock:
            for k, v in counts.items():
                self.counts[k] += v

    def stages(self) -> list[tuple[str, Callable[[Any], Any]]]:
        return [("chunk", self.chunk), ("ner", self.ner), ("embed", self.embed)]

    def chunk(self, item: list[Document] | ChunkBatch) -> ChunkBatch:
        """New document versions stored, then chunked (a killed run's chunks are reused as they are)."""
        if isinstance(item, ChunkBatch):  # a sweep over stored chunks: nothing to cut
            return item
        self.store.put_documents(item)
        ids: list[int] = []
        for d in item:
            got = self.store.chunk_ids_for(d.doc_id, d.sha256, self.chunker)
            if not got:
                spans = chunk_document(d, self.tok, self.chunk_tokens, self.chunk_overlap)
                got = self.store.put_chunks(d, self.chunker, spans)
            ids.extend(got)
        self.progress.update("chunk", len(item), len(ids))
        self.add_counts(chunked_docs=len(item))
        return ChunkBatch(ordered_chunks(self.store, ids), len(item))

    def ner(self, batch: ChunkBatch) -> ChunkBatch:
        """Entities for the batch's chunks never enriched (a resumed run skips those it did)."""
        n = 0
        if self.enricher is not None and batch.ner and batch.chunks:
            todo = self.store.unenriched_ids([c.id for c in batch.chunks])
            pending = [c for c in batch.chunks if c.id in todo]  # the batch holds their texts already
            if pending:
                store_entities(self.store, pending, self.enricher([c.text for c in pending]))
                n = len(pending)
        self.add_counts(enriched=n)
        self.progress.update("ner", batch.n_docs, n)
        return batch

    def embed(self, batch: ChunkBatch) -> None:
        """Vectors for the chunks the cache lacks, written to the cache as soon as they are made."""
        n = 0
        if self.embedder is not None and batch.embed and batch.chunks:
            n = embed_missing(self.store, self.embedder, batch.chunks, self.embed_batch_size, self.sentences)
        self.add_counts(embedded=n)
        self.progress.update("embed", batch.n_docs, n)


def embed_missing(store: DocStore, embedder: Embedder, chunks: Sequence[Chunk], batch_size: int,
                  sentences: bool = False) -> int:
    """Embed and cache the chunks without a cached vector for this embedder (and, with `sentences`, the sentences
    of those without cached sentence vectors); returns how many chunk vectors were made."""
    cached = store.get_embeddings([c.id for c in chunks], embedder.id, embedder.dim)
    missing = [c for c in chunks if c.id not in cached]
    del cached
    if missing:
        vecs = embedder.encode([index_text(c.title, c.text) for c in missing], batch_size=batch_size)
        store.put_embeddings([c.id for c in missing], embedder.id, vecs)
    if sentences:
        key = sentence_cache_key(embedder.id)
        have = store.get_sentence_vectors([c.id for c in chunks], key, embedder.dim)
        todo = [c for c in chunks if c.id not in have]
        del have
        if todo:
            per = [sentence_texts(c.title, c.text) for c in todo]
            store.put_sentence_vectors([c.id for c in todo], key, embed_sentences(embedder, per, batch_size))
    return len(missing)


def embed_sentences(embedder: Embedder, per_chunk: Sequence[Sequence[str]], batch_size: int) -> list[np.ndarray]:
    """Each chunk's (n, dim) sentence vectors; a sentence shared by overlapping chunks is embedded once."""
    unique = list(dict.fromkeys(t for texts in per_chunk for t in texts))
    vecs = (np.asarray(embedder.encode(unique, batch_size=batch_size), np.float32) if unique
            else np.zeros((0, embedder.dim), np.float32))
    row = {t: i for i, t in enumerate(unique)}
    return [vecs[[row[t] for t in texts]] if texts else np.zeros((0, embedder.dim), np.float32)
            for texts in per_chunk]


_END = object()


def run_stages(source: Iterable[Any], stages: Sequence[tuple[str, Callable[[Any], Any]]],
               depth: int = QUEUE_DEPTH, store: DocStore | None = None) -> None:
    """Feed `source` (consumed on this thread) through the stages, each on its own thread behind a queue of
    `depth` items. A stage returning None ends that item's way. The first error of any stage (or of the
    source) stops the others and is raised here; so is a KeyboardInterrupt of this thread."""
    queues: list[queue.Queue[Any]] = [queue.Queue(maxsize=depth) for _ in stages]
    abort = threading.Event()
    errors: list[BaseException] = []

    def put(q: queue.Queue[Any], item: Any) -> bool:
        while not abort.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def work(i: int, fn: Callable[[Any], Any]) -> None:
        out_q = queues[i + 1] if i + 1 < len(queues) else None
        try:
            while not abort.is_set():
                try:
                    item = queues[i].get(timeout=0.1)
                except queue.Empty:
                    continue
                if item is _END:
                    break
                out = fn(item)
                if out is not None and out_q is not None:
                    put(out_q, out)
        except BaseException as e:  # noqa: BLE001 - handed to the caller's thread below
            errors.append(e)
            abort.set()
        finally:
            if out_q is not None:
                put(out_q, _END)
            if store is not None:
                store.close()  # this thread's connection

    threads = [threading.Thread(target=work, args=(i, fn), name=f"ingest-{name}", daemon=True)
               for i, (name, fn) in enumerate(stages)]
    for t in threads:
        t.start()
    try:
        for item in source:
            if not put(queues[0], item):
                break
        put(queues[0], _END)
        for t in threads:
            while t.is_alive():
                t.join(timeout=0.2)
    except BaseException:
        abort.set()
        for t in threads:
            t.join(timeout=30)
        raise
    if errors:
        raise errors[0]


# ---- reads for the index build: pages of chunks, never the whole corpus as Python objects --------------------
PAGE = 2048


def corpus_chunk_ids(store: DocStore, corpus: dict[str, tuple[str, str]]) -> np.ndarray:
    """Sorted chunk ids of a corpus (doc_id -> (sha256, chunker))."""
    ids = np.fromiter((c for i, (sha, ch) in corpus.items() for c in store.chunk_ids_for(i, sha, ch)), dtype=np.int64)
    ids.sort()
    return ids


class VectorPages:
    """The cached vectors of `ids`, a page at a time as (ids, (n, dim) float32) for `dense.build_index_paged`;
    each call starts over (a trained index reads them twice). A vector the cache lacks is embedded and cached
    on the first pass; `embedded` counts them."""

    def __init__(self, store: DocStore, embedder: Embedder, ids: np.ndarray, batch_size: int) -> None:
        self.store, self.embedder, self.ids, self.batch_size = store, embedder, ids, batch_size
        self.embedded = 0

    def __call__(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        emb = self.embedder
        for s in range(0, len(self.ids), PAGE):
            page = [int(i) for i in self.ids[s:s + PAGE]]
            found = self.store.get_embeddings(page, emb.id, emb.dim)
            if len(found) < len(page):
                lacking = ordered_chunks(self.store, [i for i in page if i not in found])
                self.embedded += embed_missing(self.store, emb, lacking, self.batch_size)
                found = self.store.get_embeddings(page, emb.id, emb.dim)
            yield self.ids[s:s + PAGE], np.stack([found[i] for i in page]).astype(np.float32, copy=False)


class SentencePages:
    """The cached sentence vectors of the chunks `ids`, a page at a time as (owning chunk id per sentence,
    (n, dim) float32): the sentence index's ids are its chunks', so a chunk's removal removes its sentences.
    `total()` embeds what the cache lacks and counts the sentences (a build needs the count first)."""

    def __init__(self, store: DocStore, embedder: Embedder, ids: np.ndarray, batch_size: int) -> None:
        self.store, self.embedder, self.ids, self.batch_size = store, embedder, ids, batch_size
        self.most = 0  # the most sentences of one chunk, once a pass is over

    def _pages(self) -> Iterator[tuple[list[int], dict[int, np.ndarray]]]:
        emb = self.embedder
        for s in range(0, len(self.ids), PAGE):
            page = [int(i) for i in self.ids[s:s + PAGE]]
            found = self.store.get_sentence_vectors(page, sentence_cache_key(emb.id), emb.dim)
            if len(found) < len(page):
                lacking = ordered_chunks(self.store, [i for i in page if i not in found])
                embed_missing(self.store, emb, lacking, self.batch_size, sentences=True)
                found = self.store.get_sentence_vectors(page, sentence_cache_key(emb.id), emb.dim)
            yield page, found

    def total(self) -> int:
        n = 0
        for page, found in self._pages():
            counts = [len(found[i]) for i in page]
            n += sum(counts)
            self.most = max([self.most, *counts])
        return n

    def __call__(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        for page, found in self._pages():
            counts = [len(found[i]) for i in page]
            self.most = max([self.most, *counts])
            if sum(counts):
                yield (np.repeat(np.asarray(page, np.int64), counts),
                       np.concatenate([found[i] for i in page]).astype(np.float32, copy=False))


def iter_bm25_texts(store: DocStore, ids: np.ndarray, corpus: dict[str, tuple[str, str]],
                    context: int) -> Iterator[str]:
    """Each chunk's BM25 text (`chunking.bm25_texts`: title plus its neighbours' words) in the order of `ids`,
    computed a page at a time with the page's documents' other chunks fetched as context."""
    for s in range(0, len(ids), PAGE):
        page = [int(i) for i in ids[s:s + PAGE]]
        chunks = store.get_chunks(page)
        if context:
            sibling_ids = {c for d in {chunks[i].doc_id for i in page}
                           for c in store.chunk_ids_for(d, *corpus[d])}
            chunks.update(store.get_chunks(sorted(sibling_ids - chunks.keys())))
        texts = bm25_texts(list(chunks.values()), context)
        for i in page:
            yield texts[i]
