"""QA tuning with document replay (`lm.qa_replay`): does tuning to answer keep the model's documents?

On a workspace a build finished (its retrieval-trained LM in models/lm-base and the synthetic questions in
build/qa_synthetic.jsonl), QA-tunes that LM as the build's qa stage does, once per replay share, and
measures each result on
- the QA held-out rows (answers to held-out documents' synthetic questions; the run's `heldout_ppl`),
- the LM's held-out documents, with and without retrieved context (`eval_lm`, what `quantize verify`
  and the generation gate read).

    HF_HUB_OFFLINE=1 .venv/bin/python bench/lm_replay.py --workspace bench/work/iso-demo-on2/ws \
        --preset demo --grid 0:1,0:0.1,4:0.1,4:0.3 --out bench/results/lm-replay-demo.json
    HF_HUB_OFFLINE=1 .venv/bin/python bench/lm_replay.py --choose bench/results/lm-replay-demo.json \
        bench/results/lm-replay-scifact-small.json --out bench/results/lm-replay-choice.json

Each grid point is (replay, QA learning rate as a multiple of the preset's): `lm.qa_replay`, `lm.qa_lr_scale`.
The choice rule is RULE (its text says when it was declared), applied by `choose` to every corpus in the
files given with --choose.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.machine import machine  # noqa: E402

RULE = ("Candidates are (replay, QA learning rate as a multiple of the preset's) pairs measured on every corpus; "
        "the reference is the recipe before (0, 1). Per corpus, a candidate qualifies when its QA held-out "
        "perplexity is at most 1.05x the reference's and its held-out document perplexity with context at most "
        "1.25x the base LM's. Score: the mean over corpora of log(doc ppl with context / base LM's) + "
        "log(QA ppl / reference's). The default is the best-scoring candidate that qualifies on every corpus "
        "(none: the best-scoring candidate). Declared before the small-preset runs on SciFact; the demo corpus's "
        "grid had been run.")


def run(workspace: Path, preset: str, grid: list[tuple[float, float]], work: Path,
        save: Callable[[dict], None]) -> dict:
    from common.settings import load_settings
    from pipeline.build import preset_settings
    from trainer.lm.service import eval_lm, peak_lr, train_lm

    settings, qa_steps = preset_settings(load_settings({"home": workspace}), preset)
    base = workspace / "models" / "lm-base"
    qa_file = workspace / "build" / "qa_synthetic.jsonl"
    out: dict = {"base": eval_lm(settings, base), "runs": []}
    for share, scale in grid:
        lm = settings.lm.model_copy(update={"steps": qa_steps, "synthetic_per_chunk": 0, "qa_replay": share,
                                            "warmup": min(settings.lm.warmup, qa_steps // 10),
                                            "qa_lr_scale": scale})
        s = settings.model_copy(update={"lm": lm})
        dest = work / f"qa-replay-{share:g}-lr{scale:g}"
        t0 = time.perf_counter()
        summary = train_lm(s, qa=qa_file, init=base, out=dest)
        wall = time.perf_counter() - t0
        docs = eval_lm(s, dest)
        manifest = json.loads((dest / "manifest.json").read_text())
        row = {"replay": share, "lr_scale": scale, "lr": peak_lr(settings.lm) * scale, "steps": qa_steps,
               "wall_s": round(wall, 1),
               "train_seconds": summary.get("train_seconds"), "qa_heldout_ppl": summary.get("heldout_ppl"),
               "doc_ppl_no_context": docs["ppl_no_context"], "doc_ppl_with_context": docs["ppl_with_context"],
               "replay_rows": manifest["training"]["qa"].get("replay_rows"),
               "qa_rows": manifest["training"]["qa"].get("rows")}
        print(json.dumps(row), flush=True)
        out["runs"].append(row)
        save(out)  # a stopped study keeps the runs it finished
    return out


def choose(files: list[Path]) -> dict:
    """RULE over the corpora of `files` (each written by this script)."""
    import math

    corpora = [json.loads(Path(f).read_text()) for f in files]
    keys = [{(r["replay"], r["lr_scale"]) for r in c["runs"]} for c in corpora]
    grid = sorted(set.intersection(*keys))

    def row(c: dict, key: tuple[float, float]) -> dict:
        return next(r for r in c["runs"] if (r["replay"], r["lr_scale"]) == key)

    def ok(c: dict, key: tuple[float, float]) -> bool:
        r, z = row(c, key), row(c, (0.0, 1.0))
        return (r["qa_heldout_ppl"] <= 1.05 * z["qa_heldout_ppl"]
                and r["doc_ppl_with_context"] <= 1.25 * c["base"]["ppl_with_context"])

    def score(key: tuple[float, float]) -> float:
        return sum(math.log(row(c, key)["doc_ppl_with_context"] / c["base"]["ppl_with_context"])
                   + math.log(row(c, key)["qa_heldout_ppl"] / row(c, (0.0, 1.0))["qa_heldout_ppl"])
                   for c in corpora) / len(corpora)

    qualifying = [k for k in grid if all(ok(c, k) for c in corpora)]
    chosen = min(qualifying or grid, key=score)
    return {"rule": RULE, "qualifying": [f"{r:g}:{s:g}" for r, s in qualifying],
            "scores": {f"{r:g}:{s:g}": round(score((r, s)), 4) for r, s in grid},
            "chosen": {"replay": chosen[0], "lr_scale": chosen[1]}, "files": [str(f) for f in files]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--workspace", type=Path)
    ap.add_argument("--preset", default="demo")
    ap.add_argument("--replay", default="0,0.25,1,4")
    ap.add_argument("--lr-scale", default="1", help="QA learning rates, as multiples of the preset's")
    ap.add_argument("--grid", help="replay:lr_scale pairs instead of every --replay x --lr-scale, e.g. 0:1,4:0.1")
    ap.add_argument("--work", type=Path, default=ROOT / "bench" / "work" / "lm-replay")
    ap.add_argument("--choose", nargs="*", type=Path, help="result files to apply RULE to (no training)")
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args()
    head = {"command": shlex.join(["HF_HUB_OFFLINE=1", ".venv/bin/python", *sys.argv]), "machine": machine()}

    def save(result: dict) -> None:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(json.dumps({**head, **result}, indent=2) + "\n")

    if a.choose:
        result = choose(a.choose)
    else:
        grid = ([tuple(float(v) for v in p.split(":")) for p in a.grid.split(",")] if a.grid else
                [(float(r), float(s)) for s in a.lr_scale.split(",") for r in a.replay.split(",")])
        work = a.work / a.workspace.resolve().parent.name
        meta = {"rule": RULE, "workspace": str(a.workspace), "preset": a.preset}
        result = {**meta, **run(a.workspace.resolve(), a.preset, grid, work, lambda r: save({**meta, **r}))}
    save(result)
    print(json.dumps(result, indent=2)[:3000])


if __name__ == "__main__":
    main()
