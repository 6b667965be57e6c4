"""BM25's k1 and b, chosen on dev labels of several corpora, then test once.

The parameters (k1 1.5, b 0.75) were never chosen on anything. This reuses `fusion_study.py`'s saved dense
lists (its `collect` phase: the real searcher's top chunks per query) and, per corpus, rebuilds only BM25 with
each candidate over the same chunk texts the indexer gives it (`iter_bm25_texts`: title and neighbours), then
fuses the two the served way (min-max, dense weight 0.5, 100 chunks a retriever) and scores documents as
`indexer.beir_eval` does. Cases and splits are fusion_study's.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/bm25_study.py --split dev
    HF_HUB_OFFLINE=1 .venv/bin/python bench/bm25_study.py --split test   # once, after the choice
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import fusion_study as fs  # sets HF_HUB_OFFLINE and the import path

from common.settings import load_settings
from indexer.bm25 import BM25Index
from indexer.metrics import evaluate_run
from indexer.stream import iter_bm25_texts

ROOT = fs.ROOT
GRID = [(k1, b) for k1 in (0.9, 1.2, 1.5, 2.0) for b in (0.3, 0.5, 0.75, 0.9)]
DEFAULT = (1.5, 0.75)
RULE = ("Declared before any dev score: candidates k1 in {0.9, 1.2, 1.5, 2.0} x b in {0.3, 0.5, 0.75, 0.9}. "
        "The figure is the mean over fusion_study's dev cases (each counts once) of hybrid nDCG@10 as served "
        "(min-max 0.5, 100 chunks a retriever). A candidate replaces the default (1.5, 0.75) only if its mean "
        "beats it by >= 0.003 and no dev case loses more than 0.01 hybrid; the best such candidate wins. "
        "Test is scored once, for the default and the winner.")


def bm25_texts_of(ws, context: int) -> tuple[list[str], Any]:  # type: ignore[no-untyped-def]
    """The chunk texts BM25 is built from (title and neighbours), in the active index's order, and their ids."""
    ids = ws.searcher().gen.bm25.ids
    return list(iter_bm25_texts(ws.store, ids, ws.store.active_documents(), context)), ids


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--split", choices=["dev", "test"], default="dev")
    ap.add_argument("--out", type=Path, default=None)
    a = ap.parse_args()
    out = a.out or ROOT / "bench" / "results" / f"bm25-study-{a.split}.json"
    grid, dev_winner = GRID, None
    if a.split == "test":
        dev = json.loads((ROOT / "bench" / "results" / "bm25-study-dev.json").read_text())
        dev_winner = tuple(dev["winner"])
        grid = sorted({DEFAULT, dev_winner})
    specs = fs.case_specs()
    fuse = fs.convex(fs._minmax, 0.5)
    rows: dict[str, dict[str, Any]] = {}
    built: dict[str, dict[tuple[float, float], BM25Index]] = {}
    for f in sorted(fs.WORK.glob(f"lists-*-{a.split}.json")):
        d = json.loads(f.read_text())
        spec = specs[d["case"]]
        t0 = time.perf_counter()
        s = load_settings({"home": fs.WORK / spec["home"], "ner": {"enabled": False}, "indexer": spec["indexer"]})
        ws = fs._workspace(s)
        if spec["home"] not in built:  # BM25 depends on the corpus only: base and adapted cases share it
            texts, ids = bm25_texts_of(ws, s.indexer.bm25_context_chunks)
            built[spec["home"]] = {kb: BM25Index.build(iter(texts), ids, kb[0], kb[1], s.indexer.stemmer_language)
                                   for kb in grid}
        queries, _ = fs.labels(spec["labels"], a.split, s)
        chunks_needed: set[int] = set()
        per_kb: dict[tuple[float, float], dict[str, Any]] = {}
        for kb, bm in built[spec["home"]].items():
            lists = {}
            for q, per in d["lists"].items():
                sc, ids_b = bm.search(queries[q], fs.SERVED)
                ranked = [[int(c), float(x)] for c, x in zip(ids_b, sc)]
                chunks_needed.update(c for c, _ in ranked)
                lists[q] = {"dense": per["dense"][:fs.SERVED], "bm25": ranked}
            per_kb[kb] = lists
        missing = sorted(c for c in chunks_needed if str(c) not in d["doc_of"])
        doc_of = {**d["doc_of"], **{str(c): ch.doc_id for c, ch in ws.store.get_chunks(missing).items()}}
        row: dict[str, Any] = {"queries": len(d["lists"])}
        for kb, lists in per_kb.items():
            hy = evaluate_run(fs.doc_run(lists, doc_of, fuse, fs.SERVED), d["qrels"])["ndcg@10"]
            bm_alone = evaluate_run(fs.doc_run(lists, doc_of, lambda dn, b: [c for c, _ in b], fs.SERVED),
                                    d["qrels"])["ndcg@10"]
            row[f"{kb[0]}/{kb[1]}"] = {"hybrid": round(hy, 4), "bm25": round(bm_alone, 4)}
        rows[d["case"]] = row
        print(f"{d['case']}: {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    keys = [f"{k1}/{b}" for k1, b in grid]
    mean = {k: {m: round(sum(r[k][m] for r in rows.values()) / len(rows), 4) for m in ("hybrid", "bm25")}
            for k in keys}
    default = f"{DEFAULT[0]}/{DEFAULT[1]}"
    result: dict[str, Any] = {"command": "HF_HUB_OFFLINE=1 .venv/bin/python bench/bm25_study.py " + " ".join(sys.argv[1:]),
                              "split": a.split, "rule": RULE, "machine": fs.machine(), "cases": rows, "mean": mean,
                              "ranked": sorted(((mean[k]["hybrid"], k) for k in keys), reverse=True)[:8]}
    if a.split == "dev":
        eligible = [k for k in keys if mean[k]["hybrid"] - mean[default]["hybrid"] >= 0.003
                    and all(r[k]["hybrid"] - r[default]["hybrid"] >= -0.01 for r in rows.values())]
        best = max(eligible, key=lambda k: mean[k]["hybrid"]) if eligible else default
        result["eligible"] = eligible
        result["winner"] = [float(x) for x in best.split("/")]
    else:
        result["dev_winner"] = list(dev_winner)
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps({"winner": result.get("winner", result.get("dev_winner")), "default": mean[default],
                      "best": result["ranked"][:5]}))


if __name__ == "__main__":
    main()
