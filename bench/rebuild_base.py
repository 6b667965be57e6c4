"""A rebuild's embedder trained on top of the last adaptation, or again from the base?

Takes the workspace of bench/rebuild.py after its two builds (the second build's model, models/embedder-b, was
trained on top of the first's, models/embedder, as rebuilds did then) and trains the same recipe (the demo
preset's sizes) once more on the same corpus the way `train embedder` now does: from the base the serving model
was adapted from (models/embedder-c). Each model then serves the workspace (reindexed with torch vectors) and is
scored on the sample corpus's written questions whose answer has a page (bench/embedder_gate.py's demo labels,
halves A and B), dense and hybrid nDCG@10. One seed each: a sanity check, not a recipe choice.

    HF_HUB_OFFLINE=1 /tmp/ragkiln-cpu heavy .venv/bin/python bench/rebuild_base.py \\
        --workspace bench/work/rebuild3/ws --out bench/results/rebuild-base.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench.machine import machine  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--workspace", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args()
    from common.settings import DEFAULT_EMBEDDER, load_settings
    from indexer import service
    from indexer.beir_eval import evaluate_searcher
    from indexer.embedder import load_embedder, resolve_embedder_path
    from indexer.workspace import Workspace
    from pipeline.build import preset_settings
    from trainer.embedder.train import train_embedder

    from bench.embedder_gate import demo_labels

    home = a.workspace.resolve()
    settings = load_settings({"home": home, "ner": {"enabled": False}, "indexer": {"embed_backend": "torch"}})
    trained, _ = preset_settings(settings, "demo")
    models = home / "models"
    new = models / "embedder-c"
    if not new.is_dir():
        report = train_embedder(trained, out=new, progress=False)
        started_from = report["base"]["path"]
    else:
        started_from = json.loads((new / "manifest.json").read_text())["base"]["path"]
    queries, qrels = demo_labels(settings)
    result: dict[str, Any] = {"command": " ".join(sys.argv), "machine": machine(), "workspace": str(home),
                              "labelled_queries": {k: len(v) for k, v in qrels.items()},
                              "embedder-c_trained_from": started_from, "models": {}}
    for name, path in (("base", str(resolve_embedder_path(DEFAULT_EMBEDDER))),
                       ("first build (from the base)", str(models / "embedder")),
                       ("second build, on top of the first (the old rule)", str(models / "embedder-b")),
                       ("second build, from the base (the rule now)", str(new))):
        if Workspace.open(settings).searcher().embedder.id != load_embedder(path).id:
            service.reindex(settings, embedder=path, progress=False)
        searcher = Workspace.open(settings).searcher()
        scores = {part: evaluate_searcher(searcher, queries, qrels[part], ["dense", "hybrid"]) for part in ("A", "B")}
        result["models"][name] = {"path": path, **{f"{part} {mode}": round(m[mode]["ndcg@10"], 4)
                                                   for part, m in scores.items() for mode in ("dense", "hybrid")}}
        print(name, result["models"][name], flush=True)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
