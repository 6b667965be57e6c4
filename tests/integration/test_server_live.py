"""A real `ragkiln serve` process on a free loopback port: SSE streaming, the official `openai`
client, a reindex while searches run, and no public address without keys unless --insecure."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from server_support import (ADMIN, ADMIN_KEY, READ, READ_KEY, ROOT, base_workspace,  # noqa: E402,F401
                            free_port, served_copy)

pytestmark = pytest.mark.slow
QUESTION = "How many volunteers did the vaccine trial enroll?"


@pytest.fixture(scope="module")
def live(base_workspace, tmp_path_factory):  # noqa: F811
    yield from served_copy(base_workspace, tmp_path_factory, "live")


def test_answer_streams_server_sent_events_over_http(live):
    events: list[tuple[str, dict]] = []
    reads = 0
    with httpx.stream("POST", live.url + "/v1/answer", headers=READ, timeout=60,
                      json={"question": QUESTION, "max_tokens": 16, "stream": True}) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        assert r.headers.get("transfer-encoding") == "chunked"
        buf = ""
        for piece in r.iter_text():
            reads += 1
            buf += piece
            while "\n\n" in buf:
                block, buf = buf.split("\n\n", 1)
                fields = dict(line.split(": ", 1) for line in block.splitlines())
                events.append((fields["event"], json.loads(fields["data"])))
    names = [e for e, _ in events]
    assert names[0] == "token" and names[-2:] == ["citations", "done"]
    done = events[-1][1]
    assert done["answer"] == "".join(d["text"] for e, d in events if e == "token")
    assert done["timings"]["first_token_ms"] is not None and done["usage"]["completion_tokens"] >= 1


def test_official_openai_client(live):
    openai = pytest.importorskip("openai")
    client = openai.OpenAI(base_url=live.url + "/v1", api_key=READ_KEY, max_retries=0, timeout=60)
    models = {m.id for m in client.models.list()}
    assert {"tiny-lm-q8_0", "all-MiniLM-L6-v2"} <= models

    emb = client.embeddings.create(model="all-MiniLM-L6-v2", input=["solar power", "coffee"])
    assert len(emb.data) == 2 and len(emb.data[0].embedding) == 384  # the client asks for base64 by default

    chat = client.chat.completions.create(model="tiny-lm-q8_0", max_tokens=6,
                                          messages=[{"role": "user", "content": QUESTION}])
    assert chat.choices[0].message.role == "assistant" and chat.usage.completion_tokens >= 1

    stream = client.chat.completions.create(model="tiny-lm-q8_0", max_tokens=6, stream=True,
                                            stream_options={"include_usage": True},
                                            messages=[{"role": "user", "content": QUESTION}])
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert any(c.choices and c.choices[0].finish_reason for c in chunks)
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens >= 1
    assert isinstance(text, str)

    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
    bad = openai.OpenAI(base_url=live.url + "/v1", api_key="wrong-key-000", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        bad.models.list()


def test_reindex_during_concurrent_searches_switches_once_without_failures(live):
    stop = threading.Event()
    seen: list[list[str]] = [[] for _ in range(3)]
    failures: list[str] = []

    def searcher(i: int) -> None:
        with httpx.Client(base_url=live.url, headers=READ, timeout=60) as c:
            while not stop.is_set():
                r = c.post("/v1/search", json={"query": "coffee growers in the Andes", "k": 3})
                if r.status_code != 200 or not r.json()["hits"]:
                    failures.append(f"{r.status_code} {r.text[:200]}")
                    continue
                seen[i].append(r.json()["index"])

    threads = [threading.Thread(target=searcher, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    try:
        time.sleep(1.0)
        job = httpx.post(live.url + "/v1/reindex", headers=ADMIN, timeout=60,
                         json={"embedder": "all-MiniLM-L6-v2", "ner": False}).json()
        deadline = time.time() + 180
        while job["state"] in ("queued", "running") and time.time() < deadline:
            time.sleep(0.2)
            job = httpx.get(f"{live.url}/v1/jobs/{job['id']}", headers=ADMIN, timeout=60).json()
        time.sleep(1.0)
    finally:
        stop.set()
        for t in threads:
            t.join(60)
    assert job["state"] == "committed", job
    assert failures == []
    names = [n for s in seen for n in s]
    assert len(set(names)) == 2, set(names)
    for s in seen:  # each client sees the old index, then the new one, never back
        switches = sum(1 for a, b in zip(s, s[1:]) if a != b)
        assert switches == 1 and s[0] != s[-1]


def test_without_keys_a_public_host_is_refused_unless_insecure(base_workspace, tmp_path):  # noqa: F811
    env = {"HF_HUB_OFFLINE": "1", "RAGKILN_SERVER__API_KEYS": "", "RAGKILN_NER__ENABLED": "false",
           "RAGKILN_SERVER__GENERATOR": "none", "PATH": "/usr/bin:/bin"}
    refused = subprocess.run([sys.executable, "-m", "cli", "--workspace", str(base_workspace), "serve", "--host",
                              "0.0.0.0", "--port", str(free_port())], cwd=ROOT, capture_output=True, text=True,
                             env=env, timeout=120)
    assert refused.returncode == 2 and "--insecure" in refused.stderr and "Traceback" not in refused.stderr
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "cli", "--workspace", str(base_workspace), "serve", "--host", "0.0.0.0",
         "--port", str(port), "--insecure"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env=env)
    try:
        deadline = time.time() + 120
        while time.time() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.3)
        r = httpx.post(f"http://127.0.0.1:{port}/v1/search", json={"query": "coffee"}, timeout=30)
        assert r.status_code == 200  # no key needed when none is configured
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=30)
    assert "with no API keys (--insecure)" in out
    assert f"http://0.0.0.0:{port}" in out
