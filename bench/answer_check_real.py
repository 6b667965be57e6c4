"""Does the held-out answer check (trainer/lm/answer_check.py) make the call real questions would?

The check compares the QA-tuned model's own answers with the extractive reader's on synthetic held-out
questions, the only questions a build has. This asks a built workspace's served model the demo corpus's
148 written questions (bench/data/python_docs_questions*.jsonl, none of them read by the check) through
`/v1/answer` both ways: extractive (the reader) and in the model's own words (`extractive: false`, with
`server.generative` forcing the model past the gate). Correct when the expected name appears as a whole
word in the answer (bench/demo_answers.names). The call the real questions make: the model should write
free text only if its own answers are right at least as often as the reader's.

    HF_HUB_OFFLINE=1 /tmp/ragkiln-cpu heavy .venv/bin/python bench/answer_check_real.py \\
        --workspace bench/work/answer-check/ws --out bench/results/answer-check-real.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.demo_answers import QUESTIONS, names  # noqa: E402
from bench.machine import machine  # noqa: E402


def ask(client: Any, rows: list[dict[str, Any]], extractive: bool) -> list[dict[str, Any]]:
    out = []
    for r in rows:
        resp = client.post("/v1/answer", json={"question": r["question"], "extractive": extractive, "max_tokens": 32})
        if resp.status_code != 200:
            raise SystemExit(f"/v1/answer answered {resp.status_code}: {resp.text[:300]}")
        out.append(resp.json())
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workspace", type=Path, required=True, help="a `ragkiln build` workspace of samples/python-docs")
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args()
    import torch
    from fastapi.testclient import TestClient

    from common.settings import load_settings
    from quantize.registry import own_model_id, workspace_generator
    from server.app import create_app
    from trainer.lm.checkpoint import load_model

    torch.set_num_threads(2)
    base = load_settings({"home": a.workspace})
    gguf = workspace_generator(base)
    if gguf is None:
        raise SystemExit(f"{a.workspace} has no GGUF model: run `ragkiln build` on samples/python-docs first")
    model_id = own_model_id(gguf)
    check = load_model(a.workspace / "models" / "lm")[2]["metrics"].get("heldout_answers")
    settings = base.model_copy(update={"server": base.server.model_copy(update={
        "api_keys": "", "generative": f"{model_id}=true"})})
    rows = [dict(json.loads(ln), set=name) for name, path in QUESTIONS.items()
            for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]
    with TestClient(create_app(settings)) as client:
        reader = ask(client, rows, extractive=True)
        own = ask(client, rows, extractive=False)
    per = [{"set": r["set"], "question": r["question"], "expected": r["expected"],
            "reader": x["answer"], "reader_mode": x["mode"], "model": y["answer"], "model_mode": y["mode"],
            "reader_right": bool(x["grounded"] and names(r["expected"], x["answer"])),
            "model_right": bool(y["grounded"] and names(r["expected"], y["answer"]))}
           for r, x, y in zip(rows, reader, own)]
    assert all(p["reader_mode"] == "extractive" for p in per if p["reader"])
    right = {k: sum(p[f"{k}_right"] for p in per) for k in ("reader", "model")}
    real_call = "generate" if right["model"] >= right["reader"] else "extractive"
    check_call = None if not check else ("generate" if check["model_f1"] >= check["reader_f1"] else "extractive")
    result = {
        "command": f"HF_HUB_OFFLINE=1 /tmp/ragkiln-cpu heavy .venv/bin/python bench/answer_check_real.py "
                   f"--workspace {a.workspace} --out {a.out}",
        "model": model_id, "questions": len(per),
        "data": "bench/data/python_docs_questions.jsonl and _2, _3, _4 (148 questions written about samples/python-docs, "
                "each with the name expected in the answer); the answer check never reads them",
        "right": right, "refused": sum(not x["grounded"] for x in reader),
        "call_from_real_questions": real_call, "heldout_answer_check": check, "call_from_the_check": check_call,
        "agree": check_call == real_call if check_call else None,
        "machine": machine(python=platform.python_version()),
        "created": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "answers": per,
    }
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(json.dumps({k: result[k] for k in ("right", "refused", "call_from_real_questions", "call_from_the_check",
                                             "agree")}))


if __name__ == "__main__":
    main()
