"""Which fusion of BM25 and dense scores, chosen on dev labels of several corpora, then test once.

`collect` runs the real searcher once per query and keeps each retriever's top chunks with their scores
(bench/work/fusion/lists-<case>-<split>.json); `score` fuses those lists offline with every candidate and
turns chunks into documents the way `indexer.beir_eval` does (first occurrence), so a candidate costs
seconds, not a reindex. The served depth is `indexer.candidates` (100 chunks a retriever); the
evaluation's `doc_ranking` fetches 300, which changes the min-max floor, so both depths are scored.

Cases (corpus x model), dev labels only: SciFact `qrels/train.tsv` (every query: fusion is not trained),
base and the default-trained model (WiSE-FT 0.3, bench/work/emb28-zen4b); SQuAD's first 300 paragraphs,
half A, and the small SciFact with the dev part of `train_split` whose judged documents it holds
(bench/embedder_gate.py's corpora and models, bench/work/fill1); the demo corpus with the questions we
wrote. Test: SciFact `qrels/test.tsv` and SQuAD half B, once.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/fusion_study.py collect --split dev
    HF_HUB_OFFLINE=1 .venv/bin/python bench/fusion_study.py score --split dev
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from common.settings import DEFAULT_EMBEDDER, load_settings  # noqa: E402
from indexer.fusion import minmax as _minmax, rrf_fuse  # noqa: E402  (the served normalisation and RRF)
from indexer.metrics import evaluate_run  # noqa: E402
from machine import machine  # noqa: E402  (bench/machine.py)

WORK = ROOT / "bench" / "work" / "fusion"
DATA = ROOT.parent / "shared" / "datasets"
DEPTH = 300  # chunks kept per retriever (the evaluation's widest first fetch)
SERVED = 100  # indexer.candidates, the default

RULE = ("Declared before any dev score: candidates are min-max and z-score convex combinations with dense "
        "weight 0.3-0.7 and RRF with k 10/30/60, each at the served depth (100 chunks a retriever). The figure "
        "is the mean over the dev cases of hybrid nDCG@10 (each case counts once). A candidate replaces the "
        "default (min-max, 0.5) only if its mean beats it by >= 0.003 and no dev case loses more than 0.01; "
        "the best such candidate wins. Test is scored once, for the default and the winner.")


def case_specs() -> dict[str, dict[str, Any]]:
    """name -> home, settings overrides, model, and where its labels come from."""
    fill = ROOT / "bench" / "work" / "fill1"
    emb = ROOT / "bench" / "work" / "emb28-zen4b"
    torch = {"embed_backend": "torch"}  # as embedder_gate.py built them
    return {
        "scifact-base": {"seed": emb / "scifact", "home": "scifact", "indexer": {}, "model": DEFAULT_EMBEDDER,
                         "labels": "scifact"},
        "scifact-adapted": {"seed": emb / "scifact", "home": "scifact", "indexer": {},
                            "model": str(emb / "models" / "scifact-default-wise-0.3"), "labels": "scifact"},
        "squad-base": {"seed": fill / "squad", "home": "squad", "indexer": torch, "model": DEFAULT_EMBEDDER,
                       "labels": "squad"},
        "squad-adapted": {"seed": fill / "squad", "home": "squad", "indexer": torch,
                          "model": str(fill / "models" / "squad-default-wise-0.3"), "labels": "squad"},
        "mini-base": {"seed": fill / "scifact-mini", "home": "scifact-mini", "indexer": torch,
                      "model": DEFAULT_EMBEDDER, "labels": "mini"},
        "mini-adapted": {"seed": fill / "scifact-mini", "home": "scifact-mini", "indexer": torch,
                         "model": str(fill / "models" / "scifact-mini-default-wise-0.3"), "labels": "mini"},
        "demo-base": {"seed": None, "home": "demo", "indexer": {}, "model": DEFAULT_EMBEDDER, "labels": "demo"},
    }


def labels(kind: str, split: str, settings) -> tuple[dict[str, str], dict[str, dict[str, int]]]:  # type: ignore[no-untyped-def]
    """(queries, qrels) of a case's dev or test labels; empty when the case has no test labels."""
    from embedder_gate import demo_labels, squad_labels

    from indexer.beir_eval import load_qrels, load_queries

    if kind == "scifact":
        return load_queries(DATA / "scifact"), load_qrels(DATA / "scifact", "train" if split == "dev" else "test")
    if kind == "squad":
        q, qrels = squad_labels(DATA / "squad-v1.1" / "dev-v1.1.json", WORK / "squad-beir", 300)
        return q, qrels["A" if split == "dev" else "B"]
    if kind == "mini":
        if split == "test":
            return {}, {}
        from embedder import train_split

        docs = {c.doc_id for c in _workspace(settings).store.iter_chunks()}
        dev = train_split(DATA / "scifact")["dev"]
        return load_queries(DATA / "scifact"), {q: r for q, r in dev.items() if set(r) <= docs}
    if kind == "demo":
        if split == "test":
            return {}, {}
        q, qrels = demo_labels(settings)
        return q, {**qrels["A"], **qrels["B"]}
    raise ValueError(kind)


def _workspace(settings):  # type: ignore[no-untyped-def]
    from indexer.workspace import Workspace

    return Workspace.open(settings)


def collect(split: str, only: list[str]) -> None:
    from indexer import service
    from indexer.embedder import load_embedder

    WORK.mkdir(parents=True, exist_ok=True)
    for name, spec in case_specs().items():
        if only and name not in only:
            continue
        out = WORK / f"lists-{name}-{split}.json"
        home = WORK / spec["home"]
        if spec["seed"] is not None and not home.exists():
            shutil.copytree(spec["seed"], home)
        s = load_settings({"home": home, "ner": {"enabled": False}, "indexer": spec["indexer"]})
        if spec["seed"] is None and not home.exists():
            service.ingest(s, [ROOT / "samples" / "python-docs"], progress=False)
        queries, qrels = labels(spec["labels"], split, s)
        qids = [q for q in qrels if q in queries]
        if not qids:
            continue
        t0 = time.perf_counter()
        want = load_embedder(spec["model"], s.indexer.threads).base_id
        if _workspace(s).searcher().embedder.base_id != want:
            service.reindex(s, embedder=spec["model"], progress=False)
        searcher = _workspace(s).searcher()
        d = ranked_lists(searcher, queries, qids)
        out.write_text(json.dumps({"case": name, "split": split, "model": spec["model"],
                                   "qrels": {q: qrels[q] for q in qids}, **d,
                                   "seconds": round(time.perf_counter() - t0, 1)}))
        print(f"{name} {split}: {len(qids)} queries, {time.perf_counter() - t0:.0f} s", file=sys.stderr)


def ranked_lists(searcher, queries: dict[str, str], qids: list[str], depth: int = DEPTH) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    """Each query's dense and BM25 chunk lists (id, score) as the served searcher ranks them, and each chunk's
    document: what every fusion candidate is scored from offline."""
    vecs = searcher.encode_queries([queries[q] for q in qids])
    lists: dict[str, Any] = {}
    for i, q in enumerate(qids):
        per = {}
        for mode in ("dense", "bm25"):
            ids, detail = searcher.ranked_ids(queries[q], mode, depth, query_vec=vecs[i:i + 1])
            per[mode] = [[cid, detail[mode][cid][1]] for cid in ids]
        lists[q] = per
    cids = {cid for per in lists.values() for ranked in per.values() for cid, _ in ranked}
    chunks = searcher.store.get_chunks(sorted(cids))
    return {"embedder": searcher.embedder.id, "lists": lists,
            "doc_of": {str(c): chunks[c].doc_id for c in cids if c in chunks}}


# --- fusion candidates: pure functions of two (id, score) lists ------------------------------------------

def _zscore(scores: list[float]) -> list[float]:
    m = sum(scores) / len(scores)
    sd = math.sqrt(sum((s - m) ** 2 for s in scores) / len(scores)) or 1.0
    return [(s - m) / sd for s in scores]


def convex(norm: Callable[[list[float]], list[float]], w: float):  # type: ignore[no-untyped-def]
    """A convex combination of normalised scores; a chunk missing from a list gets that list's floor."""
    def fuse(dense: list[list[float]], bm25: list[list[float]]) -> list[int]:
        fused: dict[int, float] = {}
        floors = {}
        for name, weight, ranked in (("dense", w, dense), ("bm25", 1 - w, bm25)):
            if not ranked:
                continue
            normed = norm([s for _, s in ranked])
            floors[name] = (weight, min(normed))
            for (cid, _), s in zip(ranked, normed):
                fused[int(cid)] = fused.get(int(cid), 0.0) + weight * s
        # min-max's floor is 0, the served behaviour; z-score's floor is the list's lowest z
        present = {name: {int(c) for c, _ in r} for name, r in (("dense", dense), ("bm25", bm25))}
        for cid in fused:
            for name, (weight, floor) in floors.items():
                if cid not in present[name]:
                    fused[cid] += weight * floor
        return [c for c, _ in sorted(fused.items(), key=lambda kv: (-kv[1], kv[0]))]
    return fuse


def rrf(k: int):  # type: ignore[no-untyped-def]
    def fuse(dense: list[list[float]], bm25: list[list[float]]) -> list[int]:
        return [c for c, _ in rrf_fuse({"dense": [int(c) for c, _ in dense], "bm25": [int(c) for c, _ in bm25]}, k)]
    return fuse


def candidates() -> dict[str, Any]:
    out: dict[str, Any] = {}
    for w in (0.3, 0.4, 0.5, 0.6, 0.7):
        out[f"minmax-{w}"] = convex(_minmax, w)
        out[f"zscore-{w}"] = convex(_zscore, w)
    for k in (10, 30, 60):
        out[f"rrf-{k}"] = rrf(k)
    return out


def doc_run(lists: dict[str, Any], doc_of: dict[str, str], fuse, depth: int) -> dict[str, list[str]]:  # type: ignore[no-untyped-def]
    run = {}
    for q, per in lists.items():
        ranked = fuse(per["dense"][:depth], per["bm25"][:depth])
        seen: list[str] = []
        for cid in ranked:
            d = doc_of.get(str(cid))
            if d is not None and d not in seen:
                seen.append(d)
            if len(seen) >= 10:
                break
        run[q] = seen
    return run


def score(split: str, out: Path, only: list[str]) -> None:
    files = sorted(WORK.glob(f"lists-*-{split}.json"))
    rows: dict[str, dict[str, Any]] = {}
    for f in files:
        d = json.loads(f.read_text())
        if only and d["case"] not in only:
            continue
        row = rows.setdefault(d["case"], {"queries": len(d["lists"]), "embedder": d["embedder"]})
        for name, fuse in candidates().items():
            for depth in (SERVED, DEPTH):
                r = evaluate_run(doc_run(d["lists"], d["doc_of"], fuse, depth), d["qrels"])
                row[f"{name}@{depth}"] = round(r["ndcg@10"], 4)
        for mode in ("dense", "bm25"):
            def alone(dn, bm, m=mode):  # type: ignore[no-untyped-def]
                return [int(c) for c, _ in (dn if m == "dense" else bm)]
            run = doc_run(d["lists"], d["doc_of"], alone, DEPTH)
            row[mode] = round(evaluate_run(run, d["qrels"])["ndcg@10"], 4)
    keys = [k for k in next(iter(rows.values())) if "@" in k]
    mean = {k: round(sum(r[k] for r in rows.values()) / len(rows), 4) for k in keys}
    default = f"minmax-0.5@{SERVED}"
    served = [k for k in keys if k.endswith(f"@{SERVED}")]
    result: dict[str, Any] = {"command": "HF_HUB_OFFLINE=1 .venv/bin/python bench/fusion_study.py " + " ".join(sys.argv[1:]),
                              "split": split, "rule": RULE, "machine": machine(), "cases": rows, "mean": mean,
                              "ranked": sorted(((mean[k], k) for k in served), reverse=True)[:8]}
    if split == "dev":  # the rule chooses on dev only; test reports what dev chose
        result["eligible"] = [k for k in served if mean[k] - mean[default] >= 0.003
                              and all(r[k] - r[default] >= -0.01 for r in rows.values())]
        result["winner"] = max(result["eligible"], key=lambda k: mean[k]) if result["eligible"] else default
    else:
        dev = ROOT / "bench" / "results" / "fusion-study-dev.json"
        result["dev_winner"] = json.loads(dev.read_text())["winner"] if dev.exists() else None
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps({"winner": result.get("winner", result.get("dev_winner")), "default": mean[default],
                      "best": result["ranked"][:5]}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("phase", choices=["collect", "score"])
    ap.add_argument("--split", choices=["dev", "test"], default="dev")
    ap.add_argument("--cases", default="", help="comma-separated case names (default: all)")
    ap.add_argument("--out", type=Path, default=None)
    a = ap.parse_args()
    only = [c for c in a.cases.split(",") if c]
    if a.phase == "collect":
        collect(a.split, only)
    else:
        score(a.split, a.out or ROOT / "bench" / "results" / f"fusion-study-{a.split}.json", only)


if __name__ == "__main__":
    main()
