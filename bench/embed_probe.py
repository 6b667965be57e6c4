"""Does `auto` pick the fastest int8 export? The export probe's speed-ups against a steady-state race.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/embed_probe.py [--docs 300] [--repeats 3]
        [--workspace bench/work/embed-probe] [--out bench/results/embed-probe.json]

A workspace ingests the first --docs SciFact documents with the torch embedder; then, --repeats times, every
int8 export is deleted and `choose_embedder` (the `auto` setting, as an ingest calls it) makes them again,
each export probing its speed against torch as it is made (indexer.backends.race); the speed-ups it recorded
and the backend it chose are kept. Truth: torch and every export, each warmed with a full pass, timed in
alternation over 4 rounds on the same 64 chunks (best and first timed pass of each). `old_protocol` is what
the probe measured before it raced (a 4-text warm-up, then one timed pass, each embedder after the other),
taken in each repeat on freshly loaded exports, and the export it would have chosen.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.machine import machine  # noqa: E402
from common.settings import load_settings  # noqa: E402
from indexer import backends, service  # noqa: E402
from indexer.embedder import load_embedder  # noqa: E402
from indexer.workspace import Workspace  # noqa: E402


def old_protocol(emb: Any, texts: list[str], batch_size: int) -> float:
    emb.encode(texts[:4], batch_size=batch_size)
    t0 = time.perf_counter()
    emb.encode(texts, batch_size=batch_size)
    return len(texts) / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--beir", type=Path, default=ROOT.parent / "shared" / "datasets" / "scifact")
    ap.add_argument("--docs", type=int, default=300)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--workspace", type=Path, default=ROOT / "bench" / "work" / "embed-probe")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "embed-probe.json")
    a = ap.parse_args()
    corpus = a.workspace.parent / "embed-probe-corpus"
    if a.workspace.exists():
        shutil.rmtree(a.workspace)
    corpus.mkdir(parents=True, exist_ok=True)
    lines = (a.beir / "corpus.jsonl").read_text(encoding="utf-8").splitlines()[: a.docs]
    (corpus / "corpus.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    settings = load_settings({"home": a.workspace, "ner": {"enabled": False}, "indexer": {"embed_backend": "torch"}})
    service.ingest(settings, [corpus / "corpus.jsonl"], progress=False)
    cfg = load_settings({"home": a.workspace, "indexer": {"embed_backend": "auto"}}).indexer
    ws = Workspace.open(settings)
    texts = [c.text for c in ws.store.iter_chunks()]
    base = load_embedder("all-MiniLM-L6-v2")
    names = [b for b in backends.AUTO_ORDER if backends.available(b)]
    result: dict[str, Any] = {"command": "HF_HUB_OFFLINE=1 .venv/bin/python " + " ".join(["bench/embed_probe.py", *sys.argv[1:]]),
                              "machine": machine(), "chunks": len(texts), "probe_chunks": cfg.embed_sample_chunks,
                              "choices": []}
    for _ in range(a.repeats):
        shutil.rmtree(ws.models / "exports", ignore_errors=True)
        emb, sel = backends.choose_embedder(ws.models, base, cfg, lambda: texts)
        # the probe as it was: each freshly loaded export after torch, a 4-text warm-up, one timed pass
        sample = texts[: cfg.embed_sample_chunks]
        old = {b: old_protocol(load_embedder(str(backends.export_dir(ws.models, base.id, b))), sample,
                               cfg.embed_batch_size) / old_protocol(base, sample, cfg.embed_batch_size) for b in names}
        result["choices"].append({"chosen": getattr(emb, "backend", "torch"), "reason": sel["reason"],
                                  "speedups": {c["backend"]: c.get("speedup") for c in sel["candidates"]},
                                  "old_protocol_speedups": {b: round(v, 3) for b, v in old.items()},
                                  "old_protocol_choice": max(old, key=old.__getitem__)})
        print(json.dumps(result["choices"][-1]), file=sys.stderr, flush=True)
    sample = texts[: cfg.embed_sample_chunks]
    embs = {"torch": base, **{b: load_embedder(str(backends.export_dir(ws.models, base.id, b))) for b in names}}
    first: dict[str, float] = {}
    best: dict[str, float] = {}
    for e in embs.values():
        e.encode(sample, batch_size=cfg.embed_batch_size)
    for r in range(4):
        for k, e in embs.items():
            t0 = time.perf_counter()
            e.encode(sample, batch_size=cfg.embed_batch_size)
            rate = len(sample) / (time.perf_counter() - t0)
            first.setdefault(k, round(rate, 1))
            best[k] = round(max(best.get(k, 0.0), rate), 1)
    result["race"] = {"first_timed_pass": first, "best_of_4": best,
                      "speedup_best": {k: round(v / best["torch"], 2) for k, v in best.items() if k != "torch"},
                      "fastest": max((k for k in best if k != "torch"), key=best.__getitem__)}
    fastest = result["race"]["fastest"]
    result["auto_right"] = {"race probe (now)": f"{sum(c['chosen'] == fastest for c in result['choices'])}/{a.repeats}",
                            "old protocol": f"{sum(c['old_protocol_choice'] == fastest for c in result['choices'])}/"
                                            f"{a.repeats}"}
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(result, indent=2), encoding="utf-8")
    print(json.dumps({k: result[k] for k in ("race", "auto_right")}, indent=2))


if __name__ == "__main__":
    main()
