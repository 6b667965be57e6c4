"""The LM stage's core entry points, called by the CLI (and the bench) with settings in hand.

`prepare_lm_run` and `prepare_qa_run` are pure of the workspace (chunks and a `neighbours` /
`retrieve` callable come in), so tests drive them with fakes; `train_lm`, `eval_lm` and
`generate_text` wire them to the workspace index.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from common.errors import InvalidInput, NotFound
from common.runs import prepared_under, stamp_run
from common.settings import LmConfig, Settings
from indexer.embedder import resolve_precision
from trainer.lm.answer_check import (HELDOUT_FILE, Answerer, call_words, compare_answers, model_answerer,
                                     pick_questions, read_heldout, write_heldout)
from trainer.lm.checkpoint import check_replaceable, load_model, record_metrics
from trainer.lm.data import (ChunkLike, DataSpec, LmDataset, Neighbours, build_dataset, concat_datasets, excluding,
                             heldout_doc_ids, searcher_neighbours)
from trainer.lm.model import preset_args
from trainer.lm.qa import QaExample, build_qa_dataset, load_qa_jsonl
from trainer.lm.qa_bounds import extract_from_context
from trainer.lm.qa_synthetic import cloze_questions, regex_spans, synthetic_options
from trainer.lm.run import launch_ddp, run_training, write_run
from trainer.lm.sampling import Generation, SamplingParams, generate
from trainer.lm.tokenizer import PROMPT_FORMAT, Tokenizer, train_tokenizer
from trainer.lm.train import TrainConfig, heldout_loss

log = logging.getLogger(__name__)


PRESET_STEPS = {"tiny": 200, "small": 600, "base": 1000}  # tiny: 80-100 s on the sample corpus, 2 cores (bench/lm.py)
# Peak learning rate about 1/width (dim 96, 256, 512), so a preset scales the step size with the model and
# never switches recipe: tiny's 3e-3 (bench/results/lm-retrieval-presets.json) and small's 1e-3 (every
# bench/results/lm-squad-*.json) are the rates measured; base's follows the rule.
PRESET_LR = {"tiny": 3e-3, "small": 1e-3, "base": 5e-4}
# Expected exposures of a neighbour passage's tokens over the run (lm.context_exposures; 0: uncapped). The small
# model memorises passages that prefix dozens of rows: capped at 4 its SciFact dev perplexity with context went
# from 162.4 to 146.2, while every cap tried on tiny (which cannot memorise them) cost it 2.6-39%
# (bench/results/lm-retrieval-{small,tiny}-dev-cr*-zen4.json). Base follows small (not measured).
PRESET_CONTEXT_EXPOSURES = {"tiny": 0.0, "small": 4.0, "base": 4.0}


def peak_lr(cfg: LmConfig) -> float:
    return cfg.lr or PRESET_LR[cfg.preset]


def total_steps(cfg: LmConfig) -> int:
    return cfg.steps or PRESET_STEPS[cfg.preset]


def train_config(cfg: LmConfig, lr_scale: float = 1.0, **over: Any) -> TrainConfig:
    """The run's TrainConfig; `lr_scale` scales the peak learning rate (QA tuning), and the floor with it."""
    lr = peak_lr(cfg) * lr_scale
    fields = dict(
        steps=total_steps(cfg), batch_size=cfg.batch_size, grad_accum=cfg.grad_accum, lr=lr,
        min_lr=lr / 10 if cfg.min_lr is None else min(cfg.min_lr, lr),
        warmup=cfg.warmup, weight_decay=cfg.weight_decay, grad_clip=cfg.grad_clip, context_mix=cfg.context_mix,
        context_loss=cfg.context_loss,
        eval_every=cfg.eval_every, eval_rows=cfg.eval_rows, ckpt_every=cfg.ckpt_every, seed=cfg.seed,
        bf16=resolve_precision("auto") == "bf16" if cfg.bf16 == "auto" else cfg.bf16,
    )
    return TrainConfig(**{**fields, **over}).validate()


def data_spec(cfg: LmConfig) -> DataSpec:
    return DataSpec(target_len=cfg.target_len, n_neighbours=cfg.n_neighbours, neighbour_len=cfg.neighbour_len,
                    context_exposures=PRESET_CONTEXT_EXPOSURES[cfg.preset] if cfg.context_exposures is None
                    else cfg.context_exposures, context_repeats=cfg.context_repeats)


def prepare_lm_run(
    run_dir: Path, out: Path, chunks: Sequence[ChunkLike], cfg: LmConfig, neighbours: Neighbours | None,
    tokenizer: Tokenizer | None = None, source: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Tokenizer (trained on the training documents only), held-out split by document, memmaps, run.json."""
    run_dir = Path(run_dir)
    check_replaceable(Path(out))
    if run_dir.exists():
        shutil.rmtree(run_dir)
    (run_dir / "data").mkdir(parents=True)
    if not chunks:
        raise InvalidInput("the workspace has no chunks; run `ragkiln ingest PATH` first")
    held = heldout_doc_ids((c.doc_id for c in chunks), cfg.heldout_fraction, cfg.seed)
    train_chunks = [c for c in chunks if c.doc_id not in held]
    held_chunks = [c for c in chunks if c.doc_id in held]
    tok = tokenizer or train_tokenizer((c.text for c in train_chunks), cfg.vocab_size)
    tok.save(run_dir / "tokenizer.model")
    spec = data_spec(cfg)
    if neighbours is not None and cfg.n_neighbours == 0:
        raise InvalidInput("retrieval training needs n_neighbours >= 1")
    train_nb = excluding(neighbours, held) if neighbours is not None else None  # no held-out text in training rows
    rows_trained = total_steps(cfg) * cfg.batch_size
    train_meta = build_dataset(train_chunks, tok, run_dir / "data" / "train", spec, train_nb, rows_trained)
    held_meta = build_dataset(held_chunks, tok, run_dir / "data" / "heldout", spec, neighbours)
    args = preset_args(cfg.preset, tok.vocab_size, max_seq_len=_seq_len(spec.max_row))
    theta = cfg.rope_theta or (1e6 if cfg.init == "induction" else args.rope_theta)
    args = replace(args, rope_theta=float(theta))
    meta = {
        "weight_init": cfg.init,
        "kind": "lm",
        "preset": cfg.preset,
        "retrieval": neighbours is not None,
        "retrieval_mode": cfg.retrieval_mode if neighbours is not None else None,
        # a plain model sized like its retrieval twin records no neighbours: it never read any
        "data_spec": {"target_len": spec.target_len, "n_neighbours": spec.n_neighbours if neighbours is not None else 0,
                      "neighbour_len": spec.neighbour_len,
                      "context_exposures": spec.context_exposures, "context_repeats": train_meta["context_repeats"]},
        "train_rows": train_meta["rows"], "train_target_tokens": train_meta["target_tokens"],
        "heldout_rows": held_meta["rows"], "heldout_target_tokens": held_meta["target_tokens"],
        "heldout_doc_ids": sorted(held), "heldout_fraction": cfg.heldout_fraction,
        "prompt_format": PROMPT_FORMAT, "source": source or {},
    }
    write_run(run_dir, out=out, model_args=args, cfg=train_config(cfg), meta=meta)
    return meta


def _seq_len(rows: int) -> int:
    """Context window: the longest training row rounded up to a multiple of 64, at least 256."""
    return max(256, -(-rows // 64) * 64)


def replay_chunks(chunks: Sequence[ChunkLike], tokenizer: Tokenizer, tokens: int, exclude: set[str],
                  seed: int) -> list[ChunkLike]:
    """Chunks, in a seeded random order and never from `exclude`d documents, until they hold `tokens` tokens."""
    if tokens <= 0:
        return []
    pool = [c for c in chunks if c.doc_id not in exclude]
    order = np.random.default_rng(seed).permutation(len(pool))
    out: list[ChunkLike] = []
    n = 0
    for i in order:
        if n >= tokens:
            break
        out.append(pool[i])
        n += len(tokenizer.encode(pool[i].text))
    return out


def prepare_qa_run(
    run_dir: Path, out: Path, init: Path, examples: Sequence[QaExample], cfg: LmConfig,
    retrieve: Callable[[str], list[str]] | None, heldout_fraction: float = 0.1,
    chunks: Sequence[ChunkLike] = (), neighbours: Callable[[int, str], Neighbours] | None = None,
) -> dict[str, Any]:
    """QA fine-tuning run from an existing LM checkpoint; held-out split by source document/question.

    With `cfg.qa_replay` > 0 the training rows also hold the base model's own kind of rows (`chunks` of
    documents neither model holds out, with `neighbours(k, mode)` as the base read them), `qa_replay` document
    tokens per answer token: scored on answers only, the model forgets the documents (the small preset on
    SciFact: held-out perplexity 63 before QA tuning, 9,000 after), and a model that cannot continue text
    fails the generation gate. The held-out rows stay QA only."""
    run_dir = Path(run_dir)
    check_replaceable(Path(out))
    model, tok, manifest = load_model(init)
    if run_dir.exists():
        shutil.rmtree(run_dir)
    (run_dir / "data").mkdir(parents=True)
    tok.save(run_dir / "tokenizer.model")
    keys = [e.doc_id or e.question for e in examples]
    held = heldout_doc_ids(keys, heldout_fraction, cfg.seed) if len(set(keys)) >= 2 else set()
    train_ex = [e for e, k in zip(examples, keys) if k not in held]
    held_ex = [e for e, k in zip(examples, keys) if k in held]
    plen = min(cfg.qa_passage_len, model.args.max_seq_len // 2)
    pack = {"pack": cfg.qa_pack, "max_row": model.args.max_seq_len, "focus": cfg.qa_context_sentences}
    data = run_dir / "data"
    tm = build_qa_dataset(train_ex, tok, data / "train", plen, retrieve, **pack)
    if held_ex:
        build_qa_dataset(held_ex, tok, data / "heldout", plen, retrieve, **pack)
        asked = pick_questions(held_ex, cfg.answer_check, cfg.seed, retrieve) if cfg.answer_check else []
        if asked:  # none without passages to read them from: the perplexity alone gates free text then
            write_heldout(run_dir / HELDOUT_FILE, asked)
    base = manifest.get("training", {})
    aside = set(base.get("heldout_doc_ids") or []) | held
    replay = replay_chunks(chunks, tok, round(cfg.qa_replay * tm["target_tokens"]), aside, cfg.seed)
    replay_rows = 0
    if replay:
        spec = DataSpec(**{k: v for k, v in (base.get("data_spec") or {}).items()
                           if k in ("target_len", "n_neighbours", "neighbour_len")})
        mode = base.get("retrieval_mode") or cfg.retrieval_mode
        nb = excluding(neighbours(spec.n_neighbours, mode), aside) if (neighbours and spec.n_neighbours) else None
        replay_rows = build_dataset(replay, tok, data / "replay", spec, nb)["rows"]
        (data / "train").rename(data / "qa")
        tm = {**tm, **concat_datasets([data / "qa", data / "replay"], data / "train", {"qa": True})}
        shutil.rmtree(data / "qa")
        shutil.rmtree(data / "replay")
    longest = tm["longest_row"]
    if longest > model.args.max_seq_len:
        raise InvalidInput(f"QA rows of {longest} tokens exceed the model context {model.args.max_seq_len}")
    meta = {**base, "qa": {"examples": len(train_ex), "heldout": len(held_ex),
            "rows": tm["rows"], "replay_rows": replay_rows, "replay": cfg.qa_replay, "passage_len": plen,
            "context_sentences": cfg.qa_context_sentences, "init": str(init)}, "prompt_format": PROMPT_FORMAT}
    write_run(run_dir, out=out, model_args=model.args, meta=meta, init=init,
              cfg=train_config(cfg, lr_scale=cfg.qa_lr_scale, context_mix=1.0, context_loss=False))
    return meta


def stored_entity_spans(store: Any) -> Callable[[Any], list[tuple[int, int, str]]]:
    """Answer candidates from the docstore's NER entities, falling back to phrases when a chunk has none."""

    def spans(chunk: Any) -> list[tuple[int, int, str]]:
        ents = store.entities_for([chunk.id]).get(chunk.id, [])
        return [(e.start, e.end, e.label) for e in ents] or regex_spans(chunk)

    return spans


def _workspace(settings: Settings) -> Any:
    from indexer.workspace import Workspace

    return Workspace.open(settings)


def train_lm(
    settings: Settings, *, retrieval: bool = True, out: Path | None = None, qa: Path | None = None,
    init: Path | None = None, resume: bool = False, tokenizer: Path | None = None, token: str | None = None,
    reader: Callable[[Any], Answerer] | None = None,
) -> dict[str, Any]:
    """`ragkiln train lm`: train on the workspace corpus (or fine-tune for QA with `qa`).

    `tokenizer` reuses another model's SentencePiece file, so two models' perplexities count the same tokens.
    `token` names the inputs (the build's stage hash): a run prepared under the same token continues from its
    last checkpoint instead of starting over, so an interrupted build loses at most `ckpt_every` steps.
    `reader` (reader.serve.qa_reader: the extractive reader, given the index's embedder) ends QA tuning with
    the held-out answer check (trainer/lm/answer_check.py); without it the perplexity alone gates free text."""
    cfg = settings.lm
    ws = _workspace(settings)
    name = f"lm-{cfg.preset}-{'qa' if qa else ('rag' if retrieval else 'plain')}"
    out = Path(out) if out else ws.models / name
    run_dir = ws.home / "runs" / name
    resume = resume or (token is not None and prepared_under(run_dir, token))
    if resume and (run_dir / "run.json").exists():
        log.info("resuming run %s", run_dir)
    elif qa is not None:
        base = Path(init) if init else ws.models / f"lm-{cfg.preset}-rag"
        if not (base / "manifest.json").exists():
            raise NotFound(f"no LM checkpoint at {base} to fine-tune; train one with `ragkiln train lm` or pass --init")
        searcher = ws.searcher() if cfg.qa_passages else None
        retrieve = (lambda q: [h.chunk.text for h in searcher.search(q, k=cfg.qa_passages, mode=cfg.retrieval_mode)]) \
            if searcher else None
        examples = load_qa_jsonl(qa)
        chunks = list(ws.store.iter_chunks()) if cfg.synthetic_per_chunk or cfg.qa_replay > 0 else []
        if cfg.synthetic_per_chunk:
            examples += cloze_questions(chunks, spans=stored_entity_spans(ws.store),
                                        per_chunk=cfg.synthetic_per_chunk, seed=cfg.seed, **synthetic_options(cfg))
        replay: dict[str, Any] = {}
        if cfg.qa_replay > 0:
            replay = {"chunks": chunks, "neighbours": lambda k, mode: searcher_neighbours(ws.searcher(), k, mode)}
        prepare_qa_run(run_dir, out, base, examples, cfg, retrieve, **replay)
    else:
        chunks = list(ws.store.iter_chunks())
        neighbours = searcher_neighbours(ws.searcher(), cfg.n_neighbours, cfg.retrieval_mode) if retrieval else None
        tok = Tokenizer.load(Path(tokenizer)) if tokenizer is not None else None
        prepare_lm_run(run_dir, out, chunks, cfg, neighbours, tokenizer=tok, source={"workspace": str(ws.home)})
    if token is not None and not resume:
        stamp_run(run_dir, token)
    summary = launch_ddp(run_dir, cfg.nproc, resume=resume) if cfg.nproc > 1 else run_training(run_dir, resume=resume)
    if reader is not None and (run_dir / HELDOUT_FILE).exists():
        summary["heldout_answers"] = check_answers(settings, Path(summary["out"]), run_dir / HELDOUT_FILE,
                                                   reader(ws.searcher().embedder))
    return summary


def check_answers(settings: Settings, model_dir: Path, heldout: Path, reader: Answerer) -> dict[str, Any] | None:
    """Ask the QA-tuned model and the extractive reader the run's held-out questions; record both scores in
    the model's manifest (`metrics.heldout_answers`), where the generation gate reads them."""
    examples = read_heldout(heldout)
    if not examples:
        return None
    model, tok, manifest = load_model(model_dir)
    qa = (manifest.get("training") or {}).get("qa") or {}
    cfg = settings.lm
    mine = model_answerer(model, tok, qa.get("passage_len", cfg.qa_passage_len),
                          qa.get("context_sentences", cfg.qa_context_sentences), settings.server.repeat_penalty)
    check = compare_answers(examples, mine, reader)
    (log.info if check.model_wins else log.warning)(
        "held-out answers (%d questions): the model's own token F1 %.3f, the extractive reader's %.3f: %s",
        check.questions, check.model_f1, check.reader_f1, call_words(check.model_wins))
    record_metrics(model_dir, heldout_answers=check.to_dict())
    return check.to_dict()


def perplexities(model: Any, ds: LmDataset, rows: int | None = None) -> dict[str, Any]:
    """Held-out perplexity of the same target tokens without and (when stored) with context."""
    no_ctx = heldout_loss(model, ds, with_context=False, rows=rows)
    out: dict[str, Any] = {"ppl_no_context": no_ctx["ppl"], "tokens": no_ctx["tokens"]}
    out["ppl_with_context"] = heldout_loss(model, ds, with_context=True, rows=rows)["ppl"] if ds.has_context else None
    return out


def eval_lm(settings: Settings, model_dir: Path, rows: int | None = None) -> dict[str, Any]:
    """`ragkiln eval lm --heldout`: perplexity on the model's held-out documents, without and with context."""
    model, tok, manifest = load_model(model_dir)
    with _heldout_rows(settings, model_dir, model, tok, manifest) as (ds, held_ids):
        result = perplexities(model, ds, rows)
    return {**result, "model": str(model_dir), "documents": len(held_ids)}


@contextmanager
def _heldout_rows(settings: Settings, model_dir: Path, model: Any, tok: Tokenizer, manifest: dict[str, Any]
                  ) -> Iterator[tuple[LmDataset, set[str]]]:
    """The loaded model's held-out documents as rows of its own data spec, with neighbours from the workspace
    index (a temporary dataset, removed on exit)."""
    training = manifest.get("training", {})
    held_ids = set(training.get("heldout_doc_ids") or [])
    if not held_ids:
        raise InvalidInput(f"{model_dir} records no held-out documents (was it trained by `ragkiln train lm`?)")
    ws = _workspace(settings)
    chunks = [c for c in ws.store.iter_chunks() if c.doc_id in held_ids]
    if not chunks:
        raise NotFound("none of the model's held-out documents is in this workspace")
    ds_spec = DataSpec(**training.get("data_spec", {}))
    if ds_spec.max_row > model.args.max_seq_len:
        ds_spec = replace(ds_spec, n_neighbours=0)
    mode = training.get("retrieval_mode") or settings.lm.retrieval_mode
    neighbours = searcher_neighbours(ws.searcher(), ds_spec.n_neighbours, mode) if ds_spec.n_neighbours else None
    tmp = ws.home / "runs" / f"eval-{Path(model_dir).name}"
    if tmp.exists():
        shutil.rmtree(tmp)
    build_dataset(chunks, tok, tmp, ds_spec, neighbours)
    try:
        yield LmDataset(tmp), held_ids
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def retrieval_payoff(settings: Settings, rag_dir: Path, plain_dir: Path) -> dict[str, Any]:
    """The retrieval-trained model's held-out perplexity with retrieved context, and the plain model's without,
    on the same target tokens (the retrieval model's held-out documents): the build's label-free LM check."""
    rag, tok, manifest = load_model(rag_dir)
    plain, plain_tok, _ = load_model(plain_dir)
    if tok.proto != plain_tok.proto:
        raise InvalidInput(f"{rag_dir} and {plain_dir} have different tokenizers: their perplexities do not compare")
    with _heldout_rows(settings, rag_dir, rag, tok, manifest) as (ds, held_ids):
        if not ds.has_context:
            return {"documents": len(held_ids), "ratio": None}
        with_ctx = heldout_loss(rag, ds, with_context=True)
        no_ctx = heldout_loss(plain, ds, with_context=False)
    return {"documents": len(held_ids), "tokens": with_ctx["tokens"], "retrieval_ppl_with_context": with_ctx["ppl"],
            "plain_ppl": no_ctx["ppl"], "ratio": with_ctx["ppl"] / no_ctx["ppl"]}


def generate_text(model_dir: Path, prompt: str, params: SamplingParams, extractive: bool = False) -> Generation:
    """`ragkiln generate`: sample from a checkpoint (plain text prompt, prefixed with <s>).

    `extractive` restricts the output to a span copied from the prompt's `<ctx> ... </ctx>` passages.
    """
    model, tok, _ = load_model(model_dir)
    ids = [tok.bos_id, *tok.encode(prompt)]
    return generate(model, tok, ids, extract_from_context(params, ids, tok) if extractive else params)
