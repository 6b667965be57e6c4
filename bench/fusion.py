"""Hybrid fusion: reciprocal-rank fusion vs a convex combination of min-max normalised scores.

Same indexes, same queries, same embedder: only the fusion changes, so the ratio is measured in one
run. SciFact test split and SQuAD v1.1 dev paragraphs (first question each, as in bench/embedder.py);
`--models` scores other embedders too (their vectors are cached in the docstore after the first run);
`--average W` also scores each trained model averaged with its starting model (WiSE-FT, start weight W).

    HF_HUB_OFFLINE=1 .venv/bin/python bench/fusion.py --models all-MiniLM-L6-v2,bench/work/embedder/models/scifact-unsup
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

from bench.embedder import DATA, squad_as_beir  # noqa: E402
from common.settings import DEFAULT_EMBEDDER, load_settings  # noqa: E402
from indexer.beir_eval import eval_retrieval  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", type=Path, default=ROOT / "bench" / "work" / "embedder")
    ap.add_argument("--models", default=DEFAULT_EMBEDDER, help="comma-separated embedders (names or directories)")
    ap.add_argument("--weights", default="0.5", help="dense weights of the convex combination to score")
    ap.add_argument("--average", default="", help="start weights: also score each trained model averaged with "
                    "the model it started from (embedder_train.base_weight, without retraining)")
    ap.add_argument("--squad-paragraphs", type=int, default=500)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "fusion.json")
    a = ap.parse_args()
    sets = {"scifact": (DATA / "scifact", a.work / "scifact"),
            "squad": (squad_as_beir(DATA / "squad-v1.1" / "dev-v1.1.json", a.work / "squad-beir", a.squad_paragraphs),
                      a.work / "squad")}
    rows: list[dict[str, Any]] = []
    models = a.models.split(",")
    for w in (float(x) for x in a.average.split(",") if x):
        models += [str(averaged(Path(m), w, a.work / "averaged")) for m in a.models.split(",") if Path(m, "manifest.json").is_file()]
    for model in models:
        for name, (beir, home) in sets.items():
            fusions = [("rrf", None)] + [("weighted", float(w)) for w in a.weights.split(",")]
            for fusion, w in fusions:
                s = load_settings({"home": home, "ner": {"enabled": False},
                                   "indexer": {"fusion": fusion, **({"dense_weight": w} if w is not None else {})}})
                t0 = time.perf_counter()
                r = eval_retrieval(s, beir, split="test", mode="all", embedder=model, progress=False)
                rows.append({"model": model, "dataset": name, "fusion": fusion, "dense_weight": w,
                             **{m: r[m] for m in ("bm25", "dense", "hybrid")},
                             "seconds": round(time.perf_counter() - t0, 1)})
                print(json.dumps({k: rows[-1][k] for k in ("model", "dataset", "fusion", "dense_weight")}
                                 | {"hybrid_ndcg@10": r["hybrid"]["ndcg@10"]}), file=sys.stderr)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps({"command": "HF_HUB_OFFLINE=1 .venv/bin/python bench/fusion.py " + " ".join(sys.argv[1:]),
                                 "cpus": os.cpu_count(), "rows": rows}, indent=2) + "\n")


def averaged(model: Path, start_weight: float, root: Path) -> Path:
    """A copy of a trained embedder with its weights averaged with its starting model's."""
    import shutil

    from safetensors.torch import load_file, save_file

    from indexer.embedder import resolve_embedder_path
    from trainer.embedder.merge import interpolate

    start = resolve_embedder_path(json.loads((model / "manifest.json").read_text())["base"]["path"])
    out = root / f"{model.parent.parent.name}-{model.name}-start{start_weight:g}"
    if out.exists():
        shutil.rmtree(out)
    shutil.copytree(model, out, ignore=shutil.ignore_patterns("manifest.json"))
    tuned = load_file(model / "model.safetensors")
    save_file(interpolate(load_file(start / "model.safetensors"), tuned, start_weight), out / "model.safetensors",
              metadata={"format": "pt"})
    return out


if __name__ == "__main__":
    main()
