"""Soak test of the HTTP API: searches, answers and writes from several client threads against a real
`ragkiln serve`, then a check that the docstore, the active index and the clients' replay log agree.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/soak.py [--minutes 10] [--workspace DIR] \
        [--searchers 4] [--writers 3] [--out bench/results/soak.json]

The server runs on a copy of the workspace (given with --workspace, else one built once from
samples/python-docs with `ragkiln ingest --no-ner` into bench/work/soak-base) on a free loopback
port. Writers own disjoint document ids, send every write with an Idempotency-Key, retry a 429 with
the same key after Retry-After, poll 202 jobs to their end, now and then send a finished write again
under its key (which must return the same job), and keep a replay log of every write whose job
committed. At the end every job seen must have ended committed or failed with a reason; the active
documents must be exactly the base corpus plus what the replay log leaves (each at the version last
committed); the active index generation must hold exactly the chunks of those document versions;
searches must not have failed; and no response may have had a status other than the documented ones
(200, 202, 404 of a delete the log says was already gone, 429, 503).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from bench.machine import machine  # noqa: E402

SAMPLES = ROOT / "samples" / "python-docs"
WORK = ROOT / "bench" / "work"
QUERIES = ["how do I parse command line arguments", "read and write CSV files", "temporary files and directories",
           "regular expression syntax", "how to define a class", "exceptions and error handling",
           "list comprehensions", "dictionary methods", "string formatting", "virtual environments and packages",
           "what is a generator", "modules and imports", "lambda expressions", "kiln firing schedule"]
DOCUMENTED = {200, 202, 429, 503}


# ---- the server -------------------------------------------------------------------------------------
def build_base(home: Path) -> None:
    """samples/python-docs ingested without NER (cached in bench/work/soak-base)."""
    if (home / "docstore.sqlite").is_file():
        return
    shutil.rmtree(home, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "cli", "--workspace", str(home), "--log-level", "WARNING", "ingest",
                    str(SAMPLES), "--no-ner"], cwd=ROOT, check=True)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(home: Path, port: int, log: Path, env: dict[str, str]) -> subprocess.Popen:
    out = open(log, "w")  # noqa: SIM115 - closed with the process
    proc = subprocess.Popen([sys.executable, "-m", "cli", "--workspace", str(home), "--log-level", "WARNING", "serve",
                             "--host", "127.0.0.1", "--port", str(port)], cwd=ROOT,
                            env={**os.environ, **env}, stdout=out, stderr=subprocess.STDOUT)
    deadline = time.time() + 300
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited: {log.read_text()[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code in (200, 503):
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    proc.kill()
    raise RuntimeError("server did not start within 300 s")


# ---- the clients ------------------------------------------------------------------------------------
class Tally:
    """Everything the clients saw, under one lock."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.statuses: Counter[str] = Counter()
        self.unexpected: list[str] = []
        self.search_ms: list[float] = []
        self.search_failures: list[str] = []
        self.answers = 0
        self.jobs: dict[str, dict[str, Any]] = {}  # id -> last state seen
        self.replay_log: list[dict[str, Any]] = []  # committed writes, in commit order per document
        self.writes: Counter[str] = Counter()
        self.replays_checked = 0
        self.replay_mismatch: list[str] = []

    def status(self, what: str, code: int, ok: set[int], detail: str = "") -> None:
        with self.lock:
            self.statuses[f"{what} {code}"] += 1
            if code not in ok:
                self.unexpected.append(f"{what} {code} {detail[:300]}")


def searcher(c: httpx.Client, tally: Tally, stop: threading.Event, seed: int) -> None:
    rnd = random.Random(seed)
    while not stop.is_set():
        t0 = time.perf_counter()
        try:
            r = c.post("/v1/search", json={"query": rnd.choice(QUERIES), "k": 5, "mode": rnd.choice(["hybrid", "dense",
                                                                                                   "bm25"])})
        except httpx.HTTPError as e:
            with tally.lock:
                tally.search_failures.append(f"transport: {e!r}")
            continue
        ms = (time.perf_counter() - t0) * 1000
        tally.status("search", r.status_code, DOCUMENTED - {202}, r.text)
        with tally.lock:
            if r.status_code == 200:
                tally.search_ms.append(ms)
            elif r.status_code not in (429, 503):
                tally.search_failures.append(f"{r.status_code} {r.text[:200]}")


def answerer(c: httpx.Client, tally: Tally, stop: threading.Event) -> None:
    rnd = random.Random(7)
    while not stop.is_set():
        try:
            r = c.post("/v1/answer", json={"question": rnd.choice(QUERIES) + "?", "k": 3, "max_tokens": 16})
        except httpx.HTTPError as e:
            tally.status("answer", 0, DOCUMENTED, repr(e))
            continue
        tally.status("answer", r.status_code, DOCUMENTED - {202}, r.text)
        if r.status_code == 200:
            with tally.lock:
                tally.answers += 1


class Writer:
    """One client writing its own documents `soak/w<i>/<n>`; it waits for each write to end."""

    def __init__(self, i: int, c: httpx.Client, tally: Tally, words: list[str], large_chars: int) -> None:
        self.i, self.c, self.tally, self.words, self.large_chars = i, c, tally, words, large_chars
        self.rnd = random.Random(1000 + i)
        self.present: dict[str, str] = {}  # doc id -> sha256 the replay log says is active
        self.n = 0
        self.done: list[tuple[str, str, dict[str, Any], str, str]] = []  # (method, path, body, key, job id) committed

    def text(self, chars: int) -> str:
        out, size = [], 0
        while size < chars:
            w = self.rnd.choice(self.words)
            out.append(w)
            size += len(w) + 1
        return " ".join(out)

    def step(self) -> None:
        roll = self.rnd.random()
        if roll < 0.05:
            self.write("reindex", "POST", "/v1/reindex", {"ner": False}, None)
        elif roll < 0.25 and self.present:
            doc_id = self.rnd.choice(sorted(self.present))
            self.write("delete", "DELETE", f"/v1/documents/{doc_id}", None, (doc_id, None))
        elif roll < 0.33 and self.done:
            self.replay()
        else:
            if self.present and self.rnd.random() < 0.4:
                doc_id = self.rnd.choice(sorted(self.present))
            else:
                self.n += 1
                doc_id = f"soak/w{self.i}/{self.n}"
            large = self.rnd.random() < 0.12
            text = self.text(self.large_chars if large else self.rnd.randint(200, 3000))
            title = f"soak {doc_id}"
            from common.hashing import sha256_text

            self.write("upsert-large" if large else "upsert", "POST", "/v1/documents",
                       {"documents": [{"id": doc_id, "title": title, "text": text}]},
                       (doc_id, sha256_text(title + "\x00" + text)))

    def send(self, method: str, path: str, body: dict[str, Any] | None, key: str) -> httpx.Response:
        headers = {"Idempotency-Key": key}
        while True:
            r = self.c.request(method, path, json=body, headers=headers)
            if r.status_code != 429:
                return r
            self.tally.status("write", 429, DOCUMENTED)
            time.sleep(float(r.headers.get("retry-after", "1")))  # the same key: a retry, not a second write

    def write(self, kind: str, method: str, path: str, body: dict[str, Any] | None,
              effect: tuple[str, str | None] | None) -> None:
        key = uuid.uuid4().hex
        r = self.send(method, path, body, key)
        self.tally.writes[kind] += 1
        if kind == "delete" and r.status_code == 404:  # only if the log says it was already gone: never here
            self.tally.status(kind, 404, set(), r.text)
            return
        self.tally.status(kind, r.status_code, DOCUMENTED, r.text)
        if r.status_code == 200:
            job = r.json().get("job")
        elif r.status_code == 202:
            job = self.poll(r.json())
        else:
            return
        if job is None:
            self.tally.status(kind, r.status_code, set(), "200 without its job")
            return
        with self.tally.lock:
            self.tally.jobs[job["id"]] = job
        if job["state"] != "committed":
            return
        self.done.append((method, path, body or {}, key, job["id"]))
        if effect is not None:
            doc_id, sha = effect
            if sha is None:
                self.present.pop(doc_id, None)
            else:
                self.present[doc_id] = sha
            with self.tally.lock:
                self.tally.replay_log.append({"job": job["id"], "writer": self.i, "doc_id": doc_id, "sha256": sha,
                                              "generation": job["generation"], "t": time.time()})

    def poll(self, job: dict[str, Any]) -> dict[str, Any]:
        deadline = time.time() + 1800
        while job["state"] in ("queued", "running") and time.time() < deadline:
            time.sleep(0.25)
            r = self.c.get(f"/v1/jobs/{job['id']}")
            self.tally.status("job", r.status_code, {200}, r.text)
            if r.status_code == 200:
                job = r.json()
        return job

    def replay(self) -> None:
        """A committed write sent again under its key: the same job, nothing written again."""
        method, path, body, key, job_id = self.rnd.choice(self.done)
        r = self.send(method, path, body or None, key)
        self.tally.status("replay", r.status_code, {200, 202}, r.text)
        got = (r.json().get("job") or {}).get("id") if r.status_code == 200 else r.json().get("id")
        with self.tally.lock:
            self.tally.replays_checked += 1
            if got != job_id:
                self.tally.replay_mismatch.append(f"{method} {path}: {job_id} -> {got}")


def writer_loop(w: Writer, stop: threading.Event) -> None:
    while not stop.is_set():
        try:
            w.step()
        except httpx.HTTPError as e:
            w.tally.status("write", 0, set(), f"transport: {e!r}")


# ---- the end check ----------------------------------------------------------------------------------
def check(home: Path, base_docs: dict[str, str], writers: list[Writer], tally: Tally, url: str) -> dict[str, Any]:
    """Docstore, active index and replay log agree; every job ended with a known outcome."""
    import numpy as np

    from common.settings import load_settings
    from indexer.generation import chunk_ids_of, load_generation
    from indexer.workspace import Workspace

    with httpx.Client(base_url=url, timeout=60) as c:
        final_jobs = {j: c.get(f"/v1/jobs/{j}").json() for j in tally.jobs}
    unsettled = [j for j, v in final_jobs.items() if v.get("state") not in ("committed", "failed")]
    no_reason = [j for j, v in final_jobs.items() if v.get("state") == "failed" and not (v.get("error") or {}).get("message")]
    expected = dict(base_docs)
    for w in writers:
        expected.update(w.present)
    ws = Workspace.open(load_settings({"home": home}))
    active = {i: sha for i, (sha, _) in ws.store.active_documents().items()}
    lost = sorted(set(expected) - set(active))
    extra = sorted(set(active) - set(expected))
    stale = sorted(i for i in set(expected) & set(active) if expected[i] != active[i])
    gen = load_generation(ws.active_index_path())
    chunker = gen.manifest["chunker"]
    want_ids = sorted(c for i, sha in active.items() for c in ws.store.chunk_ids_for(i, sha, chunker))
    dense_ids = np.sort(chunk_ids_of(gen.dense))
    bm25_ids = np.sort(gen.bm25.ids)
    index_ok = (len(want_ids) == len(dense_ids) and bool(np.array_equal(dense_ids, np.array(want_ids)))
                and bool(np.array_equal(bm25_ids, dense_ids)) and len(set(want_ids)) == len(want_ids))
    failed_jobs = Counter((v.get("error") or {}).get("code") for v in final_jobs.values() if v.get("state") == "failed")
    checks = {
        "every_job_committed_or_failed_with_reason": not unsettled and not no_reason,
        "no_lost_documents": not lost,
        "no_unexpected_documents": not extra,
        "documents_at_last_committed_version": not stale,
        "index_holds_exactly_the_active_chunks": index_ok,
        "index_counts_match_docstore": gen.manifest["counts"]["documents"] == len(active),
        "zero_failed_searches": not tally.search_failures,
        "only_documented_statuses": not tally.unexpected,
        "idempotent_replays_return_the_first_job": not tally.replay_mismatch,
    }
    return {"ok": all(checks.values()), "checks": checks,
            "details": {"unsettled_jobs": unsettled[:20], "failed_without_reason": no_reason[:20], "lost": lost[:20],
                        "unexpected_documents": extra[:20], "stale_versions": stale[:20],
                        "active_documents": len(active), "expected_documents": len(expected),
                        "index_chunks": int(len(dense_ids)), "expected_chunks": len(want_ids),
                        "generation": gen.path.name, "failed_job_codes": dict(failed_jobs),
                        "search_failures": tally.search_failures[:20], "unexpected_statuses": tally.unexpected[:20],
                        "replay_mismatches": tally.replay_mismatch[:20]}}


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    s = sorted(values)
    return round(s[min(len(s) - 1, int(q * len(s)))], 1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--workspace", type=Path, default=None, help="Workspace to copy (default: samples/python-docs).")
    ap.add_argument("--searchers", type=int, default=4)
    ap.add_argument("--writers", type=int, default=3)
    ap.add_argument("--large-chars", type=int, default=120_000,
                    help="Characters of a large upsert (above server.write_sync_max_chars: answered 202).")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "soak.json")
    args = ap.parse_args()

    WORK.mkdir(parents=True, exist_ok=True)
    base = args.workspace
    if base is None:
        base = WORK / "soak-base"
        build_base(base)
    home = WORK / "soak-run" / "ws"
    shutil.rmtree(home.parent, ignore_errors=True)
    shutil.copytree(base, home, ignore=shutil.ignore_patterns("jobs.sqlite*", ".jobs", ".writer.lock"))
    from common.settings import load_settings
    from indexer.workspace import Workspace

    ws = Workspace.open(load_settings({"home": home}))
    base_docs = {i: sha for i, (sha, _) in ws.store.active_documents().items()}
    words = [w for d in list(ws.store.iter_documents())[:50] for w in d.text.split() if w.isalpha()] or ["kiln"]
    ws.store.close()

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {"HF_HUB_OFFLINE": "1"}
    if args.workspace is None:
        env["RAGKILN_NER__ENABLED"] = "false"  # the base corpus was ingested without NER
    log = home.parent / "server.log"
    t_start = time.time()
    proc = start_server(home, port, log, env)
    ready = httpx.get(url + "/readyz", timeout=10).json()
    has_generator = bool(ready.get("generator"))
    tally = Tally()
    stop = threading.Event()
    clients = [httpx.Client(base_url=url, timeout=120) for _ in range(args.searchers + args.writers + 1)]
    writers = [Writer(i, clients[args.searchers + i], tally, words, args.large_chars) for i in range(args.writers)]
    threads = [threading.Thread(target=searcher, args=(clients[i], tally, stop, i)) for i in range(args.searchers)]
    threads += [threading.Thread(target=writer_loop, args=(w, stop)) for w in writers]
    if has_generator:
        threads.append(threading.Thread(target=answerer, args=(clients[-1], tally, stop)))
    result: dict[str, Any] = {"command": " ".join([Path(sys.executable).name, *sys.argv]), "machine": machine(),
                              "workspace": str(args.workspace or "samples/python-docs (ingested --no-ner)"),
                              "minutes": args.minutes, "searchers": args.searchers, "writers": args.writers,
                              "answers": "on" if has_generator else "skipped (no generator)"}
    try:
        for t in threads:
            t.start()
        time.sleep(args.minutes * 60)
        stop.set()
        for t in threads:  # writers finish the write they are in (and poll its job to its end)
            t.join(1800)
        result["check"] = check(home, base_docs, writers, tally, url)
    finally:
        stop.set()
        for c in clients:
            c.close()
        proc.terminate()
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
    states = Counter(j["state"] for j in tally.jobs.values())
    result.update({
        "seconds": round(time.time() - t_start, 1),
        "searches": len(tally.search_ms), "search_p50_ms": pct(tally.search_ms, 0.5),
        "search_p99_ms": pct(tally.search_ms, 0.99), "answers_ok": tally.answers,
        "writes": dict(tally.writes), "jobs_seen": len(tally.jobs), "job_states": dict(states),
        "replay_log_entries": len(tally.replay_log), "idempotent_replays_checked": tally.replays_checked,
        "statuses": dict(sorted(tally.statuses.items())),
        "server_log_tail": log.read_text()[-3000:] if not result.get("check", {}).get("ok") else "",
    })
    result["ok"] = bool(result.get("check", {}).get("ok"))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    (home.parent / "replay-log.jsonl").write_text("".join(json.dumps(e) + "\n" for e in tally.replay_log))
    print(json.dumps({k: v for k, v in result.items() if k not in ("machine", "server_log_tail")}, indent=2))
    sys.exit(0 if result["ok"] else 1)


if __name__ == "__main__":
    main()
