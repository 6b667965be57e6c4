"""A user's second build: `ragkiln build` on a folder, then again after documents were added to it.

The second build trains its embedder from the one the first build served. Before the build had two embedder
directories, it trained into the one the active index searched with: when the gate then kept the current index,
every search failed (the index's model had changed under it) until a reindex. This runs both builds with the
README's command and records, after each, which embedder directory the index searches with, which one the build
trained into, the gate's call, and whether `ragkiln search` answers.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/rebuild.py --corpus samples/python-docs --hold-out faq \\
        --work bench/work/rebuild --out bench/results/rebuild-demo.json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.machine import machine  # noqa: E402

RAGKILN = str(ROOT / ".venv" / "bin" / "ragkiln")


def build(corpus: Path, ws: Path, preset: str) -> dict[str, Any]:
    t0 = time.perf_counter()
    run = subprocess.run([RAGKILN, "--workspace", str(ws), "build", str(corpus), "--preset", preset],
                         capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    seconds = time.perf_counter() - t0
    stages = json.loads((ws / "build" / "state.json").read_text())["stages"]
    out = lambda name: stages.get(name, {}).get("outputs", {}) or {}  # noqa: E731
    search = subprocess.run([RAGKILN, "--workspace", str(ws), "search", "how do I read a file line by line", "--json"],
                            capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    active = subprocess.run([sys.executable, "-c", (
        "import json,sys; from common.settings import load_settings; from indexer.workspace import Workspace; "
        f"print(json.dumps(Workspace.open(load_settings({{'home': {str(ws)!r}}})).active_embedder()))")],
        capture_output=True, text=True, cwd=ROOT)
    emb = out("embedder")
    return {
        "rc": run.returncode, "seconds": round(seconds, 1), "stderr_tail": run.stderr[-600:] if run.returncode else "",
        "documents": out("ingest").get("documents_total"),
        "embedder_trained_into": emb.get("model"), "embedder_trained": emb.get("trained", True),
        "probe": {k: (emb.get("metrics", {}).get("probe") or {}).get(k) for k in ("replace", "gain", "bm25_misses")},
        "switched": out("reindex").get("switched"), "reason": out("reindex").get("reason"),
        "index_searches_with": (json.loads(active.stdout) or {}).get("path") if active.returncode == 0 else active.stderr[-300:],
        "search_rc": search.returncode,
        "search_hits": len(json.loads(search.stdout).get("hits", [])) if search.returncode == 0 else search.stderr[-300:],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--corpus", type=Path, required=True)
    ap.add_argument("--hold-out", required=True, help="a subfolder left out of the first build, added for the second")
    ap.add_argument("--preset", default="demo")
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args()
    if a.work.exists():
        shutil.rmtree(a.work)
    corpus, ws = a.work / "corpus", a.work / "ws"
    shutil.copytree(a.corpus, corpus, ignore=shutil.ignore_patterns(a.hold_out))
    first = build(corpus, ws, a.preset)
    shutil.copytree(a.corpus / a.hold_out, corpus / a.hold_out)
    second = build(corpus, ws, a.preset)
    result = {"command": " ".join(sys.argv), "machine": machine(), "preset": a.preset, "held_out": a.hold_out,
              "first": first, "second": second}
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
