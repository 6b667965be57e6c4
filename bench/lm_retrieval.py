"""Does the retrieval-augmented LM pay off at every preset? (issue 28 item 4)

    HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 .venv/bin/python bench/lm_retrieval.py \
        --half test --presets tiny,small [--set key=value ...] [--out bench/results/lm-retrieval-presets.json]
        --half squad: SQuAD v1.1 dev's paragraphs, a corpus no LM recipe was chosen on

SciFact (../shared/datasets/scifact), one chunk per abstract, split into two halves of documents by
their line in corpus.jsonl: `dev` (even lines) is for choosing the recipe, `test` (odd lines) for
reporting. Within a half, `ragkiln train lm`'s own held-out split (10% of documents, by seeded hash)
is held out. For each preset, with LmConfig defaults (default steps by preset, BM25 neighbours
from other documents through the project's BM25 index) unless `--set` overrides them:

- plain: the same target rows without neighbours (same tokenizer, steps, batch);
- retrieval: trained with `<ctx> neighbour </ctx>` prefixes.

Both are scored on the same held-out target tokens without and with retrieved context; the figure
is the retrieval model's with-context perplexity over the plain model's (no context).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import torch  # noqa: E402

from bench.machine import machine as cpu_record  # noqa: E402

from common.settings import LmConfig  # noqa: E402
from lm import Bm25Searcher, Chunk, scifact_chunks  # noqa: E402  (bench/lm.py)
from trainer.lm.checkpoint import load_model  # noqa: E402
from trainer.lm.data import LmDataset, searcher_neighbours  # noqa: E402
from trainer.lm.run import read_run, run_training  # noqa: E402
from trainer.lm.service import perplexities, prepare_lm_run  # noqa: E402
from trainer.lm.tokenizer import Tokenizer  # noqa: E402

WORK = ROOT / "bench" / "work" / "lm-retrieval"


def parse_value(v: str) -> Any:
    for cast in (int, float):
        try:
            return cast(v)
        except ValueError:
            pass
    return {"true": True, "false": False, "none": None}.get(v.lower(), v)


def half_chunks(half: str) -> list[Any]:
    chunks = scifact_chunks()
    keep = 0 if half == "dev" else 1
    return [c for i, c in enumerate(chunks) if i % 2 == keep]


def sample_chunks(max_chars: int = 1000) -> list[Any]:
    """The demo corpus (samples/python-docs, never used for choosing): blank-line paragraphs packed into
    chunks of about `max_chars` (the build chunks by 256 embedder tokens, about as long)."""
    out: list[Any] = []
    for path in sorted((ROOT / "samples" / "python-docs").rglob("*.txt")):
        doc = str(path.relative_to(ROOT / "samples" / "python-docs"))
        cur = ""
        for para in (q.strip() for q in path.read_text(encoding="utf-8").split("\n\n")):
            if cur and len(cur) + len(para) > max_chars:
                out.append(Chunk(doc, cur, len(out)))
                cur = ""
            cur = f"{cur}\n\n{para}" if cur else para
        if cur:
            out.append(Chunk(doc, cur, len(out)))
    return out


def squad_chunks() -> list[Any]:
    """SQuAD v1.1 dev's 2,067 paragraphs, each its own document (as bench/embedder_gate.py ingests them): a
    corpus no LM recipe was chosen on."""
    data = json.loads((ROOT.parent / "shared" / "datasets" / "squad-v1.1" / "dev-v1.1.json").read_text(encoding="utf-8"))
    paras = [(f"{art['title']}-{j}", para["context"]) for art in data["data"] for j, para in enumerate(art["paragraphs"])]
    return [Chunk(doc, text, i) for i, (doc, text) in enumerate(paras)]


def run_preset(chunks: list[Any], searcher: Bm25Searcher, preset: str, over: dict[str, Any], tag: str,
               variants: list[str]) -> dict[str, Any]:
    cfg = LmConfig(**{"preset": preset, **over})
    cfg = cfg.model_copy(update={"ckpt_every": 10**6, "eval_every": 10**6})
    work = WORK / tag / preset
    neighbours = searcher_neighbours(searcher, cfg.n_neighbours, "bm25")
    rag_run = work / "rag"
    t0 = time.perf_counter()
    meta = prepare_lm_run(rag_run, work / "model-rag", chunks, cfg, neighbours)
    prep_s = time.perf_counter() - t0
    tok = Tokenizer.load(rag_run / "tokenizer.model")
    heldout = LmDataset(rag_run / "data" / "heldout")
    spec = read_run(rag_run)
    out: dict[str, Any] = {
        "preset": preset, "steps": spec["train"]["steps"], "lr": spec["train"]["lr"],
        "batch_size": spec["train"]["batch_size"], "data_spec": meta["data_spec"],
        "max_seq_len": spec["model_args"]["max_seq_len"], "vocab": tok.vocab_size,
        "train_rows": meta["train_rows"], "train_target_tokens": meta["train_target_tokens"],
        "heldout_docs": len(meta["heldout_doc_ids"]), "heldout_rows": meta["heldout_rows"],
        "heldout_target_tokens": meta["heldout_target_tokens"], "prepare_s": round(prep_s, 1),
        "recipe": {k: spec["meta"].get(k) for k in ("recipe",) if k in spec["meta"]}, "models": {},
    }
    runs = {"plain": work / "plain", "rag": rag_run}
    for name in variants:
        run = runs[name]
        if name == "plain":
            prepare_lm_run(run, work / "model-plain", chunks, cfg, None, tokenizer=tok)
        t0 = time.perf_counter()
        summary = run_training(run)
        minutes = (time.perf_counter() - t0) / 60
        model, _, _ = load_model(Path(read_run(run)["out"]))
        ppl = perplexities(model, heldout)
        out["models"][name] = {**ppl, "train_minutes": round(minutes, 2), "tokens_per_s": summary.get("tokens_per_s")}
        print(f"[{tag}/{preset}] {name}: {out['models'][name]}", file=sys.stderr, flush=True)
    if "plain" in out["models"] and "rag" in out["models"]:
        plain = out["models"]["plain"]["ppl_no_context"]
        out["ratio_rag_with_context_vs_plain"] = round(out["models"]["rag"]["ppl_with_context"] / plain, 4)
        print(f"[{tag}/{preset}] ratio {out['ratio_rag_with_context_vs_plain']}", file=sys.stderr, flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--half", choices=("dev", "test", "samples", "squad"), default="dev",
                    help="SciFact dev/test half, the demo corpus samples/python-docs, or SQuAD dev's paragraphs")
    ap.add_argument("--presets", default="tiny")
    ap.add_argument("--variants", default="plain,rag")
    ap.add_argument("--set", action="append", default=[], help="LmConfig override key=value (repeatable)")
    ap.add_argument("--tag", default=None, help="work folder name (default: the half)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=None)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    over = {k: parse_value(v) for k, v in (s.split("=", 1) for s in a.set)}
    chunks = {"samples": sample_chunks, "squad": squad_chunks}.get(a.half, lambda: half_chunks(a.half))()
    searcher = Bm25Searcher(chunks)
    tag = a.tag or a.half
    result: dict[str, Any] = {
        "command": f"HF_HUB_OFFLINE=1 OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', '')} .venv/bin/python " + " ".join(["bench/lm_retrieval.py", *sys.argv[1:]]),
        "machine": cpu_record(threads=torch.get_num_threads(), torch=torch.__version__,
                              cpu_capability=torch.backends.cpu.get_cpu_capability()),
        "corpus": {"samples": "samples/python-docs (the demo corpus), paragraphs packed into ~1000-character chunks",
                   "squad": "SQuAD v1.1 dev, one chunk per paragraph, each paragraph a document"}.get(
                       a.half, "BEIR SciFact corpus.jsonl, one chunk per abstract (title + text)"),
        "split": (f"{len(chunks)} chunks of {len({c.doc_id for c in chunks})} documents" if a.half in ("samples", "squad")
                  else f"{a.half} half: {'even' if a.half == 'dev' else 'odd'} lines of corpus.jsonl ({len(chunks)} documents)")
                 + "; lm.heldout_fraction of documents held out by seeded hash (ragkiln's own split)",
        "overrides": over, "presets": {},
    }
    for preset in a.presets.split(","):
        result["presets"][preset] = run_preset(chunks, searcher, preset, over, tag, a.variants.split(","))
        if a.out:
            a.out.parent.mkdir(parents=True, exist_ok=True)
            a.out.write_text(json.dumps(result, indent=2), encoding="utf-8")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
