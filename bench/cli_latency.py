"""Cold start of the command line: wall seconds of `ragkiln search` and `ragkiln ask`, each a new process, on
bench/awscli_answers.py's workspace (run its --prepare first) or any other (--workspace, --question), for this tree and, optionally, a baseline tree
(another checkout, e.g. `git worktree add /tmp/base <commit>`) run by the same interpreter, the runs
interleaved so that both see the same machine.

    HF_HUB_OFFLINE=1 /tmp/ragkiln-cpu timing .venv/bin/python bench/cli_latency.py --baseline-tree /tmp/base
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.machine import machine  # noqa: E402

WS = ROOT / "bench" / "work" / "awscli" / "ws"
QUESTION = "How do I delete a bucket?"


def commands(question: str) -> dict[str, list[str]]:
    return {"search": ["search", question, "--k", "5"], "ask": ["ask", question]}


def run(tree: Path, args: list[str], ws: Path = WS) -> float:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(tree)}
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", "from cli.main import app; app()", "--workspace", str(ws), *args],
                   cwd=tree, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--baseline-tree", type=Path, default=None)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "cli-latency.json")
    ap.add_argument("--workspace", type=Path, default=WS)
    ap.add_argument("--question", default=QUESTION)
    a = ap.parse_args()
    cmds = commands(a.question)
    trees = {"this": ROOT, **({"baseline": a.baseline_tree.resolve()} if a.baseline_tree else {})}
    seconds: dict[str, dict[str, list[float]]] = {t: {c: [] for c in cmds} for t in trees}
    for tree in trees.values():  # warm the page cache once per tree and command
        for args in cmds.values():
            run(tree, args, a.workspace)
    for _ in range(a.runs):
        for name, tree in trees.items():
            for cmd, args in cmds.items():
                seconds[name][cmd].append(round(run(tree, args, a.workspace), 3))
    median = {t: {c: statistics.median(v) for c, v in per.items()} for t, per in seconds.items()}
    result = {"command": "HF_HUB_OFFLINE=1 .venv/bin/python bench/cli_latency.py " + " ".join(sys.argv[1:]),
              "workspace": str(a.workspace), "commands": cmds, "machine": machine(),
              "trees": {k: {"path": str(v), "commit": subprocess.run(["git", "-C", str(v), "rev-parse", "HEAD"],
                                                                     capture_output=True, text=True).stdout.strip()}
                        for k, v in trees.items()}, "seconds": seconds, "median_seconds": median}
    if "baseline" in median:
        result["speedup"] = {c: round(median["baseline"][c] / median["this"][c], 2) for c in cmds}
    a.out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps({"median_seconds": median, "speedup": result.get("speedup")}))


if __name__ == "__main__":
    main()
