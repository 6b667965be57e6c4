"""No stuck slots (issue 27): after streamed answers cut off mid-stream, one by one and eight at once,
does every later answer still come back, and how fast?

    HF_HUB_OFFLINE=1 /tmp/ragkiln-cpu timing .venv/bin/python bench/cutoff.py [--rounds 3]

A real `ragkiln serve` (bench/soak.py's start_server) on a copy of bench/demo_answers.py's workspace
(samples/python-docs, no NER, a tiny random Llama exported to GGUF by our own exporter), on a free
loopback port. Each round: 16 streamed `/v1/answer` requests that force generation (`extractive:
false`), each closed by the client after its first event; then 8 more at once, closed the same way;
then 6 answers one after another, each timed from request to full response; then `/readyz`. The target
is every one of the 6 answered 200 within 15 s and /readyz ready with no stuck generator; before the
fix one cut-off could leave the generator busy and every later answer a 504 for 20 minutes.
Writes bench/results/cutoff.json (statuses, per-answer seconds, /readyz, lscpu).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.demo_answers import WS, workspace  # noqa: E402
from bench.machine import machine  # noqa: E402
from bench.soak import free_port, start_server  # noqa: E402

WORK = ROOT / "bench" / "work" / "cutoff-run"
OUT = ROOT / "bench" / "results" / "cutoff.json"
QUESTION = "How do I create a SAX parser object?"
LIMIT_S = 15.0


def cut_off(url: str) -> int:
    """A streamed, generated answer the client leaves after its first event (closing the connection)."""
    body = {"question": QUESTION, "max_tokens": 200, "stream": True, "extractive": False}
    with httpx.Client(timeout=60) as c, c.stream("POST", url, json=body) as r:
        for chunk in r.iter_raw():
            if b"\n\n" in chunk:
                break
        return r.status_code


def answer(url: str) -> dict[str, Any]:
    t0 = time.perf_counter()
    try:
        r = httpx.post(url, json={"question": QUESTION, "max_tokens": 16, "extractive": False}, timeout=60)
        status, tokens = r.status_code, (r.json().get("usage") or {}).get("completion_tokens") if r.is_success else None
    except httpx.TimeoutException:
        status, tokens = "timeout", None
    return {"status": status, "seconds": round(time.perf_counter() - t0, 3), "completion_tokens": tokens}


def one_round(base: str) -> dict[str, Any]:
    url = base + "/v1/answer"
    statuses = [cut_off(url) for _ in range(16)]
    with ThreadPoolExecutor(8) as pool:
        statuses += list(pool.map(lambda _: cut_off(url), range(8)))
    answers = [answer(url) for _ in range(6)]
    ready = httpx.get(base + "/readyz", timeout=15)
    is_json = ready.headers.get("content-type", "").startswith("application/json")
    gen = ready.json().get("generator", {}) if is_json else {}
    ok = (all(a["status"] == 200 and a["seconds"] < LIMIT_S and (a["completion_tokens"] or 0) >= 1 for a in answers)
          and ready.status_code == 200 and gen.get("stuck") == 0)
    return {"cut_off_statuses": statuses, "answers": answers, "readyz": {"status": ready.status_code, "generator": gen},
            "max_answer_seconds": max(a["seconds"] for a in answers), "ok": ok}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out", type=Path, default=OUT)
    a = ap.parse_args()
    workspace(WS)  # built once by bench/demo_answers.py's rule (ingest + tiny GGUF)
    home = WORK / "ws"
    shutil.rmtree(WORK, ignore_errors=True)
    shutil.copytree(WS, home, ignore=shutil.ignore_patterns("jobs.sqlite*", ".jobs", ".writer.lock"))
    port = free_port()
    proc = start_server(home, port, WORK / "server.log",
                        {"HF_HUB_OFFLINE": "1", "RAGKILN_NER__ENABLED": "false"})
    try:
        rounds = [one_round(f"http://127.0.0.1:{port}") for _ in range(a.rounds)]
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    result = {
        "command": "HF_HUB_OFFLINE=1 /tmp/ragkiln-cpu timing .venv/bin/python bench/cutoff.py"
                   + (f" --rounds {a.rounds}" if a.rounds != 3 else ""),
        "workspace": "copy of bench/work/demo-answers-html (samples/python-docs, no NER, tiny random GGUF)",
        "procedure": "per round: 16 streamed generated answers cut off after the first event, 8 more at once, then 6 "
                     "sequential answers timed, then /readyz",
        "target": f"each of the 6 answers 200 within {LIMIT_S:.0f} s, /readyz ready, no stuck generator",
        "rounds": rounds, "all_ok": all(r["ok"] for r in rounds),
        "max_answer_seconds": max(r["max_answer_seconds"] for r in rounds),
        "machine": machine(),
        "created": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    print(json.dumps({k: result[k] for k in ("all_ok", "max_answer_seconds")}))


if __name__ == "__main__":
    main()
