"""Retrieval evaluation on a BEIR folder (corpus.jsonl, queries.jsonl, qrels/<split>.tsv).

Chunk hits are turned into document rankings by first occurrence (max-pooling over a document's
chunks), then scored with nDCG@10, Recall@100 and MRR@10. The ranking's head is the served one (see
`doc_ranking`).
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Sequence
from pathlib import Path

from common.errors import InvalidInput, ManifestMismatch, NotFound
from common.settings import Settings
from common.jsonl import iter_jsonl
from indexer import service
from indexer.metrics import evaluate_run
from indexer.search import MODES, Searcher
from indexer.workspace import Workspace

log = logging.getLogger(__name__)

DOC_DEPTH = 100  # documents ranked per query (Recall@100 needs 100)


def load_queries(beir_dir: Path) -> dict[str, str]:
    path = beir_dir / "queries.jsonl"
    if not path.exists():
        raise NotFound(f"{path} not found: a BEIR folder holds corpus.jsonl, queries.jsonl and qrels/")
    out: dict[str, str] = {}
    for where, obj in iter_jsonl(path, "queries file"):
        if not isinstance(obj, dict) or "_id" not in obj or not isinstance(obj.get("text"), str):
            raise InvalidInput(f"{where}: a BEIR query line needs an '_id' and a string 'text'")
        out[str(obj["_id"])] = obj["text"]
    return out


def load_qrels(beir_dir: Path, split: str) -> dict[str, dict[str, int]]:
    path = beir_dir / "qrels" / f"{split}.tsv"
    if not path.exists():
        raise NotFound(f"{path} not found (splits present: "
                       f"{', '.join(p.stem for p in (beir_dir / 'qrels').glob('*.tsv')) or 'none'})")
    qrels: dict[str, dict[str, int]] = {}
    with open(path, encoding="utf-8") as f:
        reader = csv.reader(f, delimiter="\t")
        for n, row in enumerate(reader, 1):
            if n == 1 and row and row[0] == "query-id":
                continue
            if len(row) < 3:
                continue
            try:
                qrels.setdefault(row[0], {})[row[1]] = int(row[2])
            except ValueError as e:
                raise InvalidInput(f"{path}:{n}: score must be an integer") from e
    return qrels


def doc_ranking(searcher: Searcher, query: str, mode: str, query_vec=None, depth: int = DOC_DEPTH) -> list[str]:  # type: ignore[no-untyped-def]
    """Document ids best first: the head exactly as a served search ranks them, then deeper documents.

    A served search fuses each retriever's first `indexer.candidates` hits, and min-max fusion depends on
    how many hits it normalises over; so the documents those hits give come first, as served, and only
    the ones after them (Recall@100) come from a wider fetch, widened until `depth` documents are found."""
    docs: list[str] = []
    seen: set[str] = set()
    n = searcher.cfg.candidates
    while True:
        ranked, _ = searcher.ranked_ids(query, mode, n, query_vec=query_vec)  # type: ignore[arg-type]
        chunks = searcher.store.get_chunks(ranked)
        for cid in ranked:
            c = chunks.get(cid)
            if c is not None and c.doc_id not in seen:
                seen.add(c.doc_id)
                docs.append(c.doc_id)
        if len(docs) >= depth or n >= searcher.size or len(ranked) < n:
            return docs[:depth]
        n = max(n * 2, depth * 3)


def evaluate_searcher(searcher: Searcher, queries: dict[str, str], qrels: dict[str, dict[str, int]],
                      modes: list[str]) -> dict[str, dict[str, float]]:
    qids = [q for q in qrels if q in queries]
    if not qids:
        raise InvalidInput("no query in the qrels split has a text in queries.jsonl")
    vecs = searcher.encode_queries([queries[q] for q in qids]) if (
        set(modes) & {"dense", "hybrid"}) else None
    results: dict[str, dict[str, float]] = {}
    for mode in modes:
        run = {}
        for i, q in enumerate(qids):
            qv = vecs[i:i + 1] if vecs is not None and mode != "bm25" else None
            run[q] = doc_ranking(searcher, queries[q], mode, qv)
        results[mode] = {k: round(v, 4) if isinstance(v, float) else v
                         for k, v in evaluate_run(run, {q: qrels[q] for q in qids}).items()}
    return results


def selection_split(beir_dir: Path, trained_on: Path | None = None) -> str | None:
    """The labelled split that may choose between models: `dev`, else `train` unless the run trained on this
    folder's train split; None when neither is there. The test split only reports, after the choice."""
    qrels = Path(beir_dir) / "qrels"
    if (qrels / "dev.tsv").is_file():
        return "dev"
    same = trained_on is not None and Path(trained_on).resolve() == Path(beir_dir).resolve()
    return "train" if (qrels / "train.tsv").is_file() and not same else None


def eval_retrieval(settings: Settings, beir_dir: Path, split: str = "test", mode: str = "all",
                   embedder: str | None = None, progress: bool = True) -> dict[str, dict[str, float]]:
    """Index the BEIR corpus in the workspace (reused when unchanged) and score each mode."""
    return eval_splits(settings, beir_dir, (split,), mode, embedder, progress)[split]


def eval_splits(settings: Settings, beir_dir: Path, splits: Sequence[str], mode: str = "all",
                embedder: str | None = None, progress: bool = True) -> dict[str, dict[str, dict[str, float]]]:
    """`eval_retrieval` for several qrels splits over one index: {split: {mode: metrics}}."""
    beir_dir = Path(beir_dir)
    if mode != "all" and mode not in MODES:
        raise InvalidInput(f"mode must be all, {', '.join(MODES)}; got {mode!r}")
    corpus = beir_dir / "corpus.jsonl"
    if not corpus.exists():
        raise NotFound(f"{corpus} not found: a BEIR folder holds corpus.jsonl, queries.jsonl and qrels/")
    queries = load_queries(beir_dir)
    qrels = {split: load_qrels(beir_dir, split) for split in splits}
    service.ingest(settings, [corpus], progress=progress)
    ws = Workspace.open(settings)
    searcher = ws.searcher()
    if embedder is not None:
        from indexer.embedder import load_embedder

        # Compared by model, not by backend: under embed_backend=auto the index serves the model through
        # its int8 export, whose id differs from the torch model's.
        want = load_embedder(embedder, settings.indexer.threads).base_id
        if searcher.embedder.base_id != want:
            log.info("re-embedding the corpus with %s", embedder)
            service.reindex(settings, embedder=embedder, progress=progress)
            searcher = ws.searcher()
        if searcher.embedder.base_id != want:
            raise ManifestMismatch(f"the index serves {searcher.embedder.id}, not {embedder}, after reindexing")
    modes = ["bm25", "dense", "hybrid"] if mode == "all" else [mode]
    return {split: evaluate_searcher(searcher, queries, qrels[split], modes) for split in splits}
