"""The stages of `ragkiln build`, each a thin call into a package's core. A stage returns its
outputs (JSON-able, shown in the report) and the paths that must still exist for it to count as done."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from common.errors import TooLittleData
from common.settings import Settings
from pipeline.decisions import embedder_call

log = logging.getLogger(__name__)

EMBEDDER_SLOTS = ("embedder", "embedder-b")  # under the workspace's models/


@dataclass
class StageContext:
    settings: Settings
    home: Path
    corpus: list[Path]
    preset: str
    qa_steps: int
    state: Any  # BuildState
    eval_beir: Path | None = None  # a BEIR folder whose test split scores the embedder before and after
    inputs: str | None = None  # the running stage's inputs hash: a training run prepared under it is continued

    @property
    def models(self) -> Path:
        return self.home / "models"

    @property
    def embedder_dir(self) -> Path:
        """Where a build from before the two slots trained its embedder."""
        return self.models / EMBEDDER_SLOTS[0]

    @property
    def lm_base_dir(self) -> Path:
        return self.models / "lm-base"

    @property
    def lm_plain_dir(self) -> Path:
        return self.models / "lm-plain"

    @property
    def lm_dir(self) -> Path:
        return self.models / "lm"

    @property
    def gguf_dir(self) -> Path:
        return self.home / "gguf" / self.lm_dir.name  # where `ragkiln quantize` and the server look


def stage_ingest(ctx: StageContext) -> tuple[dict[str, Any], list[str]]:
    from indexer import service
    from ner.enrich import open_enricher

    with open_enricher(ctx.settings.ner) as enricher:
        report = service.ingest(ctx.settings, ctx.corpus, enricher=enricher, progress=True)
    return report.to_dict(), [str(ctx.home / "docstore.sqlite")]


def embedder_slot(models: Path, served: set[Path]) -> Path:
    """The first of the build's two embedder directories the active index does not search with: a new model
    never replaces the one serving (an index whose model changed under it refuses to search until a reindex, and
    the gate may keep it), and builds keep at most two adapted models."""
    return next(models / n for n in EMBEDDER_SLOTS if (models / n).resolve() not in served)


def stage_embedder(ctx: StageContext) -> tuple[dict[str, Any], list[str]]:
    """Adapt the embedder, unless the corpus is too small to train on or to judge the result without labels:
    then the stage records why, and search keeps the embedder it has."""
    from indexer.workspace import Workspace
    from trainer.embedder.train import train_embedder

    out = embedder_slot(ctx.models, Workspace.open(ctx.settings).served_model_dirs())
    try:
        report = train_embedder(ctx.settings, out=out, eval_beir=ctx.eval_beir, progress=True,
                                token=ctx.inputs, judge_first=True)
    except TooLittleData as e:
        log.warning("embedder not trained: %s", e)
        return {"trained": False, "reason": str(e)}, []
    keep = {k: report[k] for k in ("metrics", "serving", "training", "data", "plan", "loss_curve", "dev_curve")
            if k in report}
    return {"model": str(out), **keep}, [str(out)]


def serving(settings: Settings) -> dict[str, Any]:
    """The embedder the active index searches with, and whether it is an adapted one (an earlier build's or
    `train embedder`'s, whose directory holds our manifest), for a build that switched to none."""
    from indexer.workspace import Workspace
    from trainer.embedder.train import is_adapted

    section = Workspace.open(settings).active_embedder() or {}
    path = (section.get("base") or {}).get("path") or section.get("path")
    return {"path": path, "name": section.get("name"), "adapted": is_adapted(path)}


def stage_reindex(ctx: StageContext) -> tuple[dict[str, Any], list[str]]:
    """Switch the index to the adapted embedder, unless the evaluation split (or, without one, the
    label-free probe) says it is no better than the one the index searches with."""
    from indexer import service
    from ner.enrich import open_enricher

    trained = ctx.state.outputs("embedder")
    if trained.get("trained") is False:
        return {"switched": False, "trained": False, "reason": trained.get("reason"),
                "serving": serving(ctx.settings)}, []
    model = Path(trained.get("model") or ctx.embedder_dir)
    switch, why = embedder_call(trained.get("metrics", {}))
    if not switch:
        log.warning("keeping the current index: %s", why)
        return {"switched": False, "reason": why, "serving": serving(ctx.settings)}, [str(model)]
    log.info("switching the index to the adapted embedder: %s", why)
    with open_enricher(ctx.settings.ner) as enricher:  # documents re-chunked by the switch get entities too
        report = service.reindex(ctx.settings, embedder=str(model), enricher=enricher, progress=True)
    return {"switched": True, **report.to_dict()}, [str(model)]


def stage_lm(ctx: StageContext) -> tuple[dict[str, Any], list[str]]:
    """The retrieval-trained LM, and (lm.plain_check) a plain one on the same documents: the one whose held-out
    perplexity is lower, the retrieval model reading its retrieved neighbours, goes on to QA tuning."""
    from trainer.lm.gate import lm_served
    from trainer.lm.service import retrieval_payoff, train_lm

    summary = _jsonable(train_lm(ctx.settings, retrieval=True, out=ctx.lm_base_dir, token=ctx.inputs))
    if not ctx.settings.lm.plain_check:
        return {**summary, "served": "retrieval"}, [str(ctx.lm_base_dir)]
    plain = train_lm(ctx.settings, retrieval=False, out=ctx.lm_plain_dir, tokenizer=ctx.lm_base_dir / "tokenizer.model",
                     token=ctx.inputs)
    payoff = retrieval_payoff(ctx.settings, ctx.lm_base_dir, ctx.lm_plain_dir)
    served, why = lm_served(payoff)
    (log.info if served == "retrieval" else log.warning)("LM: the %s model goes on to QA tuning: %s", served, why)
    plain_keys = ("steps", "n_params", "final_train_loss", "heldout_ppl", "train_seconds", "tokens_per_s",
                  "resumed_from_step", "out")
    return ({**summary, "plain": _jsonable({k: v for k, v in plain.items() if k in plain_keys}),
             "payoff": _jsonable(payoff), "served": served, "reason": why},
            [str(ctx.lm_base_dir), str(ctx.lm_plain_dir)])


def lm_served_dir(ctx: StageContext) -> Path:
    """The LM the lm stage chose for QA tuning (the retrieval-trained one for builds from before the check)."""
    return ctx.lm_plain_dir if ctx.state.outputs("lm").get("served") == "plain" else ctx.lm_base_dir


def stage_qa(ctx: StageContext) -> tuple[dict[str, Any], list[str]]:
    """Fine-tune the LM the lm stage chose to answer from context on synthetic cloze questions."""
    from indexer.workspace import Workspace
    from reader.serve import qa_reader
    from trainer.lm.qa_synthetic import cloze_questions, synthetic_options
    from trainer.lm.service import stored_entity_spans, train_lm

    ws = Workspace.open(ctx.settings)
    examples = cloze_questions(list(ws.store.iter_chunks()), spans=stored_entity_spans(ws.store),
                               per_chunk=max(1, ctx.settings.lm.synthetic_per_chunk), seed=ctx.settings.lm.seed,
                               **synthetic_options(ctx.settings.lm))
    qa_file = ctx.home / "build" / "qa_synthetic.jsonl"
    qa_file.parent.mkdir(parents=True, exist_ok=True)
    with open(qa_file, "w", encoding="utf-8") as f:
        for ex in examples:
            f.write(json.dumps({"question": ex.question, "answer": ex.answer, "context": list(ex.context)}) + "\n")
    lm = ctx.settings.lm.model_copy(update={"steps": ctx.qa_steps, "synthetic_per_chunk": 0,
                                            "warmup": min(ctx.settings.lm.warmup, ctx.qa_steps // 10)})
    settings = ctx.settings.model_copy(update={"lm": lm})
    summary = train_lm(settings, qa=qa_file, init=lm_served_dir(ctx), out=ctx.lm_dir, token=ctx.inputs,
                       reader=qa_reader(settings.server.reader_pipeline))
    return {**_jsonable(summary), "synthetic_questions": len(examples)}, [str(ctx.lm_dir)]


def stage_quantize(ctx: StageContext) -> tuple[dict[str, Any], list[str]]:
    from quantize.service import quantize_model

    report = quantize_model(ctx.settings, ctx.lm_dir, out=ctx.gguf_dir)
    return _jsonable(report.to_dict() if hasattr(report, "to_dict") else report.__dict__), [str(ctx.gguf_dir)]


def stage_verify(ctx: StageContext) -> tuple[dict[str, Any], list[str]]:
    from quantize.service import verify_model

    result = verify_model(ctx.settings, ctx.lm_dir, types=ctx.settings.quantize.types, gguf_dir=ctx.gguf_dir)
    return _jsonable(result), [str(ctx.gguf_dir)]


def stage_evaluate(ctx: StageContext) -> tuple[dict[str, Any], list[str]]:
    """Held-out perplexity, search latency per mode on pseudo-queries, entity label counts."""
    from indexer.workspace import Workspace
    from trainer.lm.service import eval_lm

    ws = Workspace.open(ctx.settings)
    searcher = ws.searcher()
    queries = _pseudo_queries(ws, 200)
    latency: dict[str, Any] = {}
    for mode in ("bm25", "dense", "hybrid"):
        for q in queries[:10]:
            searcher.search(q, k=10, mode=mode)
        times = []
        for q in queries:
            t = time.perf_counter()
            searcher.search(q, k=10, mode=mode)
            times.append((time.perf_counter() - t) * 1000)
        a = np.array(times)
        latency[mode] = {"p50_ms": round(float(np.percentile(a, 50)), 2),
                         "p99_ms": round(float(np.percentile(a, 99)), 2), "samples_ms": [round(x, 3) for x in times]}
    labels: dict[str, int] = {}
    for label, _norm, n in ws.store.entity_counts():
        labels[label] = labels.get(label, 0) + n
    ppl = {"retrieval_lm": eval_lm(ctx.settings, ctx.lm_base_dir), "qa_lm": eval_lm(ctx.settings, ctx.lm_dir)}
    if "payoff" in ctx.state.outputs("lm"):
        ppl["plain_lm"] = eval_lm(ctx.settings, ctx.lm_plain_dir)
    return {"latency": latency, "entity_labels": labels, "perplexity": _jsonable(ppl),
            "queries": len(queries)}, []


def _pseudo_queries(ws: Any, n: int) -> list[str]:
    """Search-latency probes: the first sentence of evenly spaced chunks (no labels needed)."""
    chunks = list(ws.store.iter_chunks())
    step = max(1, len(chunks) // n)
    out = []
    for c in chunks[::step][:n]:
        first = c.text.strip().split(". ")[0][:200]
        if len(first.split()) >= 3:
            out.append(first)
    return out or ["example"]


def stage_report(ctx: StageContext) -> tuple[dict[str, Any], list[str]]:
    from pipeline.report import write_report

    path = write_report(ctx.home, ctx.state, ctx.preset, [str(p) for p in ctx.corpus],
                        str(ctx.eval_beir) if ctx.eval_beir else None)
    return {"html": str(path), "markdown": str(path.with_suffix(".md"))}, [str(path)]


def _jsonable(obj: Any) -> Any:
    return json.loads(json.dumps(obj, default=str))


STAGE_FUNCS = {
    "ingest": (stage_ingest, ("indexer", "ner")),
    "embedder": (stage_embedder, ("embedder_train",)),
    "reindex": (stage_reindex, ("indexer",)),
    "lm": (stage_lm, ("lm",)),
    "qa": (stage_qa, ("lm",)),
    "quantize": (stage_quantize, ("quantize",)),
    "verify": (stage_verify, ("quantize",)),
    "evaluate": (stage_evaluate, ()),
    "report": (stage_report, ()),
}
