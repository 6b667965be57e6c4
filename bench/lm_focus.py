"""Could the answering step find the answer's sentence better? Two studies behind the SQuAD figures of bench/lm.py.

  focus:  no model. The share of SQuAD dev questions whose gold paragraph's top sentence holds a gold
          answer (`answer_in_context` of one focused sentence), for the served lexical scorer
          (`trainer.lm.qa.sentence_scores`) and for it plus corpus-wide IDF or plus the cosine of the
          pretrained all-MiniLM-L6-v2 (the embedder ragkiln starts from).
  rerank: a tuned QA model (`--model W`, a bench/work/lm-NAME folder of bench/lm.py). Each question is
          answered from each of its passage's two best sentences alone, and the answer kept by the
          sentence score plus lambda times the model's log P(</s>) after its answer (how sure the model
          is that the span is complete), against the top sentence alone and the better of the two.
          The questions are scored in two halves, so a lambda chosen on one is checked on the other.
  span:   the same model, its passages focused as it was tuned (as served). Greedy extractive decoding against span
          search (`SamplingParams.extract_search = "best"`: every span the typed bounds allow, scored
          by log P(span, then </s>)), with the score divided by (tokens + 1) ** alpha for a few alphas,
          and the best candidate's F1 (what a perfect chooser would get). Two halves again. (A bonus
          for lower-case openings of untyped questions, measured at commit 615c60a, is gone: it did not
          help on both halves; bench/results/lm-span-bonus.json.)
  span_gguf: the served back end (`--gguf FILE`, the --model's QA model exported) answers
          `--gguf-questions` rule questions greedily and by span search (the default alpha): F1, how
          often it copies the torch model's span, and milliseconds per answer.

All use the "rules" split of bench/lm.py (never the evaluated questions). Writes bench/results/lm-focus.json.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/lm_focus.py --studies focus,rerank \\
        --model bench/work/lm-lm-squad-focus1 --questions 2000 --rerank-questions 1000
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import numpy as np  # noqa: E402
import torch  # noqa: E402

import lm as squad_bench  # noqa: E402  (bench/lm.py: the SQuAD data, sample and BM25 searcher)
from common.sampling import likeliest_span  # noqa: E402
from indexer.bm25 import tokenize as bm25_words  # noqa: E402
from trainer.lm.checkpoint import load_model  # noqa: E402
from trainer.lm.qa import qa_prompt_ids  # noqa: E402
from trainer.lm.qa_bounds import extractive_params  # noqa: E402
from trainer.lm.qa_focus import focus_contexts, passage_sentences, sentence_ranking, sentence_scores  # noqa: E402
from trainer.lm.qa_metrics import token_f1  # noqa: E402
from trainer.lm.run import read_run  # noqa: E402
from trainer.lm.sampling import SamplingParams, generate, search_spans  # noqa: E402

LAMBDAS = (0.5, 1.0, 2.0, 4.0)
ALPHAS = (0.0, 0.5, 1.0, 1.5, 2.0, 3.0)


def _has_answer(sentence: str, answers: list[str]) -> bool:
    return any(a in sentence for a in answers)


def study_focus(chunks: list[Any], sample: list[dict[str, Any]], dense_weights: tuple[float, ...] = (5.0, 10.0)
                ) -> dict[str, Any]:
    """Top-sentence answer share per scorer; ties go to the earlier sentence, as in `focus_passage`."""
    sentence_df: Counter[str] = Counter()
    n_sentences = 0
    for c in chunks:
        for s, e in passage_sentences(c.text):
            sentence_df.update(set(bm25_words(c.text[s:e])))
            n_sentences += 1
    from sentence_transformers import SentenceTransformer

    from indexer.embedder import resolve_embedder_path

    encoder = SentenceTransformer(str(resolve_embedder_path("all-MiniLM-L6-v2")), device="cpu")
    questions = encoder.encode([q["question"] for q in sample], batch_size=64, normalize_embeddings=True)
    hits: Counter[str] = Counter()
    for q, qv in zip(sample, questions):
        sents = [q["context"][s:e] for s, e in passage_sentences(q["context"])]
        lexical = np.array(sentence_scores(sents, q["question"]))
        asked = set(bm25_words(q["question"]))
        corpus = np.array([math.fsum(math.log(1 + n_sentences / sentence_df[w]) for w in asked & set(bm25_words(s)))
                           for s in sents])
        cosine = encoder.encode(sents, batch_size=64, normalize_embeddings=True) @ qv
        scorers = {"lexical (served)": lexical, "lexical + 0.3 corpus idf": lexical + 0.3 * corpus,
                   "dense alone": cosine, **{f"lexical + {w:g} dense": lexical + w * cosine for w in dense_weights}}
        for name, score in scorers.items():
            hits[name] += int(_has_answer(sents[int(np.argmax(score))], q["answers"]))  # argmax: first of ties
    n = max(1, len(sample))
    return {"questions": len(sample), "answer_in_top_sentence": {k: round(v / n, 4) for k, v in hits.items()}}


@torch.no_grad()
def answer_candidates(model: Any, tok: Any, plen: int, question: str, passage: str, k: int = 2) -> list[dict[str, Any]]:
    """The served (typed extractive) answer from each of the passage's k best sentences alone, with its
    sentence score and the model's log P(</s>) right after it."""
    sents = [passage[s:e].strip() for s, e in passage_sentences(passage)]
    scores = sentence_scores(sents, question)
    out = []
    for i in sentence_ranking(scores)[:k]:
        ids = qa_prompt_ids(tok, [sents[i]], question, plen)
        g = generate(model, tok, ids, extractive_params(SamplingParams(max_tokens=24, temperature=0.0, stop=("\n",)),
                                                        ids, tok))
        logits, _ = model(torch.tensor([ids + g.tokens]))  # (1, T, V)
        eos = float(torch.log_softmax(logits[0, -1].float(), -1)[tok.eos_id])
        out.append({"sentence": sents[i], "score": scores[i], "text": g.text, "eos_logprob": eos})
    return out


def study_rerank(model_dir: Path, sample: list[dict[str, Any]], preset: str = "small") -> dict[str, Any]:
    model, tok, _ = load_model(model_dir / f"squad-model-{preset}-qa")
    plen = read_run(model_dir / f"squad-{preset}-qa")["meta"]["qa"]["passage_len"]
    t0 = time.perf_counter()
    f1s = []  # per question: (top sentence, better of two, {lambda: picked})
    for q in sample:
        cands = answer_candidates(model, tok, plen, q["question"], q["context"])
        f1 = [token_f1(c["text"], q["answers"]) for c in cands]
        picked = {lam: f1[max(range(len(cands)), key=lambda j: cands[j]["score"] + lam * cands[j]["eos_logprob"])]
                  for lam in LAMBDAS}
        f1s.append((f1[0], max(f1), picked))
    half = len(f1s) // 2
    out: dict[str, Any] = {"model": str(model_dir), "questions": len(sample), "answer_s": round(time.perf_counter() - t0, 1)}
    for name, part in (("first_half", f1s[:half]), ("second_half", f1s[half:])):
        n = max(1, len(part))
        out[name] = {"questions": len(part), "f1_top_sentence": round(100 * sum(p[0] for p in part) / n, 2),
                     "f1_better_of_two": round(100 * sum(p[1] for p in part) / n, 2),
                     "f1_reranked": {f"{lam:g}": round(100 * sum(p[2][lam] for p in part) / n, 2) for lam in LAMBDAS}}
    return out


def _tuned_qa_model(model_dir: Path, preset: str) -> tuple[Any, Any, int, int]:
    """The QA model of a bench/lm.py run, its passage length and the sentences it was tuned to read."""
    model, tok, _ = load_model(model_dir / f"squad-model-{preset}-qa")
    meta = read_run(model_dir / f"squad-{preset}-qa")["meta"]["qa"]
    return model, tok, meta["passage_len"], int(meta.get("context_sentences", 0))


def _served_prompt(tok: Any, q: dict[str, Any], plen: int, focus: int) -> tuple[list[int], SamplingParams]:
    """A question's gold-paragraph prompt, focused as tuned, and the served (typed extractive) params."""
    ids = qa_prompt_ids(tok, focus_contexts([q["context"]], q["question"], focus), q["question"], plen)
    return ids, extractive_params(SamplingParams(max_tokens=24, temperature=0.0, stop=("\n",)), ids, tok)


@torch.no_grad()
def study_span(model_dir: Path, sample: list[dict[str, Any]], preset: str = "small") -> dict[str, Any]:
    model, tok, plen, focus = _tuned_qa_model(model_dir, preset)
    t0 = time.perf_counter()
    rows = []  # per question: (greedy F1, {alpha: F1}, best candidate F1)
    t_greedy = t_search = 0.0
    n_spans = 0
    for q in sample:
        ids, params = _served_prompt(tok, q, plen, focus)
        t = time.perf_counter()
        greedy = token_f1(generate(model, tok, ids, params).text, q["answers"])
        t_greedy += time.perf_counter() - t
        t = time.perf_counter()
        spans, scores = search_spans(model, ids, params, tok.eos_id)
        if not spans:
            rows.append((greedy, {a: greedy for a in ALPHAS}, greedy))
            continue
        t_search += time.perf_counter() - t
        n_spans += len(spans)
        f1 = {sp: token_f1(tok.decode(list(sp)), q["answers"]) for sp in scores}
        picked = {a: f1[tuple(likeliest_span(scores, spans, a))] for a in ALPHAS}
        rows.append((greedy, picked, max(f1.values())))
    half = len(rows) // 2
    out: dict[str, Any] = {"model": str(model_dir), "questions": len(sample), "context_sentences": focus,
                           "answer_s": round(time.perf_counter() - t0, 1), "greedy_s": round(t_greedy, 1),
                           "search_s": round(t_search, 1), "spans_per_question": round(n_spans / max(1, len(sample)), 1)}
    for name, part in (("first_half", rows[:half]), ("second_half", rows[half:])):
        n = max(1, len(part))
        out[name] = {"questions": len(part), "f1_greedy": round(100 * sum(r[0] for r in part) / n, 2),
                     "f1_span_search": {f"alpha {a:g}": round(100 * sum(r[1][a] for r in part) / n, 2) for a in ALPHAS},
                     "f1_best_candidate": round(100 * sum(r[2] for r in part) / n, 2)}
    return out


def study_span_gguf(model_dir: Path, gguf: Path, sample: list[dict[str, Any]], alpha: float,
                    preset: str = "small") -> dict[str, Any]:
    from quantize.runtime import LlamaCppGenerator

    model, tok, plen, focus = _tuned_qa_model(model_dir, preset)
    gen = LlamaCppGenerator(gguf, threads=torch.get_num_threads())
    out: dict[str, Any] = {"gguf": str(gguf), "questions": len(sample), "alpha": alpha}
    try:
        for search in ("greedy", "best"):
            f1 = same = 0.0
            seconds = 0.0
            for q in sample:
                ids, served = _served_prompt(tok, q, plen, focus)
                params = replace(served, extract_search=search, extract_alpha=alpha)
                t = time.perf_counter()
                g = gen.generate(ids, params)
                seconds += time.perf_counter() - t
                f1 += token_f1(g.text, q["answers"])
                same += int(g.tokens == generate(model, tok, ids, params).tokens)
            n = max(1, len(sample))
            out[search] = {"f1": round(100 * f1 / n, 2), "same_span_as_torch": round(same / n, 4),
                           "ms_per_answer": round(1000 * seconds / n, 1)}
    finally:
        gen.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--studies", default="focus", help="comma-separated: focus, rerank, span, span_gguf")
    ap.add_argument("--questions", type=int, default=2000, help="rules-split questions for the focus study")
    ap.add_argument("--rerank-questions", type=int, default=1000)
    ap.add_argument("--model", type=Path, default=None, help="bench/work/lm-NAME folder with a tuned QA model (rerank)")
    ap.add_argument("--gguf", type=Path, default=None, help="the --model's QA model exported to GGUF (span study)")
    ap.add_argument("--gguf-questions", type=int, default=200)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "lm-focus.json")
    a = ap.parse_args()
    studies = [s for s in a.studies.split(",") if s]
    if unknown := set(studies) - {"focus", "rerank", "span", "span_gguf"}:
        ap.error(f"unknown studies: {', '.join(sorted(unknown))}")
    if "span_gguf" in studies and (a.gguf is None or not a.gguf.is_file()):
        ap.error("span_gguf needs --gguf FILE, the --model's QA model exported to GGUF")
    if {"rerank", "span", "span_gguf"} & set(studies) and (a.model is None or not (a.model / "squad-model-small-qa").is_dir()):
        ap.error("rerank and span studies need --model W, a bench/work/lm-NAME folder holding squad-model-small-qa")
    chunks, questions = squad_bench.squad_data()
    result: dict[str, Any] = {"command": "HF_HUB_OFFLINE=1 .venv/bin/python bench/lm_focus.py " + " ".join(sys.argv[1:]),
                              "split": "rules", "machine": {"cpus": os.cpu_count(), "torch": torch.__version__}}
    if "focus" in studies:
        result["focus"] = study_focus(chunks, squad_bench.squad_sample(questions, a.questions, "rules"))
        print(json.dumps(result["focus"]), file=sys.stderr)
    if "rerank" in studies:
        result["rerank"] = study_rerank(a.model, squad_bench.squad_sample(questions, a.rerank_questions, "rules"))
        print(json.dumps(result["rerank"]), file=sys.stderr)
    if "span" in studies:
        result["span"] = study_span(a.model, squad_bench.squad_sample(questions, a.rerank_questions, "rules"))
        print(json.dumps(result["span"]), file=sys.stderr)
    if "span_gguf" in studies:
        sample = squad_bench.squad_sample(questions, a.gguf_questions, "rules")
        result["span_gguf"] = study_span_gguf(a.model, a.gguf, sample, SamplingParams().extract_alpha)
        print(json.dumps(result["span_gguf"]), file=sys.stderr)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = a.out.with_suffix(".tmp")
    tmp.write_text(json.dumps(result, indent=2), encoding="utf-8")
    tmp.replace(a.out)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
