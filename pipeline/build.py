"""`ragkiln build`: the whole pipeline, stage by stage, resumable.

ingest (+NER) -> embedder training -> reindex -> LM training (retrieval-augmented) -> QA tuning ->
GGUF export -> verification -> evaluation -> report.

Each stage records a hash of its inputs (the corpus, the preset's settings for that stage and the
outputs of the stages it reads) in `build/state.json`. Re-running skips a stage whose inputs hash is
unchanged and whose outputs still exist, so a build interrupted at any point continues from the last
finished stage, and a changed corpus recomputes only what depends on it. Within a stage, a training run
(embedder or LM) prepared under the same inputs continues from its last checkpoint.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common.artifacts import atomic_write_text
from common.errors import InvalidInput
from common.hashing import sha256_text
from common.settings import Settings

log = logging.getLogger(__name__)

STAGES = ("ingest", "embedder", "reindex", "lm", "qa", "quantize", "verify", "evaluate", "report")

# Per-preset overrides of the settings sections, applied under anything the user set explicitly.
PRESETS: dict[str, dict[str, Any]] = {
    "tiny": {  # the end-to-end test: seconds per stage
        "embedder_train": {"epochs": 1, "max_pairs": 64, "batch_size": 16, "mini_batch_size": 16,
                           "max_seq_length": 64},
        "lm": {"preset": "tiny", "vocab_size": 400, "steps": 30, "batch_size": 8, "target_len": 64,
               "neighbour_len": 32, "eval_every": 15, "eval_rows": 16, "ckpt_every": 15, "synthetic_per_chunk": 2,
               "qa_passage_len": 96},
        "quantize": {"types": "f32,q8_0", "verify_rows": 8, "verify_prompts": 4, "verify_gen_tokens": 8},
        "qa_steps": 20,
    },
    "demo": {  # the bundled sample corpus in about 10 minutes on 2 cores
        "embedder_train": {"epochs": 1, "max_pairs": 128, "batch_size": 32, "mini_batch_size": 32,
                           "max_seq_length": 96},
        "lm": {"preset": "tiny", "steps": 80, "batch_size": 16, "eval_every": 40, "ckpt_every": 40},
        "quantize": {"types": "f32,f16,q8_0,q4_0,q4_k_m", "verify_rows": 32, "verify_prompts": 20},
        "qa_steps": 40,
    },
    "standard": {  # a real corpus (SciFact-sized) in about 2 hours on 2 cores
        # The embedder's recipe is `train embedder`'s default in every preset (its WiSE-FT weight re-chosen on
        # SciFact's train-split dev queries, docs/benchmarks.md); presets only size it. The planner fits pairs
        # and steps into the budget (trainer/embedder/plan.py).
        "embedder_train": {"budget_minutes": 20.0},
        # the LM's recipe is `train lm`'s default too (copy-circuit init, learning rate by model size)
        "lm": {"preset": "small", "steps": 3000, "batch_size": 16, "eval_every": 250, "ckpt_every": 250},
        "quantize": {"types": "all"},
        "qa_steps": 1000,
    },
}


@dataclass(frozen=True)
class StageResult:
    name: str
    skipped: bool
    seconds: float
    outputs: dict[str, Any]
    peak_rss_mb: float | None = None  # the stage's own process's high-water mark (stage_processes)


def preset_settings(settings: Settings, preset: str) -> tuple[Settings, int]:
    """Settings with the preset applied to the training sections (explicit user settings are kept for
    everything else); returns also the QA fine-tuning step count."""
    if preset not in PRESETS:
        raise InvalidInput(f"unknown preset {preset!r}; choose {', '.join(PRESETS)}")
    p = PRESETS[preset]
    data = settings.model_dump()
    for section in ("embedder_train", "lm", "quantize"):
        data[section] = {**data[section], **p.get(section, {})}
    return Settings.model_validate(data), int(p["qa_steps"])


class BuildState:
    """`build/state.json`: per stage, its inputs hash, outputs and timing; rewritten atomically."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.data: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {"stages": {}}

    def done(self, stage: str, inputs: str) -> dict[str, Any] | None:
        rec = self.data["stages"].get(stage)
        if rec and rec.get("inputs") == inputs and all(Path(p).exists() for p in rec.get("paths", [])):
            return rec
        return None

    def record(self, stage: str, inputs: str, outputs: dict[str, Any], seconds: float, paths: list[str],
               peak_rss_mb: float | None = None) -> None:
        self.data["stages"][stage] = {"inputs": inputs, "outputs": outputs, "seconds": round(seconds, 2),
                                      "paths": paths, "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                                      **({"peak_rss_mb": peak_rss_mb} if peak_rss_mb is not None else {})}
        atomic_write_text(self.path, json.dumps(self.data, indent=2, default=str))

    def outputs(self, stage: str) -> dict[str, Any]:
        return self.data["stages"].get(stage, {}).get("outputs", {})


def corpus_fingerprint(paths: list[Path]) -> str:
    """Hash of every file's path, size and mtime under the corpus paths (cheap; content hashes are
    the ingest's business)."""
    from indexer.loaders import iter_files

    parts = []
    for root in paths:
        for f in iter_files(Path(root).resolve()):
            st = f.stat()
            parts.append(f"{f}:{st.st_size}:{st.st_mtime_ns}")
    return sha256_text("\n".join(parts))


def find_eval_beir(corpus: list[Path], eval_beir: Path | None) -> Path | None:
    """The BEIR folder whose test split scores the embedder: the one given, else a corpus path that is
    a BEIR folder with a test split (its queries are never ingested)."""
    from indexer.beir_eval import load_qrels, load_queries
    from indexer.loaders import is_beir_dir

    if eval_beir is not None:
        eval_beir = Path(eval_beir).resolve()
        load_queries(eval_beir)  # a bad folder fails now, not after an hour of training
        load_qrels(eval_beir, "test")
        return eval_beir
    for p in map(Path, corpus):
        folder = p.parent if p.name == "corpus.jsonl" else p
        if is_beir_dir(folder) and (folder / "qrels" / "test.tsv").is_file():
            return folder.resolve()
    return None


def run_build(settings: Settings, corpus: list[Path], preset: str = "demo",
              on_stage: Callable[[str, int, int], None] | None = None,
              eval_beir: Path | None = None) -> dict[str, Any]:
    """Run every stage that is not already up to date; returns a summary per stage."""
    from pipeline import stages as st
    from pipeline.isolate import run_in_child

    settings, qa_steps = preset_settings(settings, preset)
    home = Path(settings.home).expanduser().resolve()
    state = BuildState(home / "build" / "state.json")
    ctx = st.StageContext(settings=settings, home=home, corpus=[Path(p) for p in corpus], preset=preset,
                          qa_steps=qa_steps, state=state, eval_beir=find_eval_beir(corpus, eval_beir))
    results: list[StageResult] = []
    fp = corpus_fingerprint(ctx.corpus)
    upstream = {"corpus": fp}
    for i, name in enumerate(STAGES):
        fn, sections = st.STAGE_FUNCS[name]
        dumped = settings.model_dump(mode="json")
        cfg = {s: dumped[s] for s in sections}
        if name == "embedder" and ctx.eval_beir is not None:
            cfg["eval_beir"] = str(ctx.eval_beir)
        inputs = sha256_text(json.dumps({"stage": name, "cfg": cfg, "upstream": upstream, "preset": preset},
                                        sort_keys=True, default=str))
        if on_stage:
            on_stage(name, i, len(STAGES))
        rec = state.done(name, inputs)
        if rec is not None:
            log.info("stage %s: up to date, skipped", name)
            results.append(StageResult(name, True, 0.0, rec["outputs"]))
        else:
            log.info("stage %s: running", name)
            ctx.inputs = inputs
            t0 = time.perf_counter()
            if settings.stage_processes:
                child = run_in_child(fn, ctx, f"stage {name}")
                outputs, paths, peak = child.outputs, child.paths, child.peak_rss_mb
            else:
                (outputs, paths), peak = fn(ctx), None
            dt = time.perf_counter() - t0
            state.record(name, inputs, outputs, dt, paths, peak_rss_mb=peak)
            results.append(StageResult(name, False, dt, outputs, peak))
        upstream[name] = inputs
    return {
        "workspace": str(home), "preset": preset,
        "stages": [{"stage": r.name, "skipped": r.skipped, "seconds": round(r.seconds, 2),
                    **({"peak_rss_mb": r.peak_rss_mb} if r.peak_rss_mb is not None else {})} for r in results],
        "report": str(home / "report" / "report.html"),
    }
