"""Can the model learn to copy from its context? A probe behind the SQuAD miss of bench/lm.py.

Answering from context needs induction heads: attend to where the current token occurred earlier
and copy what followed it. The probe trains on random-token rows, where copying is the only way to
lower the loss, and reports the loss on the copied tokens (ln V when nothing is copied, about 0 when
copying works):

  fixed:    `<s> s s` with |s| = 64: the copy is always 64 positions back (a positional shortcut
            suffices, no induction needed);
  variable: `<s> r seg` with seg a random 32-token slice of the 200-token r: the copy source moves,
            so only a real induction circuit lowers the loss (the first seg token is not scored);
  multi:    `<s> r seg_1 ... seg_8` with eight random 16-token slices of the 96-token r: the same
            induction task with 120 scored tokens a row instead of 31.

`--score CKPT,...` trains nothing: it measures how much copying trained checkpoints kept (`score`).
Each task trains the `small` preset from scratch and, with --init, the given checkpoint (e.g. the
SQuAD-pretrained LM of bench/lm.py). Writes bench/results/lm-copy-probe.json.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/lm_copy_probe.py --steps 500 \
        --init bench/work/lm-lm/squad-model-small-lm
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from trainer.lm.checkpoint import load_model  # noqa: E402
from trainer.lm.init import induction_init  # noqa: E402
from trainer.lm.model import Transformer, preset_args  # noqa: E402


def copy_batch(task: str, vocab: int, batch: int, g: torch.Generator, n: int = 200
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """(tokens (B, T+1), scored mask (B, T)) of one random copy batch; ids from 10 up to `vocab` (no specials)."""
    if task == "fixed":
        s = torch.randint(10, vocab, (batch, 64), generator=g)
        x = torch.cat([torch.ones(batch, 1, dtype=torch.long), s, s], 1)  # (B, 129)
        mask = torch.zeros(batch, 128, dtype=torch.bool)
        mask[:, 64:] = True  # predictions of the second copy
        return x, mask
    if task == "multi":
        n, m, k = min(n, 96), 16, 8
        r = torch.randint(10, vocab, (batch, n), generator=g)
        starts = torch.randint(0, n - m, (batch, k), generator=g)
        idx = starts.unsqueeze(-1) + torch.arange(m)  # (B, k, m)
        segs = torch.gather(r, 1, idx.view(batch, k * m))  # (B, k*m)
        x = torch.cat([torch.ones(batch, 1, dtype=torch.long), r, segs], 1)  # (B, 1 + n + k*m)
        mask = torch.zeros(batch, n + k * m, dtype=torch.bool)
        scored = torch.ones(k, m, dtype=torch.bool)
        scored[:, 0] = False  # a slice's first token is unpredictable
        mask[:, n:] = scored.view(-1)  # position n + j predicts segs[j]
        return x, mask
    m = 32
    r = torch.randint(10, vocab, (batch, n), generator=g)
    starts = torch.randint(0, n - m, (batch,), generator=g)
    seg = torch.stack([r[b, int(a) : int(a) + m] for b, a in enumerate(starts)])  # (B, m)
    x = torch.cat([torch.ones(batch, 1, dtype=torch.long), r, seg], 1)  # (B, 1 + n + m)
    mask = torch.zeros(batch, n + m, dtype=torch.bool)
    mask[:, n + 1 :] = True  # seg[1:], predictable once seg[0] is seen
    return x, mask


def probe(model: Transformer, task: str, steps: int, lr: float, batch: int, seed: int, alphabet: int | None = None,
          n: int = 200) -> dict[str, Any]:
    g = torch.Generator().manual_seed(seed)
    vocab = min(alphabet or model.args.vocab_size, model.args.vocab_size)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.95), weight_decay=0.1)
    model.train()
    curve, t0 = [], time.perf_counter()
    for step in range(1, steps + 1):
        x, mask = copy_batch(task, vocab, batch, g, n)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            _, loss = model(x[:, :-1], x[:, 1:], mask)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        if step % 25 == 0 or step == 1:
            curve.append([step, round(float(loss.detach()), 4)])
    solved = next((s for s, v in curve if v < 0.5), None)
    return {"task": task, "steps": steps, "lr": lr, "batch": batch, "alphabet": alphabet, "source_tokens": n,
            "final_loss": curve[-1][1], "uniform_loss": round(math.log(vocab - 10), 3),
            "first_step_below_0.5": solved, "seconds": round(time.perf_counter() - t0, 1), "curve": curve}


@torch.no_grad()
def score(path: Path, rows: int = 16) -> dict[str, Any]:
    """How much copying a trained checkpoint kept, without training it: the `multi` loss on random
    tokens, and on SQuAD paragraphs the loss of repeated 16-token slices of a paragraph's first 96
    tokens against the loss of that first reading (copying makes the repeats cheaper)."""
    import random

    model, tok, _ = load_model(path)
    model.eval()
    x, mask = copy_batch("multi", model.args.vocab_size, rows, torch.Generator().manual_seed(1))
    _, random_loss = model(x[:, :-1], x[:, 1:], mask)
    squad = json.loads((ROOT.parent / "shared" / "datasets" / "squad-v1.1" / "dev-v1.1.json").read_text(encoding="utf-8"))
    paragraphs = [p["context"] for art in squad["data"] for p in art["paragraphs"]]
    rng = random.Random(0)
    seqs = []
    for text in rng.sample(paragraphs, rows):
        ids = tok.encode(text)[:96]
        ids = (ids * (96 // max(1, len(ids)) + 1))[:96]  # short paragraphs repeat to 96 tokens
        slices = []
        for _ in range(8):
            at = rng.randrange(0, 80)
            slices += ids[at : at + 16]
        seqs.append([tok.bos_id] + ids + slices)
    nat = torch.tensor(seqs)  # (B, 1 + 96 + 128)
    repeat = torch.zeros(rows, nat.shape[1] - 1, dtype=torch.bool)
    repeat[:, 96:] = True
    repeat[:, 96::16] = False  # a slice's first token is not predictable by copying
    first = torch.zeros_like(repeat)
    first[:, 10:95] = True
    _, rep_loss = model(nat[:, :-1], nat[:, 1:], repeat)
    _, first_loss = model(nat[:, :-1], nat[:, 1:], first)
    return {"model": str(path), "random_multi_loss": round(float(random_loss), 3),
            "uniform_loss": round(math.log(model.args.vocab_size - 10), 3),
            "squad_repeat_loss": round(float(rep_loss), 3), "squad_first_reading_loss": round(float(first_loss), 3)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=500)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--vocab", type=int, default=4000)
    ap.add_argument("--alphabet", type=int, default=None, help="draw the random tokens from the first N ids only")
    ap.add_argument("--source", type=int, default=200, help="variable task: tokens the copied slice is cut from")
    ap.add_argument("--tasks", default="fixed,variable")
    ap.add_argument("--preset", default="small")
    ap.add_argument("--induction-init", action="store_true", help="start from trainer.lm.init.induction_init")
    ap.add_argument("--rope-theta", type=float, default=None)
    ap.add_argument("--init", type=Path, default=None, help="an LM checkpoint to probe besides a fresh model")
    ap.add_argument("--score", default="", help="comma list of LM checkpoints: score their copying, no training")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "lm-copy-probe.json")
    a = ap.parse_args()
    command = "HF_HUB_OFFLINE=1 .venv/bin/python bench/lm_copy_probe.py " + " ".join(sys.argv[1:])
    if a.score:
        scored = [score(Path(p)) for p in a.score.split(",")]
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(json.dumps({"command": command, "scored": scored}, indent=2) + "\n")
        print(json.dumps(scored, indent=2))
        return
    rows = []
    for task in a.tasks.split(","):
        if task not in ("fixed", "variable", "multi"):
            ap.error(f"unknown task {task!r}")
        starts: list[tuple[str, Any]] = [("scratch", None)] + ([("init", a.init)] if a.init else [])
        for name, init in starts:
            torch.manual_seed(0)
            if init:
                model = load_model(init)[0]
            else:
                args = preset_args(a.preset, a.vocab, 512)
                model = Transformer(replace(args, rope_theta=a.rope_theta or args.rope_theta))
                if a.induction_init:
                    induction_init(model)
            fresh = f"{a.preset} preset, " + ("induction init" if a.induction_init else "random init")
            r = {"model": str(init) if init else fresh, "rope_theta": float(model.args.rope_theta),
                 **probe(model, task, a.steps, a.lr, a.batch, 0, a.alphabet, a.source)}
            print(json.dumps({k: v for k, v in r.items() if k != "curve"}), file=sys.stderr)
            rows.append(r)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps({"command": command,
                                 "threads": torch.get_num_threads(), "probes": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
