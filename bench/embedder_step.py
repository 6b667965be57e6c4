"""Embedder training step time by dropout and arithmetic (train mode, CPU).

One forward and backward of the distillation loss on the first `--batch` rows of a prepared run
(`train.jsonl` from `ragkiln train embedder` / bench/embedder.py), the settings interleaved so
machine noise hits all alike: the base model's dropout in fp32, no dropout in fp32 (attention dropout
keeps torch off its fused attention kernel), and either under bf16 autocast (`embedder_train.precision`).

    HF_HUB_OFFLINE=1 .venv/bin/python bench/embedder_step.py \
        --run bench/work/embedder/scifact/runs/embedder-scifact-unsup --variants base,none,base-bf16,none-bf16 \
        --out bench/results/embedder-step.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from common.settings import DEFAULT_EMBEDDER  # noqa: E402
from indexer.embedder import resolve_embedder_path  # noqa: E402
from trainer.embedder.losses import MnrlDistillLoss  # noqa: E402
from trainer.embedder.pairs import pairs_from_jsonl  # noqa: E402
from trainer.embedder.train import set_dropout  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", type=Path, required=True, help="a prepared run folder (loss 'distill')")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--max-seq-length", type=int, default=160)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--variants", default="base,none", help="comma-separated: base|none (dropout), -bf16 for autocast")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "embedder-dropout-step.json")
    a = ap.parse_args()
    from sentence_transformers import SentenceTransformer

    rows = pairs_from_jsonl((a.run / "train.jsonl").read_text())[: a.batch]
    if not rows or not rows[0].teacher:
        sys.exit(f"{a.run}/train.jsonl holds no teacher-scored rows (prepare it with loss 'distill')")
    model = SentenceTransformer(str(resolve_embedder_path(DEFAULT_EMBEDDER)), device="cpu", local_files_only=True)
    model.max_seq_length = a.max_seq_length
    model.train()
    cols = [[p.query for p in rows], [p.positive for p in rows]] + \
        [[p.negatives[j] for p in rows] for j in range(len(rows[0].negatives))]
    feats = [model.preprocess(c) for c in cols]
    labels = torch.tensor([p.teacher for p in rows])
    loss = MnrlDistillLoss(model)
    base_p = max(m.p for m in model.modules() if isinstance(m, torch.nn.Dropout))
    variants = a.variants.split(",")
    if not variants or any(v.removesuffix("-bf16") not in ("base", "none") for v in variants):
        sys.exit(f"--variants takes base, none, base-bf16, none-bf16; got {a.variants!r}")
    times: dict[str, list[float]] = {v: [] for v in variants}
    for _ in range(a.repeats):
        for name in variants:
            set_dropout(model, base_p if name.startswith("base") else 0.0)
            t0 = time.perf_counter()
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=name.endswith("-bf16")):
                value = loss(feats, labels)
            value.backward()
            times[name].append(time.perf_counter() - t0)
            model.zero_grad(set_to_none=True)
    res = {"command": "HF_HUB_OFFLINE=1 .venv/bin/python bench/embedder_step.py " + " ".join(sys.argv[1:]),
           "batch": len(rows), "texts_per_row": len(cols), "max_seq_length": a.max_seq_length,
           "threads": torch.get_num_threads(),
           "base_dropout": base_p, "step_seconds": {k: [round(t, 2) for t in v] for k, v in times.items()},
           "median_seconds": {k: round(statistics.median(v), 2) for k, v in times.items()}}
    first = res["median_seconds"][variants[0]]
    res["speedup_vs_" + variants[0]] = {k: round(first / v, 2) for k, v in res["median_seconds"].items()}
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(res, indent=2) + "\n")
    print(json.dumps(res))


if __name__ == "__main__":
    main()
