"""Scale-out of the ingest on Ray: chunking, NER and embedding of new or changed documents run as Ray Data
`map_batches` on a cluster's workers; the docstore, the index build and the commit stay in the driver.

Each actor of the pool loads the workspace's embedder (and the NER pipeline, from a factory the caller gives)
once, then turns batches of documents into rows: the chunk spans, their entities, and their vectors keyed by the
hash of the text embedded (title + chunk, the key of the docstore's vector cache). The driver stores the rows as
they stream back, in the order the documents were scanned (Ray Data keeps it), so chunk ids, vectors and the
index are those a plain ingest makes. Nothing is active before the driver's single commit: a worker killed mid-way
is restarted by Ray and its batch retried; when the workers keep dying the ingest fails with the previous
generation still serving, and the next run reuses every row stored before the failure.

`ray` is imported only here, and this module only when an ingest asks for Ray.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from common.errors import InvalidInput, ManifestMismatch, RagkilnError
from common.hashing import sha256_text
from common.settings import IndexerConfig
from indexer.chunking import index_text, sentence_cache_key, sentence_texts
from indexer.embedder import Embedder, load_embedder
from indexer.stream import (ChunkBatch, Enricher, LocalStages, chunk_document, chunker_id, embed_sentences,
                            ordered_chunks)
from indexer.types import ChunkSpan, Document, Entity

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class RayOptions:
    """How to run the ingest on Ray. `address`: "local" starts a cluster on this machine (stopped after the
    ingest); anything else is passed to `ray.init(address=...)` ("auto", "HOST:6379", "ray://HOST:10001")."""

    address: str = "local"
    # Builds the enricher inside each actor (a spaCy pipeline cannot travel); None: no NER on the workers.
    enricher_factory: Callable[[], Enricher | None] | None = None
    actors: int | None = None  # actors in the pool; default: the cluster's CPUs / cpus_per_actor
    cpus_per_actor: float = 1.0
    batch_docs: int = 64  # documents per map_batches call
    # Documents handed to Ray Data at a time: the scan waits while a window is processed, so the object store
    # and the driver hold at most one window's texts, whatever the corpus's size. A window closes at
    # window_mb of text or window_docs documents, whichever comes first. Each window starts its own actor pool
    # (about 23 s of model loading on 2 cores, bench/ray_ingest.py --window-docs), so windows are bounded by
    # what they hold, not by a count that restarts the pool every few thousand small documents.
    window_docs: int = 1_000_000
    window_mb: float = 256.0
    num_cpus: int | None = None  # CPUs of a local cluster; default: all of this machine's
    max_restarts: int = 3  # restarts of a dying actor before the ingest gives up

    def __post_init__(self) -> None:
        if not self.address.strip():
            raise InvalidInput("--ray needs 'local' or the address of a Ray cluster (auto, HOST:6379, ray://HOST:10001)")
        if (self.batch_docs < 1 or self.window_docs < 1 or self.cpus_per_actor <= 0 or self.window_mb <= 0
                or (self.actors is not None and self.actors < 1)):
            raise InvalidInput("Ray options: batch_docs, window_docs and actors must be at least 1, "
                               "cpus_per_actor and window_mb above 0")


@dataclass(frozen=True)
class WorkerSpec:
    """What an actor needs to do the driver's work exactly as the driver would (pickled to each actor)."""

    base_path: str  # the torch model whose tokenizer cuts the chunks
    chunker: str  # the driver's chunker id: a worker whose tokenizer differs refuses to work
    chunk_tokens: int
    chunk_overlap: int
    embed_path: str | None  # the embedder (torch or an int8 export directory); None: no vectors
    embed_id: str | None
    threads: int
    embed_batch_size: int
    enricher_factory: Callable[[], Enricher | None] | None
    sentences: bool = False  # sentence vectors beside the chunks' too


class ChunkEnrichEmbed:
    """The Ray Data UDF: a batch of documents (pyarrow: doc_id, sha256, title, text) in, one row per document
    out: its chunk spans, their entities (chunk- and document-relative offsets) and vectors, and the hash each
    vector is cached under."""

    def __init__(self, spec: WorkerSpec) -> None:
        self.spec = spec
        self.base = load_embedder(spec.base_path, spec.threads)
        found = chunker_id(self.base, spec.chunk_tokens, spec.chunk_overlap)
        if found != spec.chunker:
            raise ManifestMismatch(f"the Ray worker's tokenizer at {spec.base_path} chunks as {found}, the driver's as "
                                   f"{spec.chunker}: install the same model on every node")
        self.embedder: Embedder | None = None
        if spec.embed_path is not None:
            self.embedder = load_embedder(spec.embed_path, spec.threads)
            if self.embedder.id != spec.embed_id:
                raise ManifestMismatch(f"the Ray worker's embedder at {spec.embed_path} is {self.embedder.id}, the "
                                       f"driver's {spec.embed_id}: install the same model on every node")
        self.enricher = spec.enricher_factory() if spec.enricher_factory is not None else None

    def __call__(self, batch: Any) -> Any:
        import pyarrow as pa

        cols = {k: batch.column(k).to_pylist() for k in ("doc_id", "sha256", "title", "text")}
        docs = [Document(doc_id=i, text=t, sha256=h, title=ti)
                for i, h, ti, t in zip(cols["doc_id"], cols["sha256"], cols["title"], cols["text"])]
        spans = [chunk_document(d, self.base, self.spec.chunk_tokens, self.spec.chunk_overlap) for d in docs]
        texts = [d.text[sp.start:sp.end] for d, sps in zip(docs, spans) for sp in sps]
        embedded = [index_text(d.title, d.text[sp.start:sp.end]) for d, sps in zip(docs, spans) for sp in sps]
        ents = (self.enricher(texts) if texts else []) if self.enricher is not None else None
        vecs = (self.embedder.encode(embedded, batch_size=self.spec.embed_batch_size)
                if self.embedder is not None and embedded else None)
        sent = None
        if vecs is not None and self.spec.sentences:
            per = [sentence_texts(d.title, d.text[sp.start:sp.end]) for d, sps in zip(docs, spans) for sp in sps]
            sent = embed_sentences(self.embedder, per, self.spec.embed_batch_size)  # type: ignore[arg-type]
        out: dict[str, list[Any]] = {"doc_id": [], "sha256": [], "spans": [], "entities": [], "text_sha": [],
                                     "vectors": [], "sentence_counts": [], "sentence_vectors": []}
        k = 0
        for d, sps in zip(docs, spans):
            n = len(sps)
            out["doc_id"].append(d.doc_id)
            out["sha256"].append(d.sha256)
            out["spans"].append(json.dumps([[sp.ord, sp.start, sp.end, sp.n_tokens] for sp in sps]))
            out["entities"].append(json.dumps(None if ents is None else [
                [[e.text, e.label, e.norm, e.start, e.end, sp.start + e.start, sp.start + e.end] for e in es]
                for sp, es in zip(sps, ents[k:k + n])]))
            out["text_sha"].append(json.dumps([sha256_text(t) for t in embedded[k:k + n]]))
            out["vectors"].append(b"" if vecs is None else np.ascontiguousarray(vecs[k:k + n], np.float32).tobytes())
            out["sentence_counts"].append(json.dumps(None if sent is None else [len(v) for v in sent[k:k + n]]))
            out["sentence_vectors"].append(b"" if sent is None or not n else
                                           np.ascontiguousarray(np.concatenate(sent[k:k + n]), np.float32).tobytes())
            k += n
        return pa.table({"doc_id": pa.array(out["doc_id"], pa.string()), "sha256": pa.array(out["sha256"], pa.string()),
                         "spans": pa.array(out["spans"], pa.string()), "entities": pa.array(out["entities"], pa.string()),
                         "text_sha": pa.array(out["text_sha"], pa.string()),
                         "vectors": pa.array(out["vectors"], pa.binary()),
                         "sentence_counts": pa.array(out["sentence_counts"], pa.string()),
                         "sentence_vectors": pa.array(out["sentence_vectors"], pa.binary())})


def connect(options: RayOptions) -> bool:
    """Join the cluster (or start a local one); True when this call started Ray and must shut it down."""
    import ray

    if ray.is_initialized():
        return False
    try:
        if options.address == "local":
            pythonpath = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
            ray.init(address="local", num_cpus=options.num_cpus, include_dashboard=False, log_to_driver=False,
                     configure_logging=False, runtime_env={"env_vars": {"PYTHONPATH": pythonpath}})
        else:
            _check_reachable(options.address)
            ray.init(address=options.address, log_to_driver=False, configure_logging=False)
    except (ConnectionError, RuntimeError, ValueError) as e:
        raise InvalidInput(f"cannot join the Ray cluster at {options.address!r}: {_first_line(e)}") from e
    return True


def _check_reachable(address: str, timeout: float = 5.0) -> None:
    """A HOST:PORT (or ray://HOST:PORT) address answers a TCP connect, else a clear error at once: ray.init
    would retry an unreachable head for minutes."""
    hostport = address.split("://", 1)[-1]
    if ":" not in hostport:
        return  # "auto" and the like: Ray resolves them itself and fails fast
    host, _, port = hostport.rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
            pass
    except ValueError as e:
        raise InvalidInput(f"cannot join the Ray cluster at {address!r}: the port is not a number") from e
    except OSError as e:
        raise InvalidInput(f"cannot join the Ray cluster at {address!r}: {e.strerror or e}") from e


def process_on_ray(options: RayOptions, batches: Iterable[list[Document]], local: LocalStages,
                   embedder: Embedder | None, enricher: Enricher | None, cfg: IndexerConfig) -> None:
    """Chunk, enrich and embed the documents of `batches` on Ray and store the results (the driver's part of
    the streamed ingest for new and changed documents), a window (`options.window_mb`, `window_docs`) at a time. Documents
    a killed run already chunked are finished here by the local NER and embed stages, which skip what that
    run stored."""
    import pyarrow as pa
    import ray

    store = local.store
    factory = options.enricher_factory
    if factory is None and enricher is not None:  # a plain function (tests): it travels by value
        factory = _constant(enricher)
    started = connect(options)
    try:
        spec = WorkerSpec(local.base.path, local.chunker, local.chunk_tokens, local.chunk_overlap,
                          embedder.path if embedder is not None else None,
                          embedder.id if embedder is not None else None, cfg.threads, cfg.embed_batch_size, factory,
                          local.sentences)
        ctx = ray.data.DataContext.get_current()
        ctx.execution_options.preserve_order = True  # chunk ids in scan order, as a plain ingest assigns them
        ctx.enable_progress_bars = False  # the driver's own per-stage progress reports the work
        actors = options.actors or max(1, int(ray.cluster_resources().get("CPU", 1) // options.cpus_per_actor))
        refs: list[Any] = []
        pending = pending_chars = 0  # documents and characters in refs
        window_chars = int(options.window_mb * 2**20)

        def run_window() -> None:
            """The window's documents through the actor pool, stored in scan order; windows run one after another."""
            nonlocal refs, pending, pending_chars
            if not refs:
                return
            log.debug("Ray: a window of %d documents in %d blocks", pending, len(refs))
            with warnings.catch_warnings():  # max_restarts has no named parameter yet in Ray 2.60
                warnings.simplefilter("ignore", DeprecationWarning)
                ds = ray.data.from_arrow_refs(refs).map_batches(
                    ChunkEnrichEmbed, fn_constructor_args=(spec,), batch_size=options.batch_docs,
                    batch_format="pyarrow", compute=ray.data.ActorPoolStrategy(size=actors),
                    num_cpus=options.cpus_per_actor, max_restarts=options.max_restarts)
            for out in ds.iter_batches(batch_size=options.batch_docs, batch_format="pyarrow"):
                _store_rows(local, embedder, out.to_pylist())
            refs, pending, pending_chars = [], 0, 0

        for batch in batches:  # the scan: documents stored, the new ones handed to the object store
            store.put_documents(batch)
            fresh: list[Document] = []
            resumed: list[int] = []
            for d in batch:
                got = store.chunk_ids_for(d.doc_id, d.sha256, local.chunker)
                if got:
                    resumed.extend(got)
                else:
                    fresh.append(d)
            if resumed:
                done = ChunkBatch(ordered_chunks(store, resumed), len(batch) - len(fresh))
                local.progress.update("chunk", done.n_docs, len(resumed))
                local.ner(done)
                local.embed(done)
            for s in range(0, len(fresh), options.batch_docs):  # one block per task: blocks are what spreads
                part = fresh[s:s + options.batch_docs]
                refs.append(ray.put(pa.table({
                    "doc_id": [d.doc_id for d in part], "sha256": [d.sha256 for d in part],
                    "title": [d.title for d in part], "text": [d.text for d in part]})))
                pending += len(part)
                pending_chars += sum(len(d.text) for d in part)
                if pending >= options.window_docs or pending_chars >= window_chars:
                    run_window()
        run_window()
    except RagkilnError:
        raise
    except Exception as e:  # noqa: BLE001 - Ray's errors, one class per failure kind; mapped once here
        cause = _domain_cause(e)
        if cause is not None:
            raise cause from e
        if not type(e).__module__.startswith("ray"):  # the scan's own errors (a disk gone) stay what they are
            raise
        raise RagkilnError(f"the Ray ingest failed ({type(e).__name__}: {_first_line(e)}); the previous index "
                           "still serves, and the next run reuses what this one stored") from e
    finally:
        if started:
            ray.shutdown()


def _store_rows(local: LocalStages, embedder: Embedder | None, rows: Sequence[dict[str, Any]]) -> None:
    """A batch of worker rows into the docstore: chunks, then entities, then vectors under their text hash
    (checked against the hash of the chunk the driver stored: both sides cut the same text)."""
    store = local.store
    n_chunks = n_ents = n_vecs = 0
    for r in rows:
        doc = store.get_document_version(r["doc_id"], r["sha256"])
        if doc is None:
            raise RagkilnError(f"document {r['doc_id']!r} came back from Ray but is not in the docstore")
        spans = [ChunkSpan(*x) for x in json.loads(r["spans"])]
        ids = store.put_chunks(doc, local.chunker, spans)
        chunks = ordered_chunks(store, ids)
        hashes = json.loads(r["text_sha"])
        if [sha256_text(index_text(c.title, c.text)) for c in chunks] != hashes:
            raise ManifestMismatch(f"the Ray worker cut document {doc.doc_id!r} differently from the driver")
        ents = json.loads(r["entities"])
        if ents is not None:
            store.put_entities((cid, [Entity(*e) for e in es]) for cid, es in zip(ids, ents))
            n_ents += len(ids)
        if embedder is not None and ids:
            vecs = np.frombuffer(r["vectors"], dtype=np.float32).reshape(len(ids), embedder.dim)
            store.put_embeddings(ids, embedder.id, vecs)
            n_vecs += len(ids)
            counts = json.loads(r["sentence_counts"])
            if counts is not None:
                flat = np.frombuffer(r["sentence_vectors"], dtype=np.float32).reshape(-1, embedder.dim)
                store.put_sentence_vectors(ids, sentence_cache_key(embedder.id), np.split(flat, np.cumsum(counts)[:-1]))
        n_chunks += len(ids)
    local.add_counts(embedded=n_vecs, enriched=n_ents, chunked_docs=len(rows))
    local.progress.update("chunk", len(rows), n_chunks)
    local.progress.update("ner", len(rows), n_ents)
    local.progress.update("embed", len(rows), n_vecs)


class _constant:
    """A factory returning a given enricher (picklable when the enricher is)."""

    def __init__(self, enricher: Enricher) -> None:
        self.enricher = enricher

    def __call__(self) -> Enricher:
        return self.enricher


def _domain_cause(e: BaseException) -> RagkilnError | None:
    """A domain error raised inside a worker (a model mismatch), unwrapped from Ray's task error."""
    seen = 0
    cur: BaseException | None = e
    while cur is not None and seen < 8:
        if isinstance(cur, RagkilnError):
            return cur
        cur = getattr(cur, "cause", None) or cur.__cause__
        seen += 1
    return None


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0][:300] if text else type(e).__name__
