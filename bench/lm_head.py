"""The LM's output head and loss: computed a block of rows at a time (trainer/lm/head_loss.py, the
default) against the full (N, V) logits and F.cross_entropy (the code before), same data, same steps.

Each run is `ragkiln train lm`'s retrieval-augmented training in a fresh process, on a workspace that
already holds an ingested corpus, so its allocator starts cold as a stage's process or the CLI does:

    HF_HUB_OFFLINE=1 /tmp/ragkiln-cpu timing .venv/bin/python bench/lm_head.py \\
        --workspace bench/work/iso-demo-on/ws --out bench/results/lm-head.json

Writes training tokens/s, wall seconds, peak RSS (VmHWM), final training loss and held-out perplexity
per preset × head × repeat; the order of the two heads alternates between repeats.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.machine import machine  # noqa: E402


def full_head_cross_entropy(h, weight, targets):  # type: ignore[no-untyped-def]
    """The head as it was: the whole (N, V) logits, an fp32 copy, F.cross_entropy."""
    import torch.nn.functional as F

    return F.cross_entropy(F.linear(h, weight).float(), targets, reduction="sum")


def one(workspace: Path, preset: str, head: str, steps: int) -> dict:
    from common.memory import peak_rss_mb
    from common.settings import load_settings
    from trainer.lm import model as lm_model
    from trainer.lm.service import train_lm

    if head == "full":
        lm_model.head_cross_entropy = full_head_cross_entropy
    settings = load_settings({"home": workspace})
    lm = settings.lm.model_copy(update={"preset": preset, "steps": steps, "eval_every": steps, "ckpt_every": steps,
                                        "plain_check": False})
    settings = settings.model_copy(update={"lm": lm})
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        s = train_lm(settings, retrieval=True, out=Path(tmp) / "lm")
        wall = time.perf_counter() - t0
    return {"preset": preset, "head": head, "steps": steps, "wall_s": round(wall, 1),
            "train_seconds": s.get("train_seconds"), "tokens_per_s": s.get("tokens_per_s"),
            "peak_rss_gb": round((peak_rss_mb() or 0) / 1024, 2), "final_train_loss": s.get("final_train_loss"),
            "heldout_ppl": s.get("heldout_ppl")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workspace", type=Path, required=True, help="a workspace with an ingested corpus")
    ap.add_argument("--presets", default="tiny,small")
    ap.add_argument("--steps", default="tiny=80,small=60", help="steps per preset")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "lm-head.json")
    ap.add_argument("--one", nargs=3, metavar=("PRESET", "HEAD", "STEPS"), help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.one:
        print(json.dumps(one(a.workspace, a.one[0], a.one[1], int(a.one[2]))))
        return
    steps = dict(kv.split("=") for kv in a.steps.split(","))
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    runs = []
    for r in range(a.repeats):
        for preset in a.presets.split(","):
            for head in (("blocked", "full") if r % 2 == 0 else ("full", "blocked")):
                out = subprocess.run([sys.executable, __file__, "--workspace", str(a.workspace), "--one", preset, head,
                                      steps[preset]], env=env, cwd=ROOT, capture_output=True, text=True, check=True)
                runs.append({"repeat": r, **json.loads(out.stdout.strip().splitlines()[-1])})
                print(json.dumps(runs[-1]), flush=True)
    summary = {}
    for preset in a.presets.split(","):
        by = {h: [x for x in runs if x["preset"] == preset and x["head"] == h] for h in ("full", "blocked")}
        med = {h: {k: statistics.median(x[k] for x in rs) for k in ("tokens_per_s", "train_seconds", "peak_rss_gb")}
               for h, rs in by.items()}
        summary[preset] = {**med, "speedup": round(med["blocked"]["tokens_per_s"] / med["full"]["tokens_per_s"], 3)}
    result = {"command": " ".join(["HF_HUB_OFFLINE=1", ".venv/bin/python"] + sys.argv), "machine": machine(),
              "runs": runs, "summary": summary}
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
