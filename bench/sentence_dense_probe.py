"""Sentence vectors beside chunk vectors, on dev labels: does a chunk's best sentence match the query better
than the whole chunk? A SciFact claim is usually restated by one sentence of its abstract (its rationale), a
SQuAD question by one sentence of its paragraph; a 128-token chunk's single vector blurs that sentence with its
neighbours. An exploration over doc_fusion_study's dev lists (its `collect` first), for issue 28's SciFact
hybrid target; not wired into the index.

Each chunk's sentences (indexer.chunking.sentence_spans, each embedded as the index embeds a chunk: its document
title, then the text) get the workspace's embedder; a candidate scores every chunk by

    (1 - s) * cos(query, chunk) + s * max over its sentences of cos(query, sentence)

for s in {0 (served), 0.3, 0.5, 0.7, 1}, takes the best 100 chunks as the dense list, fuses it with the collected
BM25 list as served (min-max, dense 0.5) and ranks documents by their first chunk. Rule, the project's usual
one, written here before any candidate was scored: a candidate would be adopted only if its mean hybrid nDCG@10
over the four dev cases beats the served vectors' by >= 0.003 with no case losing more than 0.01.

    HF_HUB_OFFLINE=1 /tmp/ragkiln-cpu heavy .venv/bin/python bench/sentence_dense_probe.py
    # -> bench/results/sentence-dense-probe-dev.json
    HF_HUB_OFFLINE=1 .venv/bin/python bench/doc_fusion_study.py collect --split test
    HF_HUB_OFFLINE=1 /tmp/ragkiln-cpu heavy .venv/bin/python bench/sentence_dense_probe.py --split test
    # -> sentence-dense-probe-test.json: SciFact qrels/test.tsv and SQuAD-300 half B, the served vectors and the
    #    dev winner only, scored once after the choice

Sentence vectors are cached per workspace and embedder under bench/work/sentence-vecs/.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from typing import Any

import numpy as np

from ctx_dense_probe import LISTS, ROOT, load_case, score  # sets HF_HUB_OFFLINE and the import path
from indexer.chunking import index_text, sentence_spans
from machine import machine  # bench/machine.py

OUT = ROOT / "bench" / "results" / "sentence-dense-probe-dev.json"
SHARES = (0.0, 0.3, 0.5, 0.7, 1.0)  # s: the best sentence's share of a chunk's dense score; 0 is what search serves


def best_sentence(qv: np.ndarray, sent_vecs: np.ndarray, owner: np.ndarray, n_chunks: int) -> np.ndarray:
    """(queries, chunks): each chunk's best sentence cosine (pure; -1 for a chunk without sentences)."""
    out = np.full((qv.shape[0], n_chunks), -1.0, np.float32)
    sims = qv @ sent_vecs.T  # (queries, sentences)
    order = np.argsort(owner, kind="stable")
    bounds = np.searchsorted(owner[order], np.arange(n_chunks + 1))
    for j in range(n_chunks):
        a, b = bounds[j], bounds[j + 1]
        if b > a:
            out[:, j] = sims[:, order[a:b]].max(axis=1)
    return out


def sentence_vectors(embedder: Any, texts: list[str], key: str) -> np.ndarray:
    """Unit vectors of `texts`, cached by `key` (workspace, embedder and the texts' hash)."""
    digest = hashlib.sha256((key + chr(0).join(texts)).encode()).hexdigest()[:16]
    path = ROOT / "bench" / "work" / "sentence-vecs" / f"{digest}.npy"
    if path.exists():
        return np.load(path)
    v = np.asarray(embedder.encode(texts, batch_size=64), np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, v)
    return v


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--split", choices=["dev", "test"], default="dev")
    split = ap.parse_args().split
    shares = SHARES
    if split == "test":  # the dev choice, scored once against the served vectors
        chosen = json.loads(OUT.read_text())["winner"]
        shares = tuple(sorted({0.0, float(chosen.split("=")[1])}))
    rows: dict[str, dict[str, Any]] = {}
    for f in sorted(LISTS.glob(f"lists-*-{split}.json")):
        t0 = time.perf_counter()
        case = load_case(f, split)
        d, ids, chunks = case.lists, case.ids, case.chunks
        texts: list[str] = []
        owner: list[int] = []
        for j, c in enumerate(ids):
            ch = chunks[int(c)]
            for a, b in sentence_spans(ch.text):
                texts.append(index_text(ch.title, ch.text[a:b]))
                owner.append(j)
        sent_vecs = sentence_vectors(case.searcher.embedder, texts, f"{d['home']}|{d['embedder']}")
        t_embed = time.perf_counter() - t0
        chunk_cos = case.qv @ case.vecs.T
        sent_cos = best_sentence(case.qv, sent_vecs, np.asarray(owner), len(ids))
        sent_cos = np.where(sent_cos < -0.5, chunk_cos, sent_cos)  # a chunk without sentences keeps its own
        doc_of = {str(int(c)): chunks[int(c)].doc_id for c in ids}
        row: dict[str, Any] = {"queries": len(case.qids), "embedder": d["embedder"], "chunks": len(ids),
                               "sentences": len(texts), "embed_seconds": round(t_embed, 1)}
        for share in shares:
            row[f"s={share:g}"] = score(case, (1 - share) * chunk_cos + share * sent_cos, doc_of)
        rows[d["case"]] = row
        print(d["case"], {k: v for k, v in row.items() if k.startswith("s=")}, f"{time.perf_counter() - t0:.0f} s",
              file=sys.stderr, flush=True)
    labels = [f"s={x:g}" for x in shares]
    mean = {k: {m: round(sum(r[k][m] for r in rows.values()) / len(rows), 4) for m in ("dense", "hybrid")}
            for k in labels}
    result = {"command": "HF_HUB_OFFLINE=1 /tmp/ragkiln-cpu heavy .venv/bin/python bench/sentence_dense_probe.py"
                         + (" --split test" if split == "test" else ""), "split": split,
              "rule": __doc__.split("Rule, ")[1].split("\n\n")[0], "machine": machine(), "cases": rows, "mean": mean}
    if split == "dev":
        ok = [k for k in labels[1:] if mean[k]["hybrid"] - mean["s=0"]["hybrid"] >= 0.003
              and all(r[k]["hybrid"] - r["s=0"]["hybrid"] >= -0.01 for r in rows.values())]
        result["winner"] = max(ok, key=lambda k: mean[k]["hybrid"]) if ok else "s=0"
    out = OUT if split == "dev" else OUT.with_name("sentence-dense-probe-test.json")
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps({"mean": mean, "winner": result.get("winner")}, indent=1))


if __name__ == "__main__":
    main()
