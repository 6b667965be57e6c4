"""BM25's k1 and b, chosen on dev labels of several corpora, then test once.

The parameters (k1 1.5, b 0.75) were never chosen on anything. This reuses `fusion_study.py`'s saved dense
lists (its `collect` phase: the real searcher's top chunks per query) and, per corpus, rebuilds only BM25 with
each candidate over the same chunk texts the indexer gives it (`iter_bm25_texts`: title and neighbours), then
fuses the two the served way (min-max, dense weight 0.5, 100 chunks a retriever) and scores documents as
`indexer.beir_eval` does. Cases and splits are fusion_study's.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/bm25_study.py --split dev
    HF_HUB_OFFLINE=1 .venv/bin/python bench/bm25_study.py --split test   # once, after the choice

Round 2 (`--round 2`), after the default chunking became 128 tokens with two neighbours: the lists are
bench/doc_fusion_study.py's (the chunk study's 128/c2 workspaces, base MiniLM), the grid smaller, and the
title counted two or three times in a chunk's BM25 text (a field weight, as BM25F gives a title).
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


GRID2 = [(k1, b, t) for k1 in (0.9, 1.2, 1.5) for b in (0.5, 0.75) for t in (1,)] + [(1.5, 0.75, 2), (1.5, 0.75, 3)]
DEFAULT2 = (1.5, 0.75, 1)
RULE2 = ("Declared after round 1 (at 256-token chunks, which kept the default) and before any round-2 score: "
         "candidates k1 in {0.9, 1.2, 1.5} x b in {0.5, 0.75}, and the default k1/b with the title counted 2 or 3 "
         "times in each chunk's BM25 text. Dev cases: the chunk study's four (bench/doc_fusion_study.py's lists), "
         "served fusion (min-max 0.5, 100 chunks a retriever). Same replacement rule against (1.5, 0.75, title "
         "once); test once for the default and the winner.")


def bm25_texts_of(ws, context: int, title_times: int = 1) -> tuple[list[str], Any]:  # type: ignore[no-untyped-def]
    """The chunk texts BM25 is built from (title and neighbours), in the active index's order, and their ids;
    `title_times` > 1 puts the title in front that many times more, less one."""
    ids = ws.searcher().gen.bm25.ids
    texts = list(iter_bm25_texts(ws.store, ids, ws.store.active_documents(), context))
    if title_times > 1:
        chunks = ws.store.get_chunks([int(i) for i in ids])
        texts = [(chunks[int(i)].title + "\n") * (title_times - 1) + t for i, t in zip(ids, texts)]
    return texts, ids


def round2_cases(split: str) -> list[tuple[dict[str, Any], Any, dict[str, str]]]:
    """(lists, settings, queries) of each chunk-study case, from bench/doc_fusion_study.py's collect."""
    import chunk_study as cs
    import doc_fusion_study as dfs

    labels = cs.corpora(split)
    out = []
    for f in sorted(dfs.WORK.glob(f"lists-*-{split}.json")):
        d = json.loads(f.read_text())
        s = load_settings({"home": ROOT / d["home"], "ner": {"enabled": False}})
        out.append((d, s, labels[d["case"]][1](s)[0]))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--split", choices=["dev", "test"], default="dev")
    ap.add_argument("--round", type=int, choices=[1, 2], default=1)
    ap.add_argument("--out", type=Path, default=None)
    a = ap.parse_args()
    tag = "" if a.round == 1 else "-round2"
    out = a.out or ROOT / "bench" / "results" / f"bm25-study{tag}-{a.split}.json"
    default: tuple[float, ...] = DEFAULT if a.round == 1 else DEFAULT2
    grid: list[tuple[float, ...]] = list(GRID if a.round == 1 else GRID2)
    dev_winner = None
    if a.split == "test":
        dev = json.loads((ROOT / "bench" / "results" / f"bm25-study{tag}-dev.json").read_text())
        dev_winner = tuple(dev["winner"])
        grid = sorted({default, dev_winner})
    if a.round == 1:
        specs = fs.case_specs()
        cases = []
        for f in sorted(fs.WORK.glob(f"lists-*-{a.split}.json")):
            d = json.loads(f.read_text())
            spec = specs[d["case"]]
            s = load_settings({"home": fs.WORK / spec["home"], "ner": {"enabled": False}, "indexer": spec["indexer"]})
            cases.append((d, s, fs.labels(spec["labels"], a.split, s)[0]))
    else:
        cases = round2_cases(a.split)
    fuse = fs.convex(fs._minmax, 0.5)
    rows: dict[str, dict[str, Any]] = {}
    built: dict[str, dict[tuple[float, ...], BM25Index]] = {}
    for d, s, queries in cases:
        t0 = time.perf_counter()
        ws = fs._workspace(s)
        home = str(s.home)
        if home not in built:  # BM25 depends on the corpus only: base and adapted cases share it
            built[home] = {}
            for times in sorted({kb[2] if len(kb) > 2 else 1 for kb in grid}):
                texts, ids = bm25_texts_of(ws, s.indexer.bm25_context_chunks, int(times))
                built[home].update({kb: BM25Index.build(iter(texts), ids, kb[0], kb[1], s.indexer.stemmer_language)
                                    for kb in grid if (kb[2] if len(kb) > 2 else 1) == times})
        chunks_needed: set[int] = set()
        per_kb: dict[tuple[float, float], dict[str, Any]] = {}
        for kb, bm in built[home].items():
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
            row["/".join(str(x) for x in kb)] = {"hybrid": round(hy, 4), "bm25": round(bm_alone, 4)}
        rows[d["case"]] = row
        print(f"{d['case']}: {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    keys = ["/".join(str(x) for x in kb) for kb in grid]
    mean = {k: {m: round(sum(r[k][m] for r in rows.values()) / len(rows), 4) for m in ("hybrid", "bm25")}
            for k in keys}
    default_key = "/".join(str(x) for x in default)
    result: dict[str, Any] = {"command": "HF_HUB_OFFLINE=1 .venv/bin/python bench/bm25_study.py " + " ".join(sys.argv[1:]),
                              "split": a.split, "rule": RULE if a.round == 1 else RULE2, "machine": fs.machine(), "cases": rows, "mean": mean,
                              "ranked": sorted(((mean[k]["hybrid"], k) for k in keys), reverse=True)[:8]}
    if a.split == "dev":
        eligible = [k for k in keys if mean[k]["hybrid"] - mean[default_key]["hybrid"] >= 0.003
                    and all(r[k]["hybrid"] - r[default_key]["hybrid"] >= -0.01 for r in rows.values())]
        best = max(eligible, key=lambda k: mean[k]["hybrid"]) if eligible else default_key
        result["eligible"] = eligible
        result["winner"] = [float(x) for x in best.split("/")]
    else:
        result["dev_winner"] = list(dev_winner)
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps({"winner": result.get("winner", result.get("dev_winner")), "default": mean[default_key],
                      "best": result["ranked"][:5]}))


if __name__ == "__main__":
    main()
