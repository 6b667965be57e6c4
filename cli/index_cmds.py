"""`ingest`, `reindex`, `search`, `ask`: thin adapters over indexer.service and reader.answer."""

from __future__ import annotations

import functools
from pathlib import Path

import typer

from common.settings import Settings, load_settings
from indexer import service
from indexer.ray_ingest import RayOptions
from ner.enrich import make_enricher, open_enricher
from ner.filters import entity_search
from cli.app import app, overrides_of
from cli.output import emit, handle_errors
from cli.groups import eval_app
from cli.render import (answer_to_dict, hits_to_dicts, render_answer, render_facets, render_hits, render_metrics,
                        render_report)


RAY_HELP = ("Chunk, enrich and embed new or changed documents on Ray: 'local' starts a cluster on this machine, "
            "an address (auto, HOST:6379, ray://HOST:10001) joins one (default: indexer.ray_address). "
            "See docs/scale-out.md.")


# `search` and `ask` retrieve the same way
MODE_OPTION = typer.Option("hybrid", "--mode", help="dense, bm25 or hybrid.")
ENTITY_OPTION = typer.Option(None, "--entity", help="Only chunks with this entity: LABEL or LABEL:value (repeat to "
                             "AND them).")


def ray_options(address: str | None, settings: Settings) -> RayOptions | None:
    """--ray, else `indexer.ray_address`: each Ray actor builds its own NER pipeline (one process each: Ray
    provides the parallelism)."""
    if address is None:
        address = settings.indexer.ray_address or None
    if address is None or not address.strip():
        return None
    ner = settings.ner.model_copy(update={"n_process": 1})
    return RayOptions(address.strip(), enricher_factory=functools.partial(make_enricher, ner) if ner.enabled else None)


@app.command()
@handle_errors
def ingest(
    ctx: typer.Context,
    paths: list[Path] = typer.Argument(..., help="Files or folders (.txt .md .html .pdf, BEIR corpus.jsonl)."),
    chunk_tokens: int = typer.Option(None, help="Chunk size in embedder tokens (default 128)."),
    chunk_overlap: int = typer.Option(None, help="Tokens shared by consecutive chunks."),
    faiss_factory: str = typer.Option(None, "--index-type", help="FAISS factory string (Flat, HNSW32, IVF1024,SQ8)."),
    no_ner: bool = typer.Option(False, "--no-ner", help="Skip named-entity extraction."),
    ray: str = typer.Option(None, "--ray", help=RAY_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Ingest documents: re-embeds only what was added or changed, removes what was deleted."""
    settings = load_settings(overrides_of(ctx, indexer={
        "chunk_tokens": chunk_tokens, "chunk_overlap": chunk_overlap, "faiss_factory": faiss_factory},
        ner={"enabled": False if no_ner else None}))
    with open_enricher(settings.ner) as enricher:
        report = service.ingest(settings, paths, enricher=enricher, progress=not as_json,
                                ray=ray_options(ray, settings))
    emit(report.to_dict(), as_json, render_report)


@app.command()
@handle_errors
def reindex(
    ctx: typer.Context,
    embedder: str = typer.Option(None, "--embedder", help="Embedder directory or name to re-embed with."),
    no_ner: bool = typer.Option(False, "--no-ner", help="Skip named-entity extraction of unenriched chunks."),
    ray: str = typer.Option(None, "--ray", help=RAY_HELP),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Re-embed the stored corpus into a new index directory and switch to it atomically."""
    settings = load_settings(overrides_of(ctx, ner={"enabled": False if no_ner else None}))
    with open_enricher(settings.ner) as enricher:
        report = service.reindex(settings, embedder=embedder, enricher=enricher, progress=not as_json,
                                 ray=ray_options(ray, settings))
    emit(report.to_dict(), as_json, render_report)


@app.command()
@handle_errors
def search(
    ctx: typer.Context,
    query: str = typer.Argument(..., help="What to look for."),
    k: int = typer.Option(10, "--k", "-k", min=1, max=1000, help="Number of hits."),
    mode: str = MODE_OPTION,
    embedder: str = typer.Option(None, "--embedder", help="Refused unless it is the index's own embedder."),
    entity: list[str] = ENTITY_OPTION,
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Search the workspace index (optionally restricted by entities); results carry entity facets."""
    settings = load_settings(overrides_of(ctx))
    r = entity_search(settings, query, k=k, mode=mode, entity_specs=entity, embedder=embedder)
    emit({"query": query, "mode": mode, "filters": r["filters"], "facets": r["facets"],
          "hits": hits_to_dicts(r["hits"])}, as_json, lambda d: render_hits(d) + "\n" + render_facets(d))


@app.command()
@handle_errors
def ask(
    ctx: typer.Context,
    question: str = typer.Argument(..., help="A question about the documents."),
    k: int = typer.Option(5, "--k", "-k", min=1, max=100, help="Passages retrieved (as /v1/answer's k)."),
    mode: str = MODE_OPTION,
    entity: list[str] = ENTITY_OPTION,
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Answer from the documents: the span of a retrieved passage that answers, its sentence and where it is
    (what /v1/answer answers extractively; no language model needed). Unsupported questions say so."""
    from ner.pipeline import import_spacy_without_torch
    from reader.answer import answer_question

    import_spacy_without_torch()  # the reader's spaCy pipeline needs no torch: a cold start 1.3 s shorter

    settings = load_settings(overrides_of(ctx))
    emit(answer_to_dict(question, answer_question(settings, question, k=k, mode=mode, entity_specs=entity or ())),
         as_json, render_answer)


@eval_app.command("retrieval")
@handle_errors
def eval_retrieval(
    ctx: typer.Context,
    beir: Path = typer.Option(..., "--beir", help="BEIR folder: corpus.jsonl, queries.jsonl, qrels/SPLIT.tsv."),
    split: str = typer.Option("test", "--split"),
    mode: str = typer.Option("all", "--mode", help="dense, bm25, hybrid or all."),
    embedder: str = typer.Option(None, "--embedder", help="Reindex the workspace with this embedder, then "
                                 "evaluate (the switch stays; cached embeddings are reused)."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """nDCG@10, Recall@100 and MRR@10 per retrieval mode on a BEIR split."""
    from indexer.beir_eval import eval_retrieval as run_eval

    settings = load_settings(overrides_of(ctx))
    result = run_eval(settings, beir, split=split, mode=mode, embedder=embedder, progress=not as_json)
    emit(result, as_json, render_metrics)
