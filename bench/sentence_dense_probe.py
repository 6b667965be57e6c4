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

Cost cut (`--min-words`, dev only): the sentences of fewer than N words (a code line, "Example:", a heading)
make most of the sentence vectors of a how-to corpus (the demo's: 10,654 sentences for 1,810 chunks) and double
its ingest time. Rule, written before any threshold was scored: keep the largest N in {0, 3, 5, 8} whose mean dev
hybrid nDCG@10 at s = 0.5 is within 0.001 of N = 0's, with no case losing more than 0.005 against it.

    HF_HUB_OFFLINE=1 /tmp/ragkiln-cpu heavy .venv/bin/python bench/sentence_dense_probe.py --min-words
    # -> bench/results/sentence-min-words-dev.json

A second cost cut (`--no-title`, dev only): a sentence is embedded after its document's title, as a chunk is; the
title is a third of a sentence's tokens on the sample corpus (about 10 of 30). Rule, written before it was scored:
sentences without the title replace those with it (both at s = 0.5, 8 words or more) only if the mean dev hybrid
nDCG@10 is within 0.001 of the title's, with no case losing more than 0.005 against it.

    HF_HUB_OFFLINE=1 /tmp/ragkiln-cpu heavy .venv/bin/python bench/sentence_dense_probe.py --no-title
    # -> bench/results/sentence-no-title-dev.json
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
from indexer.chunking import MIN_SENTENCE_WORDS, index_text, sentence_spans
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


def case_sentences(case: Any, titled: bool = True) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Every sentence of a case's chunks as embedded (title first when `titled`), the row of its chunk, and its
    word count (the served vectors keep those of `indexer.chunking.MIN_SENTENCE_WORDS` or more)."""
    texts: list[str] = []
    owner: list[int] = []
    words: list[int] = []
    for j, c in enumerate(case.ids):
        ch = case.chunks[int(c)]
        for a, b in sentence_spans(ch.text):
            texts.append(index_text(ch.title if titled else "", ch.text[a:b]))
            owner.append(j)
            words.append(len(ch.text[a:b].split()))
    return texts, np.asarray(owner, dtype=np.int64), np.asarray(words, dtype=np.int64)


def case_vectors(case: Any, texts: list[str]) -> np.ndarray:
    """`sentence_vectors` of `texts` with the case's embedder, cached under its workspace and embedder."""
    return sentence_vectors(case.searcher.embedder, texts, f"{case.lists['home']}|{case.lists['embedder']}")


def sentence_cos(case: Any, chunk_cos: np.ndarray, vecs: np.ndarray, owner: np.ndarray) -> np.ndarray:
    """(queries, chunks) best sentence cosines; a chunk without sentences keeps its own cosine."""
    sent = best_sentence(case.qv, vecs, owner, len(case.ids))
    return np.where(sent < -0.5, chunk_cos, sent)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--split", choices=["dev", "test"], default="dev")
    ap.add_argument("--min-words", action="store_true", help="the cost cut's thresholds at s = 0.5 (dev)")
    ap.add_argument("--no-title", action="store_true", help="sentences embedded without their title (dev)")
    args = ap.parse_args()
    split = args.split
    if args.min_words:
        return min_words()
    if args.no_title:
        return no_title()
    shares = SHARES
    if split == "test":  # the dev choice, scored once against the served vectors
        chosen = json.loads(OUT.read_text())["winner"]
        shares = tuple(sorted({0.0, float(chosen.split("=")[1])}))
    rows: dict[str, dict[str, Any]] = {}
    for f in sorted(LISTS.glob(f"lists-*-{split}.json")):
        t0 = time.perf_counter()
        case = load_case(f, split)
        d, ids, chunks = case.lists, case.ids, case.chunks
        texts, owner, _ = case_sentences(case)
        sent_vecs = case_vectors(case, texts)
        t_embed = time.perf_counter() - t0
        chunk_cos = case.qv @ case.vecs.T
        sent_cos = sentence_cos(case, chunk_cos, sent_vecs, owner)
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


MIN_WORDS = (0, 3, 5, 8)


def min_words() -> None:
    """The cost cut: sentences of fewer than N words get no vector (their chunk keeps its own cosine)."""
    rows: dict[str, dict[str, Any]] = {}
    for f in sorted(LISTS.glob("lists-*-dev.json")):
        case = load_case(f, "dev")
        d, ids, chunks = case.lists, case.ids, case.chunks
        texts, owner_a, words_a = case_sentences(case)
        vecs = case_vectors(case, texts)
        chunk_cos = case.qv @ case.vecs.T
        doc_of = {str(int(c)): chunks[int(c)].doc_id for c in ids}
        row: dict[str, Any] = {"chunks": len(ids), "sentences": len(texts)}
        for n in MIN_WORDS:
            keep = words_a >= n
            sent_cos = sentence_cos(case, chunk_cos, vecs[keep], owner_a[keep])
            row[f"min={n}"] = {**score(case, 0.5 * chunk_cos + 0.5 * sent_cos, doc_of), "kept": int(keep.sum())}
        rows[d["case"]] = row
        print(d["case"], row, file=sys.stderr, flush=True)
    labels = [f"min={n}" for n in MIN_WORDS]
    mean = {k: round(sum(r[k]["hybrid"] for r in rows.values()) / len(rows), 4) for k in labels}
    ok = [k for k in labels if mean[k] >= mean["min=0"] - 0.001
          and all(r[k]["hybrid"] - r["min=0"]["hybrid"] >= -0.005 for r in rows.values())]
    result = {"command": "HF_HUB_OFFLINE=1 /tmp/ragkiln-cpu heavy .venv/bin/python bench/sentence_dense_probe.py "
                         "--min-words", "split": "dev", "rule": __doc__.split("Rule, ")[2].split("\n\n")[0],
              "machine": machine(), "cases": rows, "mean_hybrid": mean, "winner": ok[-1]}
    OUT.with_name("sentence-min-words-dev.json").write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps({"mean_hybrid": mean, "winner": ok[-1]}, indent=1))


def no_title() -> None:
    """The second cost cut: sentences of 8 words or more, embedded with and without their document's title."""
    rows: dict[str, dict[str, Any]] = {}
    for f in sorted(LISTS.glob("lists-*-dev.json")):
        case = load_case(f, "dev")
        d, ids, chunks = case.lists, case.ids, case.chunks
        chunk_cos = case.qv @ case.vecs.T
        doc_of = {str(int(c)): chunks[int(c)].doc_id for c in ids}
        row: dict[str, Any] = {"chunks": len(ids)}
        for label, titled in (("title", True), ("no-title", False)):
            texts, owner, words = case_sentences(case, titled)
            keep = words >= MIN_SENTENCE_WORDS
            t0 = time.perf_counter()
            if titled:  # the titled set is cached whole: embedded once, the long sentences taken from it
                vecs = case_vectors(case, texts)[keep]
            else:
                vecs = case_vectors(case, [t for t, x in zip(texts, keep) if x])
            sent_cos = sentence_cos(case, chunk_cos, vecs, owner[keep])
            row[label] = {**score(case, 0.5 * chunk_cos + 0.5 * sent_cos, doc_of), "sentences": int(keep.sum()),
                          "embed_seconds": round(time.perf_counter() - t0, 1)}
        rows[d["case"]] = row
        print(d["case"], row, file=sys.stderr, flush=True)
    mean = {k: round(sum(r[k]["hybrid"] for r in rows.values()) / len(rows), 4) for k in ("title", "no-title")}
    ok = mean["no-title"] >= mean["title"] - 0.001 and all(
        r["no-title"]["hybrid"] - r["title"]["hybrid"] >= -0.005 for r in rows.values())
    result = {"command": "HF_HUB_OFFLINE=1 /tmp/ragkiln-cpu heavy .venv/bin/python bench/sentence_dense_probe.py "
                         "--no-title", "split": "dev", "rule": __doc__.split("Rule, ")[3].split("\n\n")[0],
              "machine": machine(), "cases": rows, "mean_hybrid": mean, "winner": "no-title" if ok else "title",
              "note": "embed_seconds of a cached set is its load time"}
    OUT.with_name("sentence-no-title-dev.json").write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps({"mean_hybrid": mean, "winner": result["winner"]}, indent=1))


if __name__ == "__main__":
    main()
