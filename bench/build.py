"""The main job at scale: `ragkiln build` with a preset on a corpus, timed end to end.

Runs the build under `/usr/bin/time -v` (peak RSS of the largest single process) and a sampler of its whole
process tree (bench/tree_memory.py: stages run in processes of their own) in a fresh workspace, then summarises the
workspace's `build/state.json`: seconds per stage, search nDCG@10 before and after embedder training
(when the corpus is a BEIR folder or `--eval-beir` is given), LM perplexity and MFU, GGUF types. The
figures are the ones the build's own report shows, so README and report agree.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/build.py --corpus ../shared/datasets/scifact --preset standard \\
        --workspace bench/work/std/ws --out bench/results/build-standard.json

`--collect LOG` summarises a build that was started by hand, or resumed (LOG: the stderr of its last
invocation, with the time -v output).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.machine import machine  # noqa: E402
from bench.tree_memory import TreeSampler  # noqa: E402

TARGET_S = {"demo": 600, "standard": 7200}


def peak_rss_gb(log: str) -> float | None:
    m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", log)
    return round(int(m.group(1)) / 2**20, 2) if m else None


def tree_file(log_path: Path) -> Path:
    """Where the sampler keeps the peak memory of the build's whole process tree."""
    return log_path.with_suffix(".tree-memory.json")


def summarise(home: Path, preset: str) -> dict[str, Any]:
    """The figures of a finished build, read from its state file (pure: no model is loaded)."""
    stages = json.loads((home / "build" / "state.json").read_text())["stages"]
    out = lambda name: stages.get(name, {}).get("outputs", {})  # noqa: E731
    seconds = {n: r["seconds"] for n, r in stages.items()}
    peaks = {n: round(r["peak_rss_mb"] / 1024, 2) for n, r in stages.items() if r.get("peak_rss_mb") is not None}
    emb = out("embedder")
    metrics = emb.get("metrics", {})
    search = {}
    for when in ("before", "after"):
        for mode, m in (metrics.get(f"beir_{when}") or {}).items():
            search.setdefault(mode, {})[when] = {k: m[k] for k in ("ndcg@10", "recall@100") if k in m}
    lm, qa, ev = out("lm"), out("qa"), out("evaluate")
    types = out("verify").get("types", {})
    total = round(sum(seconds.values()), 1)
    return {
        "preset": preset, "stage_seconds": seconds, "total_stage_seconds": total, "stage_peak_rss_gb": peaks,
        "target_seconds": TARGET_S.get(preset),
        "ingest": {k: out("ingest").get(k) for k in ("documents_total", "chunks_total", "seconds")},
        "embedder": {"dev_before": metrics.get("dev_before"), "dev_after": metrics.get("dev_after"),
                     "select": metrics.get("select"), "probe_gain": metrics.get("probe", {}).get("gain"),
                     "beir_test": search, "data": {k: emb.get("data", {}).get(k) for k in
                                                  ("train_pairs", "dev_pairs", "train_by_source")},
                     "training": emb.get("training"),
                     "served": "adapted" if out("reindex").get("switched", True) else "base",
                     "kept_base_because": out("reindex").get("reason")},
        "lm": {**{k: lm.get(k) for k in ("n_params", "steps", "heldout_ppl", "tokens_per_s", "mfu", "train_seconds",
                                         "served", "reason")},
               "plain": lm.get("plain"), "payoff_ratio": lm.get("payoff", {}).get("ratio")},
        "qa": {k: qa.get(k) for k in ("steps", "heldout_ppl", "synthetic_questions", "train_seconds", "heldout_answers")},
        "perplexity": ev.get("perplexity"),
        "search_latency_ms": {m: {k: d[k] for k in ("p50_ms", "p99_ms")} for m, d in ev.get("latency", {}).items()},
        "gguf": {t: {k: d.get(k) for k in ("ppl", "ppl_delta_pct", "kl", "top1", "size_bytes", "gen_tok_s")}
                 for t, d in types.items()},
        "torch_gen_tok_s": out("verify").get("torch", {}).get("gen_tok_s"),
        "report": str(home / "report" / "report.html"),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", type=Path, required=True)
    ap.add_argument("--preset", default="standard")
    ap.add_argument("--workspace", type=Path, required=True)
    ap.add_argument("--eval-beir", type=Path, default=None)
    ap.add_argument("--collect", type=Path, default=None, help="stderr log of a build already run; do not run it")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--stage-processes", choices=("true", "false"), default=None,
                    help="RAGKILN_STAGE_PROCESSES for the build (default: the setting's default)")
    a = ap.parse_args()
    cmd = [sys.executable, "-m", "cli", "--workspace", str(a.workspace), "build", str(a.corpus),
           "--preset", a.preset, "--json"] + (["--eval-beir", str(a.eval_beir)] if a.eval_beir else [])
    if a.collect is None:
        if a.workspace.exists():
            shutil.rmtree(a.workspace)
        a.workspace.parent.mkdir(parents=True, exist_ok=True)
        log_path = a.workspace.parent / f"build-{a.preset}.log"
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
        if a.stage_processes is not None:
            env["RAGKILN_STAGE_PROCESSES"] = a.stage_processes
        t0 = time.perf_counter()
        with open(log_path, "w") as log:
            proc = subprocess.Popen(["/usr/bin/time", "-v", *cmd], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                                    stderr=log)
            with TreeSampler(proc.pid, tree_file(log_path)):
                rc = proc.wait()
        wall = round(time.perf_counter() - t0, 1)
        if rc != 0:
            sys.exit(f"build failed (exit {rc}); log: {log_path}")
    else:
        log_path, wall = a.collect, None
    log = log_path.read_text(errors="replace")
    m = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (?:(\d+):)?(\d+):([\d.]+)", log)
    if wall is None and m:
        wall = round(int(m.group(1) or 0) * 3600 + int(m.group(2)) * 60 + float(m.group(3)), 1)
    result = {"command": " ".join(["HF_HUB_OFFLINE=1", ".venv/bin/python"] + sys.argv),
              "build_command": " ".join(["ragkiln"] + cmd[3:]), "cpus": os.cpu_count(), "machine": machine(),
              "wall_seconds": wall, "peak_rss_gb": peak_rss_gb(log), "stage_processes": a.stage_processes or "default",
              "tree_peak": json.loads(tree_file(log_path).read_text()) if tree_file(log_path).exists() else None,
              **summarise(a.workspace.resolve(), a.preset)}
    target = result["target_seconds"]
    # a resumed build's last invocation ran only some stages: the stages' own seconds count then
    result["within_target"] = None if target is None else max(wall or 0, result["total_stage_seconds"]) <= target
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(json.dumps({k: result[k] for k in ("wall_seconds", "peak_rss_gb", "tree_peak", "stage_seconds",
                                             "stage_peak_rss_gb", "within_target")},
                     indent=2))


if __name__ == "__main__":
    main()
