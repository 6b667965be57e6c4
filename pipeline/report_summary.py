"""The report's first section and its warnings, from the stage outputs alone (pure; the caller reads
what the stages did not record, such as the LM's vocabulary size, from the model manifests).

Thresholds for "unusable" (each one is a judgement; the numbers stay in the tables so a reader can
judge again):

- `PPL_VOCAB_SHARE`: an LM whose held-out perplexity is above a tenth of its vocabulary size is
  still choosing among more than |V|/10 equally likely tokens at each step. A uniform guess scores
  exactly |V|; a unigram (word-frequency) model on English sub-word text already reaches roughly
  |V|/3 to |V|/20, and models that write readable text sit at |V|/100 or below (GPT-2 small: about
  30 on WebText with |V| = 50,257). Above |V|/10 the model has learned little beyond frequencies, so
  its generations are word salad; answers then rely on copying spans from retrieved passages.
- `TOP1_MIN`, `DPPL_MAX_PCT`: a GGUF type whose greedy next token agrees with torch at fewer than
  90 % of held-out positions, or whose perplexity is more than 10 % above torch's, no longer
  behaves like the trained model (llama.cpp's own tables put Q4_0 at a few % Δppl on 7B models, and
  Q8_0 is normally within 0.1 %).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pipeline.decisions import embedder_call
from pipeline.report_format import LM_NAMES, MB, change, human_duration, sig
from quantize.gate import PPL_VOCAB_SHARE, answers_gate, generation_gate  # one rule: the server's generation gate
from trainer.lm.answer_check import call_words

TOP1_MIN = 0.9
DPPL_MAX_PCT = 10.0
TOKENIZER_MIN = 1.0  # any mismatch: the served model reads other token ids than it was trained on


def _out(stages: dict[str, Any], name: str) -> dict[str, Any]:
    return stages.get(name, {}).get("outputs", {}) or {}


def kept_embedder(rx: dict[str, Any], base_name: str | None) -> str:
    """What search still serves when the build switched to no new embedder: the base, or an adapted one an earlier
    build (or `reindex --embedder`) put in place."""
    serving = rx.get("serving") or {}
    if serving.get("adapted"):
        return f"an earlier adapted embedder ({'/'.join(Path(serving['path']).parts[-2:])})"
    return f"the base embedder{f' ({base_name})' if base_name else ''}"


def served_embedder(stages: dict[str, Any], base_name: str | None = None) -> tuple[str, str] | None:
    """(which embedder search serves, why), from the reindex decision and the scores behind it."""
    if "reindex" not in stages:
        return None
    rx = _out(stages, "reindex")
    if rx.get("trained") is False:
        return kept_embedder(rx, base_name), f"no adapted one was trained: {rx.get('reason')}"
    if not rx.get("switched"):
        return kept_embedder(rx, base_name), f"the adapted one was not kept: {rx.get('reason', 'no reason recorded')}"
    why = embedder_call(_out(stages, "embedder").get("metrics", {}))[1]
    return f"the adapted embedder{f', fine-tuned from {base_name}' if base_name else ''}", why


def _find(d: Any, keys: tuple[str, ...], path: str = "") -> list[tuple[str, str, Any]]:
    """(where, key, value) of every scalar whose key is one of `keys`, at any depth."""
    found = []
    if isinstance(d, dict):
        for k, v in d.items():
            if k in keys and isinstance(v, (int, float)) and not isinstance(v, bool):
                found.append((path, k, v))
            elif isinstance(v, dict):
                found += _find(v, keys, f"{path} › {k}" if path else k)
    return found


def _lm_ppl(stages: dict[str, Any]) -> dict[str, tuple[float | None, float | None]]:
    """Model name -> (held-out perplexity without, with retrieved context)."""
    ppl = _out(stages, "evaluate").get("perplexity") or {}
    return {m: (d.get("ppl_no_context"), d.get("ppl_with_context")) for m, d in ppl.items() if isinstance(d, dict)}


def summary_rows(stages: dict[str, Any], base_name: str | None = None) -> list[tuple[str, str]]:
    """The summary as (what, figures) rows, only for what the build recorded."""
    rows: list[tuple[str, str]] = []
    ing = _out(stages, "ingest")
    if ing:
        skipped = len(ing.get("skipped") or [])
        rows.append(("corpus", f"{ing.get('documents_total', 0):,} documents, {ing.get('chunks_total', 0):,} chunks"
                     + (f" ({skipped} files skipped)" if skipped else "")))
    ev = _out(stages, "evaluate")
    ents = ev.get("entity_labels") or {}
    if ents:
        rows.append(("entities", f"{sum(ents.values()):,} mentions over {len(ents)} labels"))
    emb = _out(stages, "embedder")
    metrics = emb.get("metrics", {})
    # the labelled splits compare with the model serving; the dev pairs with the one training started from
    compared = ("earlier adapted → new adapted embedder" if (emb.get("serving") or {}).get("adapted")
                else "base → adapted embedder")
    after = metrics.get("beir_after") or {}
    before = metrics.get("beir_before") or {}
    for m in ("bm25", "dense", "hybrid"):
        if m in after:
            rows.append((f"search, BEIR test split, {m}",
                         f"nDCG@10 {change((before.get(m) or {}).get('ndcg@10'), after[m].get('ndcg@10'))}; "
                         f"Recall@100 {change((before.get(m) or {}).get('recall@100'), after[m].get('recall@100'))} "
                         f"({compared})"))
    select = metrics.get("select") or {}
    for m in ("dense", "hybrid"):
        if m in (select.get("after") or {}):
            b, a = (select.get("before") or {}).get(m) or {}, select["after"][m]
            rows.append((f"search, BEIR {select.get('split')} split, {m} (decides the embedder)",
                         f"nDCG@10 {change(b.get('ndcg@10'), a.get('ndcg@10'))} ({compared})"))
    db, da = metrics.get("dev_before") or {}, metrics.get("dev_after") or {}
    if db and da:
        parts = [f"{k} {change(db.get(k), da.get(k))}" for k in ("ndcg@10", "mrr@10", "recall@100") if k in db]
        rows.append(("embedder, held-out dev pairs", "; ".join(parts) + " (base → adapted)"))
    served = served_embedder(stages, base_name)
    if served:
        rows.append(("embedder served", f"{served[0]}: {served[1]}"))
    qa = _out(stages, "qa")
    if qa.get("synthetic_questions") is not None:
        rows.append(("QA fine-tuning", f"{qa['synthetic_questions']:,} synthetic cloze questions; held-out answer loss "
                     f"{sig(qa['heldout_loss']) if qa.get('heldout_loss') is not None else '–'} nats/token"))
    ans = qa.get("heldout_answers")
    if ans:
        rows.append(("answers in the LM's own words", f"token F1 {sig(ans['model_f1'])} against the extractive reader's "
                     f"{sig(ans['reader_f1'])} on {ans['questions']} held-out questions: "
                     + call_words(answers_gate(ans, "")[0])))
    for where, key, v in _find(ev, ("exact_match", "f1", "accuracy")):
        rows.append((f"answers{f', {where}' if where else ''}", f"{key.replace('_', ' ')} {sig(v)}"))
    lm = _out(stages, "lm")
    if lm.get("reason"):
        rows.append(("LM tuned for answers", f"the {'plain' if lm.get('served') == 'plain' else 'retrieval-trained'} "
                     f"model: {lm['reason']}"))
    names = {**LM_NAMES, "qa_lm": "QA-tuned LM (served)"}
    for m, (no_ctx, ctx) in _lm_ppl(stages).items():
        txt = f"{sig(no_ctx)} without context" + (f", {sig(ctx)} with retrieved passages" if ctx is not None else "")
        rows.append((f"held-out perplexity, {names.get(m, m)}", txt))
    for stage, what in (("lm", "retrieval-trained LM"), ("qa", "QA-tuned LM")):
        n = _out(stages, stage).get("n_params")
        if n:
            rows.append((f"size, {what}", f"{sig(n / 1e6)} M parameters"))
    verify = _out(stages, "verify")
    types = verify.get("types") or {}
    files = _out(stages, "quantize").get("files") or []
    sizes = {t: d.get("size_bytes") for t, d in types.items()} or {f["type"]: f.get("size_bytes") for f in files}
    if sizes:
        rows.append(("GGUF files", ", ".join(f"{t} {sig(s / MB)} MB" for t, s in sizes.items() if s)))
    speeds = [(t, d.get("gen_tok_s")) for t, d in types.items() if d.get("gen_tok_s")]
    torch = (verify.get("torch") or {}).get("gen_tok_s")
    if speeds:
        rows.append(("generation speed (llama.cpp)", ", ".join(f"{t} {sig(v)} tok/s" for t, v in speeds)
                     + (f" (torch {sig(torch)} tok/s)" if torch else "")))
    lat = ev.get("latency") or {}
    if lat:
        rows.append(("search latency", ", ".join(f"{m} p50 {sig(d['p50_ms'])} ms (p99 {sig(d['p99_ms'])})"
                                                 for m, d in lat.items() if "p50_ms" in d)
                     + f" over {ev.get('queries', '?')} queries"))
    total = sum(float(r.get("seconds") or 0) for n, r in stages.items() if n != "report")
    if total:
        rows.append(("build time", human_duration(total) + " (sum of the stages' last runs)"))
    return rows


def warnings(stages: dict[str, Any], vocab: dict[str, int] | None = None) -> list[str]:
    """Where a built model is unusable or a decision went against the adapted model; `vocab` maps
    'retrieval_lm' / 'qa_lm' to the LM's vocabulary size (from its manifest)."""
    out: list[str] = []
    vocab = vocab or {}
    for m, (no_ctx, ctx) in _lm_ppl(stages).items():
        best = min(p for p in (no_ctx, ctx) if p is not None) if (no_ctx or ctx) else None
        v = vocab.get(m)
        if best is not None and v and not generation_gate(best, v)[0]:
            out.append(f"The {LM_NAMES.get(m, m)} is too weak to generate text: held-out perplexity {sig(best)} is "
                       f"above {sig(PPL_VOCAB_SHARE * v)} (a tenth of its {v:,}-token vocabulary). Its answers can only be "
                       "spans copied from the retrieved passages; train longer or on more text.")
    for t, d in (_out(stages, "verify").get("types") or {}).items():
        bad = []
        if d.get("top1") is not None and d["top1"] < TOP1_MIN:
            bad.append(f"top-1 agreement with torch {sig(100 * d['top1'])} % < {sig(100 * TOP1_MIN)} %")
        if d.get("ppl_delta_pct") is not None and d["ppl_delta_pct"] > DPPL_MAX_PCT:
            bad.append(f"perplexity {sig(d['ppl_delta_pct'])} % above torch (> {sig(DPPL_MAX_PCT)} %)")
        if bad:
            out.append(f"GGUF type {t} does not behave like the trained model: {'; '.join(bad)}. Serve another type.")
    tm = _out(stages, "verify").get("tokenizer_match")
    if tm is not None and tm < TOKENIZER_MIN:
        out.append(f"The GGUF tokenizer matches the trained tokenizer on only {sig(100 * tm)} % of held-out texts.")
    rx = _out(stages, "reindex")
    if rx.get("trained") is False:
        out.append(f"No adapted embedder was trained: {rx.get('reason')}. Search serves {kept_embedder(rx, None)}.")
    elif rx and not rx.get("switched"):
        out.append(f"The adapted embedder was not kept ({rx.get('reason', 'no reason recorded')}); search serves "
                   f"{kept_embedder(rx, None)}.")
    if _out(stages, "lm").get("served") == "plain":
        out.append(f"The retrieval-trained LM was not kept ({_out(stages, 'lm').get('reason')}); answers are tuned "
                   "from the plain model.")
    skipped = _out(stages, "ingest").get("skipped") or []
    if skipped:
        out.append(f"{len(skipped)} corpus file(s) were skipped at ingest (see the ingest table).")
    return out

