"""The main job end to end: build a small corpus with the tiny preset, serve it, search, ask with
citations, change a document, reindex, ask again and see the change."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from common.settings import load_settings

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = ROOT / "samples" / "python-docs" / "library"

ZEPHYR_V1 = ("Zephyr discovery protocol. The Zephyr discovery protocol announces services on port 4242. "
             "Every Zephyr node answers discovery broadcasts within two seconds.")
ZEPHYR_V2 = ("Zephyr discovery protocol. The Zephyr discovery protocol moved to port 5353 in version two. "
             "Every Zephyr node answers discovery broadcasts within two seconds.")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from pipeline.build import run_build

    root = tmp_path_factory.mktemp("e2e")
    corpus = root / "corpus"
    corpus.mkdir()
    for f in sorted(SAMPLES.iterdir())[:12]:
        shutil.copy(f, corpus / f.name)
    (corpus / "zephyr.txt").write_text(ZEPHYR_V1)
    home = root / "ws"
    summary = run_build(load_settings({"home": home}), [corpus], preset="tiny")
    assert [s["stage"] for s in summary["stages"]][-1] == "report"
    # Each stage ran in a process of its own (stage_processes), which reports its own peak memory.
    assert all(s["peak_rss_mb"] > 50 for s in summary["stages"])
    # A second run finds every stage up to date.
    again = run_build(load_settings({"home": home}), [corpus], preset="tiny")
    assert all(s["skipped"] for s in again["stages"])
    # A build that died after the retrieval LM trained (its plain twin lost) trains neither again: both runs
    # continue from their last checkpoints, and nothing downstream reruns.
    shutil.rmtree(home / "models" / "lm-plain")
    resumed = run_build(load_settings({"home": home}), [corpus], preset="tiny")
    assert [s["stage"] for s in resumed["stages"] if not s["skipped"]] == ["lm"]
    lm = json.loads((home / "build" / "state.json").read_text())["stages"]["lm"]["outputs"]
    assert lm["resumed_from_step"] == lm["steps"] and (home / "models" / "lm-plain" / "manifest.json").exists()
    return home


def test_build_then_serve_search_answer_change(built: Path) -> None:
    report = built / "report" / "report.html"
    assert report.exists() and "ragkiln build report" in report.read_text()
    assert (built / "report" / "report.md").exists()
    assert list((built / "gguf").rglob("model-q8_0.gguf"))

    port = free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "RAGKILN_SERVER__API_KEYS": ""}
    proc = subprocess.Popen(
        [sys.executable, "-m", "cli", "--workspace", str(built), "--log-level", "WARNING", "serve",
         "--port", str(port)], cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(base_url=base, timeout=60) as http:
            deadline = time.time() + 120
            while True:
                try:
                    if http.get("/readyz").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else "server died"
                assert time.time() < deadline, "server not ready in 120 s"
                time.sleep(0.5)

            r = http.post("/v1/search", json={"query": "Zephyr discovery protocol port", "k": 3})
            assert r.status_code == 200, r.text
            assert r.json()["hits"][0]["doc_id"] == "zephyr.txt"

            a1 = http.post("/v1/answer", json={"question": "Which port does the Zephyr discovery protocol use?",
                                               "max_tokens": 16})
            assert a1.status_code == 200, a1.text
            body1 = a1.json()
            assert body1["answer"]
            cited = [c for c in body1["citations"] if c["doc_id"] == "zephyr.txt"]
            assert cited, body1["citations"]
            assert any("4242" in p["text"] for p in body1["passages"] if p["doc_id"] == "zephyr.txt")

            # Change the document through the API, then reindex as a background job.
            up = http.post("/v1/documents", json={"documents": [{"id": "zephyr.txt", "text": ZEPHYR_V2}]})
            assert up.status_code == 200, up.text
            job = http.post("/v1/reindex", json={})
            assert job.status_code in (200, 202), job.text
            job_id = job.json()["id"]
            deadline = time.time() + 300
            while True:
                st = http.get(f"/v1/jobs/{job_id}").json()
                if st["state"] in ("committed", "failed"):
                    break
                assert time.time() < deadline
                time.sleep(0.5)
            assert st["state"] == "committed", st

            a2 = http.post("/v1/answer", json={"question": "Which port does the Zephyr discovery protocol use?",
                                               "max_tokens": 16})
            assert a2.status_code == 200, a2.text
            passages = [p["text"] for p in a2.json()["passages"] if p["doc_id"] == "zephyr.txt"]
            assert passages and all("5353" in t and "4242" not in t for t in passages)
            assert any(c["doc_id"] == "zephyr.txt" for c in a2.json()["citations"])
            assert http.get("/report").status_code == 200
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_the_tiny_build_report_is_readable(built: Path) -> None:
    """The report of a real build: summary first, no raw JSON in a table cell, and every embedded
    figure drawn from data with at least two distinct values (no empty or flat plot)."""
    import re

    from pipeline.build import BuildState
    from pipeline.report_figures import plan_figures
    from pipeline.report_format import distinct

    page = (built / "report" / "report.html").read_text()
    md = (built / "report" / "report.md").read_text()
    assert md.index("## Summary") < md.index("## Stages")
    assert "documents" in md and "chunks" in md and "embedder served" in md
    lm = BuildState(built / "build" / "state.json").outputs("lm")  # the label-free LM check ran and decided
    assert lm["served"] in ("retrieval", "plain") and lm["payoff"]["plain_ppl"] > 1 and "LM tuned for answers" in md
    assert (lm["payoff"]["ratio"] < 1) == (lm["served"] == "retrieval")
    cells = re.findall(r"<td>(.*?)</td>", page, flags=re.S)
    assert cells and not [c for c in cells if re.search(r"\{\s*(&quot;|&#x27;|\"|')", c)]
    figs = plan_figures(BuildState(built / "build" / "state.json").data["stages"], built)
    assert figs and all(distinct(f.values()) >= 2 for f in figs)
    assert page.count("data:image/png;base64,") == len(figs)
    assert sorted(p.name for p in (built / "report").glob("*.png")) == sorted(f.file for f in figs)
