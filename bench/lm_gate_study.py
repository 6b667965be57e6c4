"""Does the build's label-free LM check make the right call? (issue 28 item 3, the LM half)

    HF_HUB_OFFLINE=1 .venv/bin/python bench/lm_gate_study.py --threads 2 [--cases a,b] \
        [--out bench/results/lm-gate-study.json]

`ragkiln build` trains a plain LM beside the retrieval-trained one and tunes the one with the lower held-out
perplexity (the retrieval model reading its retrieved neighbours, the plain one the same target tokens
alone; trainer/lm/gate.py). Here each corpus x recipe case trains (or reuses, from bench/lm_retrieval.py's work
folders) both models, then scores them on documents neither trained on:

- A and B: the model's own held-out documents split in two by a hash of their ids;
- other: for SciFact, 300 documents of the other half of the corpus (never trained on, nor held out by the
  run), with neighbours from that half's own BM25 index.

Rule, fixed before any case was scored (this file's first commit): the check's call is "retrieval" when
the with-context perplexity over the plain model's is below 1 on the documents it sees. Call from A, truth
from B (every case); call from A and B together (what the build sees), truth from other (SciFact cases).
Right when both sides of 1 agree. Nothing is chosen here: the rule is the build's, and no case changes it.

Cases: today's default recipe and the recipe issue 28 started from (init=normal, context_loss=false: tiny
then measured 1.22x the plain model's perplexity on SciFact, a made-bad case), tiny on SciFact's two halves
and on the demo corpus (80 steps as the demo preset trains), plus the small and base models and the SQuAD
models already on disk.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import torch  # noqa: E402

from bench.machine import machine  # noqa: E402
from lm import Bm25Searcher  # noqa: E402  (bench/lm.py)
from lm_retrieval import WORK, half_chunks, run_preset, sample_chunks, squad_chunks  # noqa: E402
from trainer.lm.checkpoint import load_model  # noqa: E402
from trainer.lm.data import DataSpec, LmDataset, build_dataset, searcher_neighbours  # noqa: E402
from trainer.lm.train import heldout_loss  # noqa: E402

OLD = {"init": "normal", "context_loss": False}
# name: (corpus, preset, overrides, lm_retrieval work tag)
CASES: dict[str, tuple[str, str, dict[str, Any], str]] = {
    "scifact-test-tiny": ("test", "tiny", {}, "gate-test"),
    "scifact-test-tiny-old": ("test", "tiny", OLD, "gate-test-old"),
    "scifact-dev-tiny": ("dev", "tiny", {}, "gate-dev"),
    "scifact-dev-tiny-old": ("dev", "tiny", OLD, "gate-dev-old"),
    "demo-tiny": ("samples", "tiny", {"steps": 80}, "gate-samples"),
    "demo-tiny-old": ("samples", "tiny", {"steps": 80, **OLD}, "gate-samples-old"),
    "scifact-test-small": ("test", "small", {}, "test-small-zen4"),
    "scifact-test-base": ("test", "base", {}, "test-base-zen4"),
    "squad-tiny": ("squad", "tiny", {}, "squad-zen4"),
    "squad-small": ("squad", "small", {}, "squad-zen4"),
    "squad-base": ("squad", "base", {}, "squad-zen4"),
}
OTHER_DOCS = 300


def corpus(name: str) -> list[Any]:
    return {"samples": sample_chunks, "squad": squad_chunks}.get(name, lambda: half_chunks(name))()


def part(doc_id: str) -> str:
    return "A" if hashlib.sha1(doc_id.encode()).digest()[0] % 2 == 0 else "B"


def score(rag: Any, plain: Any, tok: Any, spec: DataSpec, chunks: list[Any], searcher: Any, tmp: Path
          ) -> dict[str, Any]:
    """Both models on the same target tokens: the retrieval model with its neighbours, the plain one without."""
    if tmp.exists():
        shutil.rmtree(tmp)
    build_dataset(chunks, tok, tmp, spec, searcher_neighbours(searcher, spec.n_neighbours, "bm25"))
    ds = LmDataset(tmp)
    r, p = heldout_loss(rag, ds, with_context=True), heldout_loss(plain, ds, with_context=False)
    shutil.rmtree(tmp, ignore_errors=True)
    return {"documents": len({c.doc_id for c in chunks}), "tokens": r["tokens"], "retrieval_ppl_with_context":
            round(r["ppl"], 2), "plain_ppl": round(p["ppl"], 2), "ratio": round(r["ppl"] / p["ppl"], 4)}


def run_case(name: str) -> dict[str, Any]:
    half, preset, over, tag = CASES[name]
    chunks = corpus(half)
    searcher = Bm25Searcher(chunks)
    work = WORK / tag / preset
    trained = None
    if not ((work / "model-rag" / "model.pt").exists() and (work / "model-plain" / "model.pt").exists()):
        trained = run_preset(chunks, searcher, preset, over, tag, ["rag", "plain"])
    rag, tok, manifest = load_model(work / "model-rag")
    plain, _, _ = load_model(work / "model-plain")
    training = manifest["training"]
    spec = DataSpec(**training["data_spec"])
    held = set(training["heldout_doc_ids"])
    tmp = WORK / "gate-study-tmp"
    out: dict[str, Any] = {"corpus": half, "preset": preset, "overrides": over, "models": str(work),
                           "trained_here": trained is not None}
    for p in ("A", "B"):
        out[p] = score(rag, plain, tok, spec, [c for c in chunks if c.doc_id in held and part(c.doc_id) == p],
                       searcher, tmp)
    out["A+B"] = score(rag, plain, tok, spec, [c for c in chunks if c.doc_id in held], searcher, tmp)
    if half in ("dev", "test"):
        other = corpus("test" if half == "dev" else "dev")
        docs = sorted({c.doc_id for c in other}, key=lambda d: hashlib.sha1(d.encode()).hexdigest())[:OTHER_DOCS]
        out["other"] = score(rag, plain, tok, spec, [c for c in other if c.doc_id in set(docs)], Bm25Searcher(other),
                             tmp)
    keep = {k: out[k]["ratio"] < 1 for k in ("A", "B", "A+B", "other") if k in out}
    out["right"] = {"A->B": keep["A"] == keep["B"]}
    if "other" in keep:
        out["right"]["A+B->other"] = keep["A+B"] == keep["other"]
    out["build_call"] = "retrieval" if keep["A+B"] else "plain"
    print(f"[{name}] " + json.dumps({k: out[k]["ratio"] for k in keep} | {"right": out["right"]}), file=sys.stderr,
          flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", default=",".join(CASES))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "lm-gate-study.json")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    result: dict[str, Any] = json.loads(a.out.read_text()) if a.out.exists() else {}
    result.update({"command": "HF_HUB_OFFLINE=1 .venv/bin/python " + " ".join(["bench/lm_gate_study.py", *sys.argv[1:]]),
                   "machine": machine(threads=a.threads, torch=torch.__version__),
                   "rule": "call retrieval when with-context perplexity / plain perplexity < 1 on the documents the call "
                           "sees; right when the truth documents give the same side of 1"})
    cases = result.setdefault("cases", {})
    for name in a.cases.split(","):
        cases[name] = run_case(name)
        rights = [(k, v) for c in cases.values() for k, v in c["right"].items()]
        result["summary"] = {k: f"{sum(v for kk, v in rights if kk == k)}/{sum(1 for kk, _ in rights if kk == k)}"
                             for k in ("A->B", "A+B->other")}
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(json.dumps(result, indent=2), encoding="utf-8")
    print(json.dumps(result["summary"], indent=2))


if __name__ == "__main__":
    main()
