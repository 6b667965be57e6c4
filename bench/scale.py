"""Ingest time and peak memory against corpus size, on synthetic corpora cut from the sample texts.

    HF_HUB_OFFLINE=1 /tmp/ragkiln-cpu timing .venv/bin/python bench/scale.py [--sizes 1000,10000] [--ner]
        [--code DIR] [--label streamed] [--work bench/work/scale] [--out bench/results/scale.json]

Each size is a folder of N .txt files (1,000 per subfolder) made from the paragraphs of samples/python-docs: document
i joins 3-8 paragraphs drawn with seed i and a sentence naming i, so every text is distinct (the vector cache dedups
identical texts). Each ingest is a fresh `python -m cli ingest DIR --json` (no NER unless --ner) under
`/usr/bin/time -v`: wall time and the peak resident set of the ingest process (spaCy's worker processes, with --ner,
are separate processes and not counted). --code runs another checkout of ragkiln (e.g. the commit before the
streamed ingest, unpacked with `git archive`) on the same corpora; results are merged into --out under --label.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from embed_backends import cpu_info, load  # noqa: E402


def paragraphs() -> list[str]:
    out: list[str] = []
    for p in sorted((ROOT / "samples" / "python-docs").rglob("*")):
        if p.is_file() and p.suffix in (".txt", ".md", ".rst"):
            for para in re.split(r"\n\s*\n", p.read_text(encoding="utf-8", errors="replace")):
                para = " ".join(para.split())
                if len(para) >= 80 and not para.startswith(("..", "#", "=", "-", "*")):
                    out.append(para)
    return out


def make_corpus(root: Path, n: int, paras: list[str]) -> Path:
    done = root / ".complete"
    if done.exists() and done.read_text() == str(n):
        return root
    root.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        rng = random.Random(i)
        body = "\n\n".join(rng.sample(paras, rng.randint(3, 8)))
        d = root / f"part{i // 1000:03d}"
        d.mkdir(exist_ok=True)
        (d / f"doc{i:06d}.txt").write_text(f"Synthetic document {i} collects notes on Python, reference {i}.\n\n{body}\n",
                                           encoding="utf-8")
    done.write_text(str(n))
    return root


def run_ingest(code: Path, home: Path, corpus: Path, ner: bool) -> dict:
    cmd = ["/usr/bin/time", "-v", sys.executable, "-m", "cli", "--workspace", str(home), "--log-level", "WARNING",
           "ingest", str(corpus), "--json"] + ([] if ner else ["--no-ner"])
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(code)}
    t = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True, cwd=code, env=env)
    wall = time.perf_counter() - t
    if p.returncode != 0:
        raise SystemExit(f"ingest failed ({p.returncode}): {p.stderr[-2000:]}")
    rss_kb = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", p.stderr).group(1))  # type: ignore[union-attr]
    report = json.loads(p.stdout)
    return {"seconds": round(wall, 1), "peak_rss_mb": round(rss_kb / 1024, 1), "chunks": report["chunks_total"],
            "documents": report["documents_total"], "chunks_per_s": round(report["chunks_total"] / wall, 1)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="1000,10000")
    ap.add_argument("--ner", action="store_true")
    ap.add_argument("--code", type=Path, default=ROOT)
    ap.add_argument("--label", default="streamed")
    ap.add_argument("--work", type=Path, default=ROOT / "bench" / "work" / "scale")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "scale.json")
    args = ap.parse_args()
    paras = paragraphs()
    result = json.loads(args.out.read_text()) if args.out.exists() else {}
    result.update({"cpu": cpu_info(), "paragraphs": len(paras), "ner": args.ner})
    runs = result.setdefault("runs", {}).setdefault(args.label, {})
    for n in (int(x) for x in args.sizes.split(",")):
        corpus = make_corpus(args.work / f"corpus-{n}", n, paras)
        home = args.work / f"ws-{args.label}-{n}"
        subprocess.run(["rm", "-rf", str(home)], check=True)
        before = load()
        r = run_ingest(args.code.resolve(), home, corpus, args.ner)
        r.update(load_before=before, load_after=load(),
                 command=f"{' '.join(sys.argv)} (this size: cli ingest {corpus} --json{'' if args.ner else ' --no-ner'})")
        runs[str(n)] = r
        print(args.label, n, r, flush=True)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
