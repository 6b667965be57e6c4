"""Document-aware fusion at 128-token chunks, chosen on dev labels, then test once.

With 128-token chunks a document has several chunks, and BM25 reads each with two neighbours each side, so a
document's chunks score alike in BM25 and its top 100 chunks hold far fewer than 100 documents. Chunk-level
min-max fusion then gives a chunk that one retriever ranks and the other does not a 0 there, even when the
other retriever ranks a sibling of it (same document) first. The candidates let a chunk missing from a list
take its document's evidence in that list, or fuse documents (best chunk per document) instead of chunks,
or fetch deeper lists; and the dense weight is re-checked, since it was chosen at 256-token chunks.

Lists come from the chunk study's 128/c2 workspaces (bench/chunk_study.py; base MiniLM, the backend `auto`
picked) through `fusion_study.ranked_lists`, i.e. the served searcher; each candidate is scored offline,
documents ranked by their first chunk as `indexer.beir_eval.doc_ranking` does. Dev cases: SciFact
`qrels/train.tsv` (809), SQuAD-300 half A, the small SciFact's dev-part queries, the demo's 63 questions.
Test, once after the choice: SciFact `qrels/test.tsv` and SQuAD-300 half B.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/doc_fusion_study.py collect --split dev
    HF_HUB_OFFLINE=1 .venv/bin/python bench/doc_fusion_study.py score --split dev
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import chunk_study as cs  # sets HF_HUB_OFFLINE and the import path
import fusion_study as fs

from common.settings import load_settings
from indexer.fusion import minmax
from indexer.metrics import evaluate_run
from machine import machine  # bench/machine.py

ROOT = fs.ROOT
WORK = ROOT / "bench" / "work" / "doc-fusion"
DEFAULT = "chunk-0.5@100"
RULE = ("Declared before any score of these lists: candidates are min-max convex combinations with dense weight "
        "0.4/0.5/0.6 fused over chunks (the served rule: a chunk missing from a list scores 0 there), over chunks "
        "where a missing chunk takes its document's best normalised score in that list ('fill'), and over "
        "documents (each list reduced to its best chunk per document, then normalised: 'doc'); each at 100 "
        "chunks a retriever (the served depth) and at 200. The figure is the mean over the dev cases (each "
        "counts once) of hybrid nDCG@10. A candidate replaces the default (chunk-0.5@100) only if its mean beats "
        "it by >= 0.003 and no dev case loses more than 0.01; the best such candidate wins. Test is scored once, "
        "for the default and the winner.")
RULE2 = ("Declared after round 1 (which kept the default: no candidate beat it) and before any round-2 score: "
         "'complete' fusion. Each candidate chunk of the union of the two lists' first N (100 or 200) gets both "
         "retrievers' real scores (the one missing from a list asked for by the retriever restricted to those "
         "ids, as a served search could), normalised by min-max over the union ('union') or by the list's own "
         "range ('list', so a chunk below the list's floor goes below 0); dense weight 0.4/0.5/0.6. Same figure "
         "and replacement rule against chunk-0.5@100.")


def _norm(ranked: list[list[float]]) -> dict[int, float]:
    return {int(c): s for (c, _), s in zip(ranked, minmax([s for _, s in ranked]))}


def _best_per_doc(ranked: list[list[float]], doc_of: dict[str, str]) -> list[list[float]]:
    seen: set[str] = set()
    out = []
    for cid, s in ranked:
        d = doc_of.get(str(cid))
        if d is not None and d not in seen:
            seen.add(d)
            out.append([cid, s])
    return out


def fuse(kind: str, w: float, dense: list[list[float]], bm25: list[list[float]], doc_of: dict[str, str]) -> list[int]:
    """Chunk ids best first under one candidate (pure; `doc_of` maps chunk id -> document id)."""
    if kind == "doc":  # one id per document in both lists: its best dense chunk, else its best BM25 chunk
        dense, bm25 = _best_per_doc(dense, doc_of), _best_per_doc(bm25, doc_of)
        rep = {doc_of[str(c)]: c for c, _ in reversed(bm25)} | {doc_of[str(c)]: c for c, _ in reversed(dense)}
        dense, bm25 = ([[rep[doc_of[str(c)]], s] for c, s in r] for r in (dense, bm25))
    lists = {"dense": (w, _norm(dense)), "bm25": (1 - w, _norm(bm25))}
    best: dict[str, dict[str, float]] = {name: {} for name in lists}  # document -> its best normalised score
    if kind == "fill":
        for name, (_, normed) in lists.items():
            for cid, s in normed.items():
                d = doc_of.get(str(cid))
                if d is not None and s > best[name].get(d, -1.0):
                    best[name][d] = s
    fused: dict[int, float] = {}
    for cid in {c for _, normed in lists.values() for c in normed}:
        total = 0.0
        for name, (weight, normed) in lists.items():
            s = normed.get(cid)
            if s is None and kind == "fill":
                s = best[name].get(doc_of.get(str(cid), ""), 0.0)
            total += weight * (s or 0.0)
        fused[cid] = total
    return [c for c, _ in sorted(fused.items(), key=lambda kv: (-kv[1], kv[0]))]


def candidates() -> list[tuple[str, str, float, int]]:
    return [(f"{kind}-{w}@{depth}", kind, w, depth) for kind in ("chunk", "fill", "doc") for w in (0.4, 0.5, 0.6)
            for depth in (100, 200)]


def complete_scores(searcher, queries: dict[str, str], lists: dict[str, Any]) -> dict[str, dict[str, list[float]]]:  # type: ignore[no-untyped-def]
    """query -> chunk id -> [dense, BM25] score for every chunk in either list: the retriever a chunk is missing
    from scores it restricted to the missing ids (exact for a flat index)."""
    import numpy as np

    out = {}
    for q, per in lists.items():
        have = {mode: {int(c): s for c, s in per[mode]} for mode in ("dense", "bm25")}
        union = sorted(set(have["dense"]) | set(have["bm25"]))
        for mode in ("dense", "bm25"):
            missing = np.array([c for c in union if c not in have[mode]], np.int64)
            if len(missing):
                ids, detail = searcher.ranked_ids(queries[q], mode, len(missing), allowed=missing)
                have[mode].update({c: detail[mode][c][1] for c in ids})
        out[q] = {str(c): [have["dense"].get(c, 0.0), have["bm25"].get(c, 0.0)] for c in union}
    return out


def fuse_complete(norm: str, w: float, dense: list[list[float]], bm25: list[list[float]],
                  complete: dict[str, list[float]]) -> list[int]:
    """Chunk ids best first: the union of the two lists, each chunk with both retrievers' real scores."""
    union = sorted({int(c) for c, _ in dense} | {int(c) for c, _ in bm25})
    fused = dict.fromkeys(union, 0.0)
    for i, (weight, ranked) in enumerate(((w, dense), (1 - w, bm25))):
        raw = [complete[str(c)][i] for c in union]
        lo, hi = (min(raw), max(raw)) if norm == "union" else (min(s for _, s in ranked), max(s for _, s in ranked))
        for c, r in zip(union, raw):
            fused[c] += weight * ((r - lo) / (hi - lo) if hi > lo else 1.0)
    return [c for c, _ in sorted(fused.items(), key=lambda kv: (-kv[1], kv[0]))]


def candidates2() -> list[tuple[str, str, float, int]]:
    return [(f"complete-{norm}-{w}@{depth}", norm, w, depth) for norm in ("union", "list") for w in (0.4, 0.5, 0.6)
            for depth in (100, 200)]


def collect(split: str, only: list[str]) -> None:
    WORK.mkdir(parents=True, exist_ok=True)
    for name, (_, labels) in cs.corpora(split).items():
        if only and name not in only:
            continue
        home = cs.WORK / f"{name}-128-c2"
        s = load_settings({"home": home, "ner": {"enabled": False}})
        queries, qrels = labels(s)
        qids = [q for q in qrels if q in queries]
        t0 = time.perf_counter()
        searcher = fs._workspace(s).searcher()
        d = fs.ranked_lists(searcher, queries, qids, depth=200)
        d["complete"] = complete_scores(searcher, queries, d["lists"])
        (WORK / f"lists-{name}-{split}.json").write_text(json.dumps(
            {"case": name, "split": split, "home": str(home.relative_to(ROOT)), "qrels": {q: qrels[q] for q in qids},
             **d, "seconds": round(time.perf_counter() - t0, 1)}))
        print(f"{name} {split}: {len(qids)} queries, {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)


def score(split: str, out: Path) -> None:
    rows: dict[str, dict[str, Any]] = {}
    for f in sorted(WORK.glob(f"lists-*-{split}.json")):
        d = json.loads(f.read_text())
        row = rows.setdefault(d["case"], {"queries": len(d["lists"]), "embedder": d["embedder"]})
        for label, kind, w, depth in candidates():
            def ranker(dn, bm, k=kind, wt=w):  # type: ignore[no-untyped-def]
                return fuse(k, wt, dn, bm, d["doc_of"])
            run = fs.doc_run(d["lists"], d["doc_of"], ranker, depth)
            row[label] = round(evaluate_run(run, d["qrels"])["ndcg@10"], 4)
        for label, norm, w, depth in candidates2():
            by_query = iter(d["complete"][q] for q in d["lists"])  # doc_run visits the queries in this order

            def complete_ranker(dn, bm, nm=norm, wt=w):  # type: ignore[no-untyped-def]
                return fuse_complete(nm, wt, dn, bm, next(by_query))
            run = fs.doc_run(d["lists"], d["doc_of"], complete_ranker, depth)
            row[label] = round(evaluate_run(run, d["qrels"])["ndcg@10"], 4)
        per_list = [per["bm25"][:100] for per in d["lists"].values()]
        row["bm25_docs_in_100_chunks"] = round(sum(len({d["doc_of"].get(str(c)) for c, _ in r}) for r in per_list)
                                               / len(per_list), 1)
    labels = [c[0] for c in candidates()] + [c[0] for c in candidates2()]
    mean = {k: round(sum(r[k] for r in rows.values()) / len(rows), 4) for k in labels}
    result: dict[str, Any] = {"command": "HF_HUB_OFFLINE=1 .venv/bin/python bench/doc_fusion_study.py "
                              + " ".join(sys.argv[1:]), "split": split, "rule": RULE, "rule_round2": RULE2,
                              "machine": machine(), "cases": rows, "mean": mean,
                              "ranked": sorted(((mean[k], k) for k in labels), reverse=True)[:8]}

    def choose(pool: list[str]) -> str:
        ok = [k for k in pool if mean[k] - mean[DEFAULT] >= 0.003
              and all(r[k] - r[DEFAULT] >= -0.01 for r in rows.values())]
        return max(ok, key=lambda k: mean[k]) if ok else DEFAULT

    if split == "dev":  # each round's rule chooses on dev only; test reports what dev chose
        result["winner"] = choose([c[0] for c in candidates()])
        result["winner_round2"] = choose([c[0] for c in candidates2()])
    else:
        dev = ROOT / "bench" / "results" / "doc-fusion-study-dev.json"
        result["dev_winners"] = ({k: v for k, v in json.loads(dev.read_text()).items() if k.startswith("winner")}
                                 if dev.exists() else None)
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps({"winners": result.get("dev_winners") or [result["winner"], result["winner_round2"]],
                      "default": mean[DEFAULT],
                      "best": result["ranked"][:5]}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("phase", choices=["collect", "score"])
    ap.add_argument("--split", choices=["dev", "test"], default="dev")
    ap.add_argument("--cases", default="", help="comma-separated corpora (default: all of the split's)")
    a = ap.parse_args()
    if a.phase == "collect":
        collect(a.split, [c for c in a.cases.split(",") if c])
    else:
        score(a.split, ROOT / "bench" / "results" / f"doc-fusion-study-{a.split}.json")


if __name__ == "__main__":
    main()
