"""Benchmark the compact Llama LM: throughput/MFU per preset, the perplexity 2x2, SQuAD answering.

    HF_HUB_OFFLINE=1 flock /tmp/ragkiln-heavy.lock nice -n 5 .venv/bin/python bench/lm.py \
        [--sections throughput,ppl,squad] [--ppl-steps 400] [--squad-preset small] ...

1. throughput: every preset trains a few steps on SciFact retrieval rows in a fresh subprocess
   (fp32 and bf16 autocast): tokens/s, MFU against this machine's fp32 matmul peak measured with
   torch in the same run, wall time, peak RSS.
2. ppl: SciFact (../shared/datasets/scifact), one chunk per abstract, 10% of documents held out.
   A plain model and a retrieval-trained model (BM25 neighbours from other documents, through the
   project's BM25 index) train with the same steps, batch and target rows (same target-token
   budget); each is scored on the same held-out target tokens without and with retrieved context.
3. squad: SQuAD v1.1 dev paragraphs are the corpus; an LM is pre-trained on them (retrieval rows),
   then fine-tuned on synthetic cloze questions generated from them (spaCy NER spans -> wh-word;
   up to 8 questions packed per row after their paragraph; SQuAD's own questions are never trained on). SQuAD questions are answered greedily with the gold
   paragraph as context and with the top BM25 paragraph: exact match and token F1. `--init
   induction` starts the LM from trainer/lm/init.py's copy circuit; `--synthetic-style`,
   `--synthetic-noise` and `--noun-phrases` vary the questions; `--squad-lm W` reuses the LM
   pre-trained by an earlier run (its bench/work/lm-NAME folder), so only QA tuning reruns.
4. squad_eval: re-scores the QA models of earlier squad runs (`--squad-eval W1,W2`) on
   `--squad-questions` questions, the first of which are the questions a smaller run used
   (`--squad-split rules`: questions outside the evaluated ones, for choosing decoding rules).
5. squad_synthetic: only the synthetic-question check of those models (held-out vs training
   passages; `--squad-synthetic-rows W` scores all of them on run W's rows).

Writes bench/results/lm.json and bench/results/lm.md.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, get_args

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from common.memory import peak_rss_mb  # noqa: E402
from common.settings import LmConfig  # noqa: E402
from indexer.bm25 import BM25Index, tokenize as bm25_words  # noqa: E402
from trainer.lm.checkpoint import load_model  # noqa: E402
from trainer.lm.data import LmDataset, searcher_neighbours  # noqa: E402
from trainer.lm.flops import measure_matmul_peak  # noqa: E402
from trainer.lm.model import Transformer, preset_args  # noqa: E402
from trainer.lm.qa import qa_prompt_ids  # noqa: E402
from trainer.lm.qa_bounds import answer_type, context_token_ids, extractive_params  # noqa: E402
from trainer.lm.qa_focus import focus_contexts  # noqa: E402
from trainer.lm.qa_metrics import exact_match, token_f1  # noqa: E402
from trainer.lm.qa_synthetic import Style, cloze_questions, synthetic_options  # noqa: E402
from trainer.lm.run import read_run, run_training  # noqa: E402
from trainer.lm.sampling import SamplingParams, generate  # noqa: E402
from trainer.lm.service import peak_lr, perplexities, prepare_lm_run, prepare_qa_run  # noqa: E402
from trainer.lm.tokenizer import Tokenizer  # noqa: E402
from trainer.lm.train import TrainConfig, train  # noqa: E402

DATA = ROOT.parent / "shared" / "datasets"
WORK = ROOT / "bench" / "work" / "lm"
OUT = ROOT / "bench" / "results"


@dataclass(frozen=True)
class Chunk:
    doc_id: str
    text: str
    id: int = 0


@dataclass(frozen=True)
class _Hit:
    chunk: Chunk
    score: float


class Bm25Searcher:
    """The project's BM25 index over bench chunks, with the Searcher.search signature the LM uses."""

    def __init__(self, chunks: list[Chunk]) -> None:
        self.chunks = chunks
        self.index = BM25Index.build([c.text for c in chunks], np.arange(len(chunks), dtype=np.int64), 1.5, 0.75,
                                     "english")

    def search(self, query: str, k: int = 10, mode: str = "bm25", allowed_ids: Any = None,
               exclude_doc_ids: set[str] | None = None) -> list[_Hit]:
        scores, ids = self.index.search(query, k + 8)
        hits = [_Hit(self.chunks[int(i)], float(s)) for i, s in zip(ids, scores)
                if self.chunks[int(i)].doc_id not in (exclude_doc_ids or set())]
        return hits[:k]


def scifact_chunks(limit: int | None = None) -> list[Chunk]:
    rows = [json.loads(line) for line in (DATA / "scifact" / "corpus.jsonl").open(encoding="utf-8") if line.strip()]
    rows = rows[:limit] if limit else rows
    return [Chunk(r["_id"], f"{r.get('title', '')}\n{r['text']}".strip(), i) for i, r in enumerate(rows) if r.get("text")]


def lm_cfg(**kw: Any) -> LmConfig:
    return LmConfig(**kw)


# ---------------------------------------------------------------------------------------------- 1


def throughput_child(run_dir: Path, preset: str, steps: int, bf16: bool, peak: float) -> dict[str, Any]:
    """Runs in a fresh process: trains `steps` steps of `preset` on the prepared rows."""
    spec = read_run(run_dir)
    tok = Tokenizer.load(run_dir / "tokenizer.model")
    args = preset_args(preset, tok.vocab_size, spec["model_args"]["max_seq_len"])
    torch.manual_seed(0)
    model = Transformer(args)
    cfg = TrainConfig(steps=steps, batch_size=16, warmup=2, eval_every=10**9, ckpt_every=10**9, bf16=bf16,
                      progress=False)
    tmp = run_dir.parent / f"tp-{preset}-{int(bf16)}"
    tmp.mkdir(parents=True, exist_ok=True)
    (tmp / "train.jsonl").unlink(missing_ok=True)
    t0 = time.perf_counter()
    s = train(model, tok, LmDataset(run_dir / "data" / "train"), None, cfg, tmp)
    wall = time.perf_counter() - t0
    rows = [json.loads(x) for x in (tmp / "train.jsonl").read_text().splitlines()]
    tps = s["tokens_per_s"]
    return {
        "preset": preset, "bf16": bf16, "n_params": model.num_params(), "steps": steps,
        "tokens_per_s": tps,
        "mfu": round(tps * model.flops_per_token(int(s["avg_row_tokens"]), s["scored_share"]) / peak, 4),
        "wall_s": round(wall, 1), "peak_rss_mb": peak_rss_mb(),
        "final_loss": rows[-2]["loss"] if len(rows) > 1 else None,
    }


def section_throughput(run_dir: Path, presets: list[str], steps: int, peak: float) -> list[dict[str, Any]]:
    out = []
    for preset in presets:
        for bf16 in (False, True):
            cmd = [sys.executable, __file__, "--_child", str(run_dir), preset, str(steps), str(int(bf16)), str(peak)]
            res = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, check=True)
            row = {**json.loads(res.stdout.strip().splitlines()[-1]), "fp32_peak_gflops": round(peak / 1e9, 1)}
            print(f"throughput {row}", file=sys.stderr)
            out.append(row)
    return out


# ---------------------------------------------------------------------------------------------- 2


def section_ppl(chunks: list[Chunk], searcher: Bm25Searcher, preset: str, steps: int, variants: list[str],
                base_cfg: dict[str, Any], eval_rows: int) -> dict[str, Any]:
    """Plain vs retrieval-trained, each without and with context, on the same held-out target tokens."""
    cfg = lm_cfg(preset=preset, steps=steps, eval_every=max(50, steps // 4), ckpt_every=steps, **base_cfg)
    neighbours = searcher_neighbours(searcher, cfg.n_neighbours, "bm25")
    rag_run = WORK / f"ppl-{preset}-rag"
    t0 = time.perf_counter()
    meta = prepare_lm_run(rag_run, WORK / f"model-{preset}-rag", chunks, cfg, neighbours)
    prep_s = time.perf_counter() - t0
    tok = Tokenizer.load(rag_run / "tokenizer.model")
    heldout = LmDataset(rag_run / "data" / "heldout")
    results: dict[str, Any] = {"preset": preset, "steps": steps, "batch_size": cfg.batch_size,
                               "train_target_tokens": meta["train_target_tokens"],
                               "heldout_target_tokens": meta["heldout_target_tokens"],
                               "data_spec": meta["data_spec"], "prepare_s": round(prep_s, 1), "models": {}}
    runs = {"plain": (rag_run.with_name(f"ppl-{preset}-plain"), None, cfg), "rag": (rag_run, neighbours, cfg)}
    for v in variants:  # e.g. "mix0.5": retrieval rows, half of them trained without their context
        if v.startswith("mix"):
            runs[v] = (rag_run.with_name(f"ppl-{preset}-{v}"), neighbours, cfg.model_copy(update={"context_mix": float(v[3:])}))
    for name, (run, nb, c) in runs.items():
        if run != rag_run:
            prepare_lm_run(run, WORK / f"model-{preset}-{name}", chunks, c, nb, tokenizer=tok)
        t0 = time.perf_counter()
        summary = run_training(run)
        model, _, _ = load_model(Path(read_run(run)["out"]))
        ppl = perplexities(model, heldout, rows=eval_rows)
        results["models"][name] = {**ppl, "train_s": round(time.perf_counter() - t0, 1),
                                   "tokens_per_s": summary.get("tokens_per_s"), "mfu": summary.get("mfu")}
        print(f"ppl {name}: {results['models'][name]}", file=sys.stderr)
    plain = results["models"]["plain"]["ppl_no_context"]
    for name, r in results["models"].items():
        if name != "plain":
            r["ratio_with_context_vs_plain_no_context"] = round(r["ppl_with_context"] / plain, 4)
    return results


# ---------------------------------------------------------------------------------------------- 3


def squad_data() -> tuple[list[Chunk], list[dict[str, Any]]]:
    d = json.loads((DATA / "squad-v1.1" / "dev-v1.1.json").read_text(encoding="utf-8"))
    chunks, questions = [], []
    for art in d["data"]:
        for j, p in enumerate(art["paragraphs"]):
            c = Chunk(f"{art['title']}#{j}", p["context"], len(chunks))
            chunks.append(c)
            for qa in p["qas"]:
                questions.append({"question": qa["question"], "answers": [a["text"] for a in qa["answers"]],
                                  "doc_id": c.doc_id, "context": p["context"]})
    return chunks, questions


def ner_spans(chunks: list[Chunk], noun_phrases: str = "") -> dict[str, list[tuple[int, int, str]]]:
    """Entity spans from the project's spaCy enricher (en_core_web_sm), plus its parser's noun chunks
    that overlap no entity when asked ("plain", or "heads": asked for by their head noun); empty when
    the pipeline is unavailable."""
    try:
        from common.settings import NerConfig
        from ner.enrich import make_enricher

        enricher = make_enricher(NerConfig())
    except Exception as e:  # the bench still runs with regex spans
        print(f"NER unavailable ({e}); using regex spans", file=sys.stderr)
        return {}
    if enricher is None:
        return {}
    ents = enricher([c.text for c in chunks])
    out = {c.doc_id: [(e.start, e.end, e.label) for e in es] for c, es in zip(chunks, ents)}
    if noun_phrases:
        import spacy

        from ner.pipeline import AUTO, resolve_model_name
        from trainer.lm.qa_synthetic import noun_phrase_spans

        heads = noun_phrases == "heads"  # the head noun's lemma needs the lemmatizer
        parser = spacy.load(resolve_model_name(AUTO), exclude=["ner"] if heads else ["ner", "lemmatizer"])
        for c, doc in zip(chunks, parser.pipe((c.text for c in chunks), batch_size=64)):  # NER pipeline: no parser
            taken = out[c.doc_id]
            out[c.doc_id] = taken + [sp for sp in noun_phrase_spans(doc, heads)
                                     if not any(sp[0] < e and s < sp[1] for s, e, _ in taken)]
    return out


EVAL_RESERVE = 2000  # the first questions of the seeded sample: the evaluated ones, never used to choose a rule


def squad_sample(questions: list[dict[str, Any]], n: int, split: str = "eval") -> list[dict[str, Any]]:
    """Seeded sample; for n up to a few thousand a larger n extends a smaller one's questions (Python's
    set-based selection draws the same first picks), so 600 questions include the earlier 150. The
    "rules" split draws from the questions outside the first EVAL_RESERVE, for choosing decoding rules
    without looking at the questions they are then scored on."""
    if split == "eval":
        return random.Random(0).sample(questions, min(n, len(questions)))
    reserved = {id(q) for q in random.Random(0).sample(questions, EVAL_RESERVE)}
    rest = [q for q in questions if id(q) not in reserved]
    return random.Random(1).sample(rest, min(n, len(rest)))


SQUAD_SETTINGS = ("gold", "retrieved", "gold_extractive", "retrieved_extractive", "gold_no_echo", "retrieved_no_echo",
                  "gold_word_edges", "retrieved_word_edges", "gold_not_asked", "retrieved_not_asked",
                  "gold_served", "retrieved_served", "gold_typed", "retrieved_typed", "gold_best", "retrieved_best")


def squad_scores(model: Any, tok: Any, plen: int, searcher: Bm25Searcher, sample: list[dict[str, Any]],
                 focus: int = 0, settings: Sequence[str] = SQUAD_SETTINGS
                 ) -> tuple[dict[str, dict[str, float]], list[dict[str, str]]]:
    """EM/F1 (0-100) with the gold paragraph and the top BM25 one, free and restricted to context spans;
    each passage cut to its `focus` sentences nearest the question when > 0 (`focus_passage`), and
    `answer_in_context`: the share of prompts whose passage (after that cut) holds a gold answer."""
    scores: dict[str, dict[str, float]] = {}
    examples = []
    for setting in settings:
        em = f1 = 0.0
        hit = present = opens = 0
        by_type: dict[str, list[float]] = {}
        for q in sample:
            if setting.startswith("gold"):
                ctx = [q["context"]]
            else:
                top = searcher.search(q["question"], k=1)
                ctx = [top[0].chunk.text] if top else []
                hit += int(bool(top) and top[0].chunk.doc_id == q["doc_id"])
            ctx = focus_contexts(ctx, q["question"], focus)
            present += int(any(a in c for c in ctx for a in q["answers"]))
            ids = qa_prompt_ids(tok, ctx, q["question"], plen)
            params = SamplingParams(max_tokens=24, temperature=0.0, stop=("\n",))
            if setting.endswith("extractive"):  # a span of the passages (the earlier runs' rule)
                params = replace(params, extract_from=context_token_ids(ids, tok))
            elif setting.endswith("no_echo"):  # ... and not only the question's words (the rule served until now)
                params = extractive_params(params, ids, tok, bounds=False)
            elif setting.endswith("word_edges"):  # ... starting and stopping at word edges
                params = extractive_params(params, ids, tok, opening="any")
            elif setting.endswith("not_asked"):  # ... never opening on a question word
                params = extractive_params(params, ids, tok, opening="not_asked")
            elif setting.endswith("served"):  # ... nor on a stop word
                params = extractive_params(params, ids, tok, opening="content")
                opens += int(any(a and not _opens_on_question(a, q["question"]) for a in q["answers"]))
            elif setting.endswith("typed"):  # ... on a number or a name when the question asks for one
                params = extractive_params(params, ids, tok, opening="typed")
            elif setting.endswith("best"):  # ... scoring whole spans instead of greedy decoding
                params = replace(extractive_params(params, ids, tok, opening="typed"), extract_search="best")
            g = generate(model, tok, ids, params)
            em += exact_match(g.text, q["answers"])
            f1_q = token_f1(g.text, q["answers"])
            f1 += f1_q
            by_type.setdefault(answer_type(q["question"]) or "untyped", []).append(f1_q)
            if setting == "gold" and len(examples) < 8:
                examples.append({"question": q["question"], "gold": q["answers"][0], "predicted": g.text.strip()})
        n = max(1, len(sample))
        scores[setting] = {"exact_match": round(100 * em / n, 2), "f1": round(100 * f1 / n, 2),
                           "answer_in_context": round(present / n, 4)}
        if setting.endswith("served"):  # how often a gold answer's first word is not one the question has
            scores[setting]["answer_opening_allowed"] = round(opens / n, 4)
        if setting.endswith(("served", "typed", "best")):  # F1 per answer_type of the questions
            scores[setting]["f1_by_type"] = {k: {"questions": len(v), "f1": round(100 * sum(v) / len(v), 2)}
                                             for k, v in sorted(by_type.items())}
        if setting == "retrieved":
            scores[setting]["retrieval_top1_gold"] = round(hit / n, 4)
    return scores, examples


def _opens_on_question(answer: str, question: str) -> bool:
    """Whether `answer`'s first word is a (BM25-stemmed) question word: what answer_bounds refuses."""
    first = answer.split()[:1]
    return bool(first and set(bm25_words(first[0])) & set(bm25_words(question)))


def synthetic_scores(model: Any, tok: Any, qa_run: Path, n: int = 200) -> dict[str, dict[str, float]]:
    """EM/F1 (the served extractive rule) on the first synthetic question of `n` held-out and `n`
    training rows of a QA run: a model that learned to find and copy scores about the same on both;
    one that memorised its training passages scores far lower on the held-out ones."""
    out: dict[str, dict[str, float]] = {}
    for split in ("heldout", "train"):
        data = LmDataset(qa_run / "data" / split)
        rows = np.random.default_rng(0).choice(len(data), min(n, len(data)), replace=False)
        em = f1 = 0.0
        for r in rows:
            ids = [tok.bos_id, *(int(x) for x in data.prefix[r] if x >= 0)]
            target = [int(x) for x in data.targets[r] if x >= 0]
            gold = tok.decode(target[: target.index(tok.eos_id)])
            g = generate(model, tok, ids, extractive_params(SamplingParams(max_tokens=24, temperature=0.0), ids, tok))
            em, f1 = em + exact_match(g.text, [gold]), f1 + token_f1(g.text, [gold])
        out[split] = {"questions": len(rows), "exact_match": round(100 * em / max(1, len(rows)), 2),
                      "f1": round(100 * f1 / max(1, len(rows)), 2)}
    return out


def section_squad_eval(preset: str, work_dirs: list[Path], n_questions: int, focus: int | None = None,
                       split: str = "eval", settings: Sequence[str] = SQUAD_SETTINGS) -> list[dict[str, Any]]:
    """Re-score the QA models of earlier squad runs (their bench/work/lm-NAME folders) on more questions;
    `focus` overrides the sentences per passage the model was tuned with (its manifest's)."""
    chunks, questions = squad_data()
    searcher = Bm25Searcher(chunks)
    sample = squad_sample(questions, n_questions, split)
    rows = []
    for d in work_dirs:
        model, tok, _ = load_model(d / f"squad-model-{preset}-qa")
        t0 = time.perf_counter()
        qa = read_run(d / f"squad-{preset}-qa")["meta"]["qa"]
        own = int(qa.get("context_sentences", 0))
        scores, _ = squad_scores(model, tok, qa["passage_len"], searcher, sample, own if focus is None else focus,
                                 settings)
        rows.append({"work": str(d), "questions": len(sample), "split": split,
                     "context_sentences": own if focus is None else focus,
                     "tuned_context_sentences": own, "scores": scores,
                     "answer_s": round(time.perf_counter() - t0, 1),
                     "synthetic_extractive": synthetic_scores(model, tok, d / f"squad-{preset}-qa")})
        print(json.dumps(rows[-1]), file=sys.stderr)
    return rows


def section_squad_synthetic(preset: str, work_dirs: list[Path], data_dir: Path | None) -> list[dict[str, Any]]:
    """Only `synthetic_scores` for the QA models of earlier squad runs (seconds, not minutes): on each
    run's own rows, or on `data_dir`'s rows for all, so models whose questions differ meet the same ones."""
    rows = []
    for d in work_dirs:
        model, tok, _ = load_model(d / f"squad-model-{preset}-qa")
        rows_of = (data_dir or d) / f"squad-{preset}-qa"
        rows.append({"work": str(d), "rows_of": str(rows_of),
                     "synthetic_extractive": synthetic_scores(model, tok, rows_of)})
        print(json.dumps(rows[-1]), file=sys.stderr)
    return rows


def section_squad(preset: str, lm_steps: int, qa_steps: int, n_questions: int, per_chunk: int, per_sentence: int,
                  base_cfg: dict[str, Any], reuse_lm: Path | None = None, noun_phrases: str = "",
                  qa_lr: float | None = None, qa_init: Path | None = None, qa_batch: int | None = None,
                  qa_accum: int = 1, settings: Sequence[str] = SQUAD_SETTINGS) -> dict[str, Any]:
    from trainer.lm.qa_synthetic import regex_spans

    chunks, questions = squad_data()
    searcher = Bm25Searcher(chunks)
    cfg = lm_cfg(preset=preset, steps=lm_steps, eval_every=max(50, lm_steps // 4), ckpt_every=lm_steps, **base_cfg)
    lm_home = reuse_lm or WORK
    lm_run, lm_out = lm_home / f"squad-{preset}-lm", lm_home / f"squad-model-{preset}-lm"
    t0 = time.perf_counter()
    if reuse_lm:  # the pre-trained LM of an earlier run with the same LM settings: only QA tuning reruns
        manifest = json.loads((lm_out / "manifest.json").read_text(encoding="utf-8"))
        lm_summary, lm_steps = manifest.get("metrics", {}), int(manifest["step"])
        cfg = cfg.model_copy(update={"init": read_run(lm_run)["meta"].get("weight_init", "normal")})
    else:
        prepare_lm_run(lm_run, lm_out, chunks, cfg, searcher_neighbours(searcher, cfg.n_neighbours, "bm25"))
        lm_summary = run_training(lm_run)
    lm_s = time.perf_counter() - t0
    lm_theta = read_run(lm_run)["model_args"]["rope_theta"]
    spans = ner_spans(chunks, noun_phrases)
    synth = cloze_questions(chunks, spans=lambda c: spans.get(c.doc_id) or regex_spans(c), per_chunk=per_chunk, seed=0,
                            per_sentence=per_sentence, **synthetic_options(cfg))
    qa_cfg = cfg.model_copy(update={"steps": qa_steps, "lr": qa_lr or peak_lr(cfg) / 2, "warmup": 20, "eval_every": max(50, qa_steps // 4),
                                    "ckpt_every": qa_steps, "context_mix": 1.0, "batch_size": qa_batch or cfg.batch_size,
                                    "grad_accum": qa_accum,
                                    # the recorded SQuAD figures' recipe: its own QA lr, answers only
                                    "qa_lr_scale": 1.0, "qa_replay": 0.0})
    qa_run, qa_out = WORK / f"squad-{preset}-qa", WORK / f"squad-model-{preset}-qa"
    t0 = time.perf_counter()
    qa_data = prepare_qa_run(qa_run, qa_out, qa_init or lm_out, synth, qa_cfg, retrieve=None)
    qa_summary = run_training(qa_run)
    qa_s = time.perf_counter() - t0
    model, tok, _ = load_model(qa_out)
    t0 = time.perf_counter()
    scores, examples = squad_scores(model, tok, read_run(qa_run)["meta"]["qa"]["passage_len"], searcher,
                                    squad_sample(questions, n_questions), qa_cfg.qa_context_sentences, settings)
    return {
        "preset": preset, "paragraphs": len(chunks), "synthetic_questions": len(synth),
        "synthetic_examples": [{"question": s.question, "answer": s.answer} for s in synth[:5]],
        "per_chunk": per_chunk, "per_sentence": per_sentence, "qa_pack": qa_cfg.qa_pack,
        "synthetic_style": cfg.synthetic_style, "synthetic_noise": cfg.synthetic_noise, "synthetic_window": cfg.synthetic_window,
        "synthetic_counterfactual": cfg.synthetic_counterfactual, "synthetic_lookup": cfg.synthetic_lookup,
        "qa_context_sentences": qa_cfg.qa_context_sentences, "qa_batch": qa_cfg.batch_size, "qa_grad_accum": qa_accum,
        "noun_phrases": noun_phrases, "weight_init": cfg.init, "rope_theta": lm_theta, "lr": peak_lr(cfg), "qa_lr": qa_cfg.lr,
        "qa_rows": qa_data["qa"]["rows"],
        "qa_train_questions": qa_data["qa"]["examples"],
        "lm_reused_from": str(reuse_lm) if reuse_lm else None, "qa_init": str(qa_init) if qa_init else None,
        "lm_steps": lm_steps, "qa_steps": qa_steps, "questions_evaluated": min(n_questions, len(questions)),
        "lm_train_s": round(lm_s, 1), "qa_train_s": round(qa_s, 1), "answer_s": round(time.perf_counter() - t0, 1),
        "lm_heldout_ppl": lm_summary.get("heldout_ppl"), "qa_heldout_loss": qa_summary.get("heldout_loss"),
        "scores": scores, "examples": examples, "synthetic_extractive": synthetic_scores(model, tok, qa_run),
    }


# ---------------------------------------------------------------------------------------------- 4


def section_sample(workspace: Path) -> dict[str, Any]:
    """`train lm --preset tiny` (default steps) on the bundled samples/ corpus, ingested here (no NER) if needed."""
    from common.settings import load_settings
    from indexer.service import ingest
    from indexer.workspace import Workspace
    from trainer.lm.service import train_lm

    settings = load_settings({"home": str(workspace), "lm": {"preset": "tiny"}, "ner": {"enabled": False}})
    t0 = time.perf_counter()
    if Workspace.open(settings).active_index_name() is None:
        ingest(settings, [ROOT / "samples"])
    ingest_s = time.perf_counter() - t0
    chunks = sum(1 for _ in Workspace.open(settings).store.iter_chunks())
    t0 = time.perf_counter()
    r = train_lm(settings, retrieval=True, out=WORK / "sample-tiny")
    return {"chunks": chunks, "ingest_s": round(ingest_s, 1), "wall_s": round(time.perf_counter() - t0, 1),
            "steps": r["steps"], "heldout_ppl": r.get("heldout_ppl"), "tokens_per_s": r.get("tokens_per_s"),
            "mfu": r.get("mfu")}


# ---------------------------------------------------------------------------------------------- main


def render_md(r: dict[str, Any]) -> str:
    cmds = r.get("commands") or {}
    lines = ["# LM benchmark", "", "Commands:", ""] + [f"- {k}: `{v}`" for k, v in cmds.items()] + ["", f"Machine: {r['machine']['cpus']} CPUs, torch {r['machine']['torch']}, fp32 matmul peak "
             f"{r['machine']['fp32_peak_gflops']} GFLOP/s, bf16 {r['machine']['bf16_peak_gflops']} GFLOP/s "
             "(1024^3 matmuls, measured by the latest run; MFU rows use the peak measured in their own run).", ""]
    if r.get("throughput"):
        lines += ["## Training throughput (SciFact retrieval rows, batch 16)", "",
                  "| preset | params | autocast | tokens/s | MFU (fp32 peak) | wall s | peak RSS MB |",
                  "|---|---:|---|---:|---:|---:|---:|"]
        for t in r["throughput"]:
            lines.append(f"| {t['preset']} | {t['n_params']:,} | {'bf16' if t['bf16'] else 'fp32'} | "
                         f"{t['tokens_per_s']:.0f} | {100 * t['mfu']:.1f}% | {t['wall_s']} | {t['peak_rss_mb']} |")
        lines.append("")
    if r.get("ppl"):
        p = r["ppl"]
        lines += [f"## Held-out perplexity, SciFact ({p['preset']}, {p['steps']} steps x {p['batch_size']} rows, "
                  f"{next(iter(p['models'].values()))['tokens']:,} held-out target tokens scored)", "",
                  "| model | no context | with retrieved context | with-context / plain-no-context |", "|---|---:|---:|---:|"]
        for name, m in p["models"].items():
            lines.append(f"| {name} | {m['ppl_no_context']:.2f} | {m['ppl_with_context']:.2f} | "
                         f"{m.get('ratio_with_context_vs_plain_no_context', '')} |")
        lines.append("")
    if r.get("squad"):
        s = r["squad"]
        lines += [f"## SQuAD v1.1 dev ({s['preset']}, {s['questions_evaluated']} questions)", "",
                  "| context | EM | F1 |", "|---|---:|---:|"]
        for k, v in s["scores"].items():
            lines.append(f"| {k} | {v['exact_match']} | {v['f1']} |")
        for k, v in s.get("synthetic_extractive", {}).items():
            lines.append(f"| synthetic questions, {k} passages (extractive, {v['questions']}) | {v['exact_match']} | {v['f1']} |")
        lines.append("")
    if r.get("squad_synthetic"):
        lines += ["## Synthetic questions (extractive, first question of held-out / training rows)", "",
                  "| model | rows of | held-out F1 | training F1 |", "|---|---|---:|---:|"]
        for m in r["squad_synthetic"]:
            se = m["synthetic_extractive"]
            lines.append(f"| {m['work']} | {m['rows_of']} | {se['heldout']['f1']} | {se['train']['f1']} |")
        lines.append("")
    if r.get("sample_tiny"):
        t = r["sample_tiny"]
        lines += [f"## tiny preset on the bundled samples/ corpus ({t['chunks']} chunks)", "",
                  f"`train lm --preset tiny`: {t['steps']} steps in {t['wall_s']} s (tokenizer, retrieval, data, "
                  f"training, checkpoint), held-out ppl {t['heldout_ppl']:.1f}, {t['tokens_per_s']:.0f} tokens/s.", ""]
    return "\n".join(lines) + "\n"


# Environment that changes what a run measures: settings, and the instruction sets torch, MKL and oneDNN
# may use (set to emulate an AVX2-only CPU on a newer one).
RECORDED_ENV = ("RAGKILN_", "ATEN_CPU_CAPABILITY", "MKL_ENABLE_INSTRUCTIONS", "ONEDNN_MAX_CPU_ISA", "OMP_NUM_THREADS")


def command_line() -> str:
    env = [f"{k}={v}" for k, v in sorted(os.environ.items()) if k.startswith(RECORDED_ENV)]
    return " ".join(["HF_HUB_OFFLINE=1", *env, ".venv/bin/python bench/lm.py", *sys.argv[1:]])


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--_child":
        run_dir, preset, steps, bf16, peak = sys.argv[2:7]
        print(json.dumps(throughput_child(Path(run_dir), preset, int(steps), bf16 == "1", float(peak))))
        return
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sections", default="throughput,ppl,squad")
    ap.add_argument("--presets", default="tiny,small,base")
    ap.add_argument("--throughput-steps", type=int, default=6)
    ap.add_argument("--ppl-preset", default="tiny")
    ap.add_argument("--ppl-steps", type=int, default=400)
    ap.add_argument("--ppl-eval-rows", type=int, default=400, help="held-out rows scored (same rows for all models)")
    ap.add_argument("--ppl-variants", default="", help="comma list, e.g. mix0.5")
    ap.add_argument("--n-neighbours", type=int, default=2)
    ap.add_argument("--neighbour-len", type=int, default=96)
    ap.add_argument("--vocab", type=int, default=4000)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--init", choices=["normal", "induction"], default="normal", help="LM weight init (lm.init)")
    ap.add_argument("--rope-theta", type=float, default=None, help="RoPE base (lm.rope_theta)")
    ap.add_argument("--squad-preset", default="tiny")
    ap.add_argument("--squad-lm-steps", type=int, default=300)
    ap.add_argument("--squad-qa-steps", type=int, default=300)
    ap.add_argument("--squad-lm", type=Path, default=None,
                    help="work folder of an earlier run (bench/work/lm-NAME) whose pre-trained LM to reuse")
    ap.add_argument("--squad-eval", default="", help="squad_eval section: comma list of bench/work/lm-NAME folders")
    ap.add_argument("--squad-questions", type=int, default=200)
    ap.add_argument("--squad-synthetic-rows", type=Path, default=None,
                    help="squad_synthetic section: score every model on this run's (bench/work/lm-NAME) rows")
    ap.add_argument("--synthetic-per-chunk", type=int, default=12)
    ap.add_argument("--synthetic-per-sentence", type=int, default=3)
    ap.add_argument("--synthetic-style", choices=get_args(Style), default="inplace",
                    help="lm.synthetic_style (the bench keeps the earlier runs' 'inplace'; the product default is 'fronted')")
    ap.add_argument("--synthetic-noise", type=float, default=0.0, help="lm.synthetic_noise")
    ap.add_argument("--synthetic-window", type=int, default=0, help="lm.synthetic_window")
    ap.add_argument("--synthetic-counterfactual", type=int, default=0, help="lm.synthetic_counterfactual")
    ap.add_argument("--synthetic-lookup", type=int, default=0, help="lm.synthetic_lookup")
    ap.add_argument("--noun-phrases", nargs="?", const="plain", default="", choices=["plain", "heads"],
                    help="noun chunks as answers besides entities; 'heads': asked for by their head noun")
    ap.add_argument("--qa-lr", type=float, default=None, help="QA tuning peak lr (default: half of --lr)")
    ap.add_argument("--qa-pack", type=int, default=8, help="QA pairs per training row (1: unpacked)")
    ap.add_argument("--qa-context-sentences", type=int, default=0,
                    help="lm.qa_context_sentences: sentences kept of each QA passage (0: whole passages)")
    ap.add_argument("--qa-batch", type=int, default=None, help="QA tuning rows per step (default 16, as the LM)")
    ap.add_argument("--qa-grad-accum", type=int, default=1,
                    help="micro-batches per QA step (rows grouped by length: less padding, same gradient)")
    ap.add_argument("--squad-eval-focus", type=int, default=None,
                    help="squad_eval section: sentences per passage at answering time (default: what each model was tuned with)")
    ap.add_argument("--squad-settings", default=",".join(SQUAD_SETTINGS),
                    help="squad and squad_eval sections: comma list of the decoding settings to score (default: all)")
    ap.add_argument("--squad-split", choices=("eval", "rules"), default="eval",
                    help="squad_eval section: the evaluated questions, or questions outside them for choosing rules")
    ap.add_argument("--squad-qa-init", type=Path, default=None,
                    help="squad section: tune from this QA model (e.g. bench/work/lm-NAME/squad-model-small-qa), "
                         "not the LM: a second stage of a curriculum")
    ap.add_argument("--sample-workspace", type=Path, default=None,
                    help="workspace for the samples/ corpus (ingested when empty): times `train lm --preset tiny`")
    ap.add_argument("--out", type=Path, default=OUT / "lm.json")
    a = ap.parse_args()
    settings = [v for v in a.squad_settings.split(",") if v]
    unknown = set(settings) - set(SQUAD_SETTINGS)
    if unknown:
        ap.error(f"--squad-settings: unknown {', '.join(sorted(unknown))}; choose from {', '.join(SQUAD_SETTINGS)}")
    global WORK
    WORK = ROOT / "bench" / "work" / f"lm-{a.out.stem}"  # concurrent runs with other --out never collide
    sections = set(a.sections.split(","))
    WORK.mkdir(parents=True, exist_ok=True)
    prev = json.loads(a.out.read_text()) if a.out.exists() else {}
    peak = measure_matmul_peak(1024, 3.0)
    result: dict[str, Any] = {
        **prev,
        "command": command_line(),
        "machine": {"cpus": os.cpu_count(), "torch": torch.__version__, "threads": torch.get_num_threads(),
                    "cpu_capability": torch.backends.cpu.get_cpu_capability(),
                    "fp32_peak_gflops": round(peak / 1e9, 1),
                    "bf16_peak_gflops": round(measure_matmul_peak(1024, 2.0, torch.bfloat16) / 1e9, 1)},
        "targets": {"squad_gold_f1_small": ">= 30", "squad_retrieved_f1_small": ">= 20",
                    "rag_with_context_vs_plain_no_context": "<= 0.90", "mfu": ">= 0.30", "tiny_sample_corpus_s": "<= 180"},
    }
    base_cfg = {"vocab_size": a.vocab, "n_neighbours": a.n_neighbours, "neighbour_len": a.neighbour_len,
                "batch_size": 16, "lr": a.lr, "min_lr": a.lr / 10, "warmup": 30, "eval_rows": 128,
                "init": a.init, "rope_theta": a.rope_theta}
    a.out.parent.mkdir(parents=True, exist_ok=True)

    # Sections from earlier runs are kept in the file, each with the command that produced it.
    commands = result.setdefault("commands", {})
    for sec in sections:
        commands["sample_tiny" if sec == "sample" else sec] = result["command"]

    def save() -> None:  # after every section, so a cut-short run still leaves its figures
        a.out.write_text(json.dumps(result, indent=2) + "\n")
        a.out.with_suffix(".md").write_text(render_md(result))

    chunks = scifact_chunks() if sections & {"throughput", "ppl"} else []
    searcher = Bm25Searcher(chunks) if chunks else None
    if "sample" in sections and a.sample_workspace:
        result["sample_tiny"] = section_sample(a.sample_workspace)
        print(f"sample {result['sample_tiny']}", file=sys.stderr)
        save()
    if "throughput" in sections:
        run = WORK / "throughput-run"
        cfg = lm_cfg(preset="tiny", steps=10, **base_cfg)
        prepare_lm_run(run, WORK / "throughput-model", chunks[:600], cfg, searcher_neighbours(searcher, cfg.n_neighbours, "bm25"))
        result["throughput"] = section_throughput(run, a.presets.split(","), a.throughput_steps, peak)
        save()
    if "ppl" in sections:
        result["ppl"] = section_ppl(chunks, searcher, a.ppl_preset, a.ppl_steps,
                                    [v for v in a.ppl_variants.split(",") if v], base_cfg, a.ppl_eval_rows)
        save()
    if "squad_eval" in sections:
        result["squad_eval"] = section_squad_eval(a.squad_preset, [Path(p) for p in a.squad_eval.split(",")],
                                                  a.squad_questions, a.squad_eval_focus, a.squad_split,
                                                  settings)
        save()
    if "squad_synthetic" in sections:
        result["squad_synthetic"] = section_squad_synthetic(
            a.squad_preset, [Path(p) for p in a.squad_eval.split(",")], a.squad_synthetic_rows)
        save()
    if "squad" in sections:
        sq_cfg = {**base_cfg, "neighbour_len": 150, "qa_passage_len": 300, "qa_pack": a.qa_pack,
                  "synthetic_style": a.synthetic_style, "synthetic_noise": a.synthetic_noise,
                  "synthetic_window": a.synthetic_window, "synthetic_counterfactual": a.synthetic_counterfactual,
                  "synthetic_lookup": a.synthetic_lookup, "qa_context_sentences": a.qa_context_sentences}
        result["squad"] = section_squad(a.squad_preset, a.squad_lm_steps, a.squad_qa_steps, a.squad_questions,
                                        a.synthetic_per_chunk, a.synthetic_per_sentence, sq_cfg, a.squad_lm,
                                        a.noun_phrases, a.qa_lr, a.squad_qa_init, a.qa_batch, a.qa_grad_accum,
                                        settings)
    save()
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
