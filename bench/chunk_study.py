"""Chunk size (`indexer.chunk_tokens`, with `chunk_overlap` an eighth of it), chosen on dev labels, then test once.

The 256-token default was never chosen on anything. all-MiniLM-L6-v2 reads up to 256 word pieces but was
trained on 128, so a smaller chunk may embed better; BM25 reads each chunk with its neighbours either way.
Each corpus is ingested once per candidate with the defaults otherwise (embed backend as `auto` picks it,
NER off: it does not touch ranking), and scored as `ragkiln eval retrieval` scores: documents ranked as a
served search ranks them (`indexer.beir_eval.doc_ranking`), nDCG@10 per mode.

Dev cases (corpus, labels): SciFact with every `qrels/train.tsv` query (chunking is not trained); SQuAD v1.1
dev's first 300 paragraphs with half A of their questions; the small SciFact (bench/embedder_gate.py) with
its dev-part queries; the sample corpus with the questions we wrote (bench/data). Test, once after the
choice: SciFact `qrels/test.tsv` and SQuAD half B.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/chunk_study.py --split dev
    HF_HUB_OFFLINE=1 .venv/bin/python bench/chunk_study.py --split test   # once, after the choice
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import fusion_study as fs  # sets HF_HUB_OFFLINE and the import path

from common.settings import load_settings
from machine import machine  # bench/machine.py

ROOT, DATA = fs.ROOT, fs.DATA
WORK = ROOT / "bench" / "work" / "chunks"
CANDIDATES = ("128", "192", "256")  # chunk_tokens, BM25 reading one neighbour each side (the default)
DEFAULT = "256"
ROUND2 = ("128/c2", "192/c2")  # the same chunks, BM25 reading two neighbours each side
RULE = ("Declared before any dev score: candidates chunk_tokens 128, 192, 256 (overlap an eighth of it). The "
        "figure is the mean over the dev cases (each counts once) of hybrid nDCG@10 as served. A candidate "
        "replaces the default 256 only if its mean beats it by >= 0.003 and no dev case loses more than 0.01 "
        "hybrid; the best such candidate wins. Dense and BM25 are reported, not chosen on. Test is scored once, "
        "for the default and the winner.")
RULE2 = ("Declared after round 1's dev scores (which chose 192: 128 gained dense on every case but lost BM25 on "
         "SciFact, whose chunks then carry half the neighbouring text), before any round-2 score: candidates "
         "128 and 192 with BM25 reading two neighbouring chunks each side (bm25_context_chunks 2; the workspace "
         "copied from round 1, BM25 rebuilt, vectors reused). A candidate replaces round 1's winner only if its "
         "mean hybrid nDCG@10 over the same dev cases beats the winner's by >= 0.003 and no case loses more than "
         "0.01 hybrid against the 256 default; the best such candidate wins.")


def parse(label: str) -> tuple[int, int]:
    """'128' -> (128, 1); '128/c2' -> (128, 2): chunk_tokens and bm25_context_chunks."""
    tokens, _, ctx = label.partition("/c")
    return int(tokens), int(ctx or 1)


def corpora(split: str) -> dict[str, tuple[Path, Any]]:
    """name -> (the corpus path ingest reads, labels(settings) -> (queries, qrels of this split))."""
    from embedder_gate import demo_labels, scifact_mini, squad_labels

    from indexer.beir_eval import load_qrels, load_queries

    sci = DATA / "scifact"
    squad_dir = WORK / "squad-beir"
    squad_q, squad_qrels = squad_labels(DATA / "squad-v1.1" / "dev-v1.1.json", squad_dir, 300)
    mini_dir = WORK / "scifact-mini-beir"
    mini_q, mini_qrels = scifact_mini(sci, mini_dir, 200, 250)
    part = "A" if split == "dev" else "B"
    out: dict[str, tuple[Path, Any]] = {
        "scifact": (sci / "corpus.jsonl",
                    lambda s: (load_queries(sci), load_qrels(sci, "train" if split == "dev" else "test"))),
        "squad-300": (squad_dir / "corpus.jsonl", lambda s: (squad_q, squad_qrels[part])),
    }
    if split == "dev":  # the small SciFact's B half and the demo's questions are not a test split
        out["scifact-mini"] = (mini_dir / "corpus.jsonl", lambda s: (mini_q, mini_qrels["A"]))

        def demo(s):  # type: ignore[no-untyped-def]
            q, qrels = demo_labels(s)
            return q, {**qrels["A"], **qrels["B"]}

        out["demo"] = (ROOT / "samples" / "python-docs", demo)
    return out


def ingest_and_score(s: Any, path: Path, labels: Any, what: str) -> dict[str, Any]:
    """Ingest `path` into the workspace of settings `s`, then score it as `ragkiln eval retrieval` does (documents
    ranked as served): nDCG@10, Recall@100 and MRR@10 per mode, with the chunks, embedder and ingest time."""
    from indexer import service
    from indexer.beir_eval import evaluate_searcher
    from indexer.workspace import Workspace

    t0 = time.perf_counter()
    service.ingest(s, [path], progress=False)
    ingest_s = time.perf_counter() - t0
    searcher = Workspace.open(s).searcher()
    queries, qrels = labels(s)
    metrics = evaluate_searcher(searcher, queries, qrels, ["bm25", "dense", "hybrid"])
    print(f"{what}: " + ", ".join(f"{m} {r['ndcg@10']:.4f}" for m, r in metrics.items())
          + f" ({searcher.size} chunks, ingest {ingest_s:.0f} s)", file=sys.stderr, flush=True)
    return {**{m: {k: v for k, v in r.items() if k in ("ndcg@10", "recall@100", "mrr@10", "queries")}
               for m, r in metrics.items()},
            "chunks": searcher.size, "embedder": searcher.embedder.id, "ingest_seconds": round(ingest_s, 1)}


def choose(rows: dict[str, dict[str, Any]], candidates: tuple[str, ...] = CANDIDATES, incumbent: str = DEFAULT
           ) -> dict[str, Any]:
    """The rule, applied to {corpus: {label: metrics}}: each candidate's mean hybrid nDCG@10 and the winner, which
    must beat `incumbent` by 0.003 on the mean and lose at most 0.01 on no case against the 256 default."""
    def hyb(c: str, t: str) -> float:
        return rows[c][t]["hybrid"]["ndcg@10"]

    labels = (*candidates, incumbent, DEFAULT)
    cases = sorted(c for c in rows if all(t in rows[c] for t in labels))
    mean = {t: round(sum(hyb(c, t) for c in cases) / len(cases), 4) for t in dict.fromkeys(labels)}
    ok = [t for t in candidates if t != incumbent and mean[t] >= mean[incumbent] + 0.003
          and all(hyb(c, t) >= hyb(c, DEFAULT) - 0.01 for c in cases)]
    return {"cases": cases, "mean_hybrid_ndcg@10": mean,
            "winner": max(ok, key=lambda t: mean[t]) if ok else incumbent}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--split", choices=["dev", "test"], default="dev")
    ap.add_argument("--round", type=int, choices=[1, 2], default=1, help="dev only: 2 runs RULE2's candidates")
    ap.add_argument("--only", default="", help="comma-separated corpora (default: all of the split's)")
    ap.add_argument("--out", type=Path, default=None)
    a = ap.parse_args()
    out = a.out or ROOT / "bench" / "results" / f"chunk-study-{a.split}.json"
    sizes: tuple[str, ...] = CANDIDATES if a.round == 1 else ROUND2
    if a.split == "test":
        dev = json.loads((ROOT / "bench" / "results" / "chunk-study-dev.json").read_text())
        winner = (dev.get("choice_round2") or dev["choice"])["winner"]
        sizes = tuple(dict.fromkeys((DEFAULT, winner)))
    res: dict[str, Any] = json.loads(out.read_text()) if out.exists() else {}
    res.setdefault("commands", [])
    res["commands"] = [*res["commands"], " ".join(["python"] + sys.argv)]
    res.update({"rule": RULE, "machine": machine()})
    if a.round == 2:
        res["rule_round2"] = RULE2
    rows = res.setdefault("rows", {})
    only = {c for c in a.only.split(",") if c}
    WORK.mkdir(parents=True, exist_ok=True)
    for name, (path, labels) in corpora(a.split).items():
        if only and name not in only:
            continue
        for label in sizes:
            if label in rows.get(name, {}):
                continue
            tokens, context = parse(label)
            home = WORK / f"{name}-{label.replace('/', '-')}"
            if context != 1 and not home.exists() and (WORK / f"{name}-{tokens}").exists():
                shutil.copytree(WORK / f"{name}-{tokens}", home)  # the chunks and their vectors, reused
            s = load_settings({"home": home, "ner": {"enabled": False},
                               "indexer": {"chunk_tokens": tokens, "chunk_overlap": tokens // 8,
                                           "bm25_context_chunks": context}})
            rows.setdefault(name, {})[label] = ingest_and_score(s, path, labels, f"{name} {label}")
            if a.split == "dev" and a.round == 1 and all(all(t in v for t in CANDIDATES) for v in rows.values()):
                res["choice"] = choose(rows)
            if a.split == "dev" and a.round == 2 and all(all(t in v for t in ROUND2) for v in rows.values()):
                res["choice_round2"] = choose(rows, ROUND2, res["choice"]["winner"])
            out.write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
