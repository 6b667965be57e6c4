"""Sentence vectors without a second forward pass, on dev labels: can a sentence's vector be pooled from its chunk's
own token states instead of embedding the sentence alone? Served sentence vectors (`indexer.sentence_share`) cost a
forward pass over every sentence of 8 words or more, title first: ingest took 1.9-2.1x as long
(bench/results/sentence-vectors-cost.json). The chunk's forward pass already computes a state for each of the
sentence's tokens; mean-pooling those over the sentence's span (late chunking, inside one 128-token chunk) costs
nothing more. But each token has attended to the whole chunk, which is the blur sentence vectors are there to undo.

Candidates, each scored as bench/sentence_dense_probe.py scores (every chunk, s = 0.5, fused with the collected
BM25 list as served), on the same four dev cases and with the same embedder (the int8 export `auto` picked there;
its last hidden state taken from the runner, pooled as the export pools, then normalised):
- `embedded`: the served sentence vectors (each sentence embedded alone after its title; cached by the probe);
- `pooled`: the mean of the chunk's token states over the sentence's tokens;
- `pooled+title`: the same over the sentence's tokens and the title's.
Rule, written before any candidate was scored: the better pooled candidate replaces `embedded` only if its mean dev
hybrid nDCG@10 is within 0.001 of `embedded`'s, with no case losing more than 0.005 against it (the cost-cut rule of
the sentence probe's earlier cuts).

    HF_HUB_OFFLINE=1 /tmp/ragkiln-cpu heavy .venv/bin/python bench/sentence_pool_probe.py
    # -> bench/results/sentence-pool-probe-dev.json
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import numpy as np

from ctx_dense_probe import LISTS, ROOT, load_case, score  # sets HF_HUB_OFFLINE and the import path
from indexer.chunking import MIN_SENTENCE_WORDS, index_text, sentence_spans
from machine import machine  # bench/machine.py
from sentence_dense_probe import case_sentences, case_vectors, sentence_cos

OUT = ROOT / "bench" / "results" / "sentence-pool-probe-dev.json"
LABELS = ("embedded", "pooled", "pooled+title")


def pooled_sentences(emb: Any, titles: list[str], texts: list[str], batch: int = 64
                     ) -> tuple[dict[str, list[np.ndarray]], list[list[tuple[int, int]]]]:
    """Per chunk, its long sentences' char spans (in the chunk text) and, per candidate, their pooled unit vectors."""
    out: dict[str, list[np.ndarray]] = {"pooled": [], "pooled+title": []}
    spans_of: list[list[tuple[int, int]]] = []
    for s in range(0, len(texts), batch):
        full = [index_text(t, x) for t, x in zip(titles[s:s + batch], texts[s:s + batch])]
        enc = emb.tokenizer(full, padding=True, truncation=True, max_length=emb.max_tokens, return_tensors="np",
                            return_offsets_mapping=True)
        feeds = {k: v for k, v in enc.items() if k != "offset_mapping"}
        hidden = np.asarray(emb._runner(feeds), np.float32)  # (batch, T, dim) last hidden state
        for i, (title, text, f) in enumerate(zip(titles[s:s + batch], texts[s:s + batch], full)):
            shift = len(f) - len(text)  # the title and its newline before the chunk text
            starts, ends = enc["offset_mapping"][i, :, 0], enc["offset_mapping"][i, :, 1]
            real = (enc["attention_mask"][i] == 1) & (ends > starts)  # no [CLS], [SEP] or padding
            title_tok = real & (ends <= shift) if shift else np.zeros_like(real)
            spans = [(a, b) for a, b in sentence_spans(text) if len(text[a:b].split()) >= MIN_SENTENCE_WORDS]
            spans_of.append(spans)
            for label, extra in (("pooled", np.zeros_like(real)), ("pooled+title", title_tok)):
                vecs = []
                for a, b in spans:
                    m = (real & (starts >= a + shift) & (ends <= b + shift)) | extra
                    v = hidden[i][m].mean(0) if m.any() else hidden[i][real].mean(0)  # truncated away: the chunk's
                    vecs.append(v / np.linalg.norm(v))
                out[label].append(np.asarray(vecs, np.float32).reshape(-1, hidden.shape[2]))
    return out, spans_of


def main() -> None:
    rows: dict[str, dict[str, Any]] = {}
    for f in sorted(LISTS.glob("lists-*-dev.json")):
        t0 = time.perf_counter()
        case = load_case(f, "dev")
        d, ids, chunks = case.lists, case.ids, case.chunks
        emb = case.searcher.embedder
        chunk_cos = case.qv @ case.vecs.T
        doc_of = {str(int(c)): chunks[int(c)].doc_id for c in ids}
        # The served vectors: every sentence embedded alone (the probe's cache), the long ones kept.
        texts, owner, words = case_sentences(case)
        k = words >= MIN_SENTENCE_WORDS
        cands = {"embedded": (case_vectors(case, texts)[k], owner[k])}
        t1 = time.perf_counter()
        pooled, spans_of = pooled_sentences(emb, [chunks[int(c)].title for c in ids], [chunks[int(c)].text for c in ids])
        pool_seconds = time.perf_counter() - t1
        own = np.repeat(np.arange(len(ids)), [len(s) for s in spans_of])
        for label in ("pooled", "pooled+title"):
            cands[label] = (np.concatenate(pooled[label]), own)
        row: dict[str, Any] = {"chunks": len(ids), "sentences": int(k.sum()), "pool_seconds": round(pool_seconds, 1)}
        for label, (vecs, owners) in cands.items():
            sent_cos = sentence_cos(case, chunk_cos, vecs, owners)
            row[label] = score(case, 0.5 * chunk_cos + 0.5 * sent_cos, doc_of)
        rows[d["case"]] = row
        print(d["case"], row, f"{time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
    mean = {k: {m: round(sum(r[k][m] for r in rows.values()) / len(rows), 4) for m in ("dense", "hybrid")}
            for k in LABELS}
    best = max(LABELS[1:], key=lambda k: mean[k]["hybrid"])
    ok = mean[best]["hybrid"] >= mean["embedded"]["hybrid"] - 0.001 and all(
        r[best]["hybrid"] - r["embedded"]["hybrid"] >= -0.005 for r in rows.values())
    result = {"command": "HF_HUB_OFFLINE=1 /tmp/ragkiln-cpu heavy .venv/bin/python bench/sentence_pool_probe.py",
              "split": "dev", "rule": __doc__.split("Rule, ")[1].split("\n\n")[0], "machine": machine(),
              "cases": rows, "mean": mean, "winner": best if ok else "embedded"}
    OUT.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps({"mean": mean, "winner": result["winner"]}, indent=1))


if __name__ == "__main__":
    main()
