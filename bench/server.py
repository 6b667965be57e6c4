"""Loopback load test of the HTTP API: /v1/search and /v1/answer at 1, 8 and 32 concurrent clients,
with a trivial FastAPI endpoint served the same way as the framework baseline.

    HF_HUB_OFFLINE=1 flock /tmp/ragkiln-heavy.lock .venv/bin/python bench/server.py \
        [--workspace bench/work/scifact] [--generator FILE.gguf] [--requests 3000] [--seconds 20] \
        [--clients 1,8,32] [--out bench/results/server.json]

Each level is bounded by a request count and a time limit (whichever comes first). The servers run
as real `uvicorn` processes on 127.0.0.1; the load generator is a minimal keep-alive HTTP/1.1
client on asyncio (one connection per client) so that it takes as little of the shared CPU as
possible. Without a SciFact workspace the bundled samples/python-docs corpus is ingested into
bench/work/server-python-docs and the result says so.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

SAMPLE_QUERIES = [
    "how do I parse command line arguments", "read and write CSV files", "temporary files and directories",
    "regular expression syntax", "how to define a class", "exceptions and error handling", "list comprehensions",
    "dictionary methods", "string formatting", "virtual environments and packages", "reading a file line by line",
    "floating point arithmetic issues", "what is a generator", "modules and imports", "lambda expressions",
]


# ---- a minimal HTTP/1.1 keep-alive client ------------------------------------------------------------
class Conn:
    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.r: asyncio.StreamReader | None = None
        self.w: asyncio.StreamWriter | None = None

    async def open(self) -> None:
        self.r, self.w = await asyncio.open_connection(self.host, self.port)
        self.w.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def close(self) -> None:
        if self.w is not None:
            self.w.close()

    async def post(self, path: str, body: bytes, first_marker: bytes | None = None) -> tuple[int, bytes, float | None]:
        """(status, body, seconds to the first body bytes containing `first_marker`)."""
        assert self.r is not None and self.w is not None
        t0 = time.perf_counter()
        self.w.write(b"POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"
                     % (path.encode(), self.host.encode(), len(body)) + body)
        head = await self.r.readuntil(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        headers = {k.strip().lower(): v.strip() for k, _, v in
                   (ln.partition(b":") for ln in head.split(b"\r\n")[1:] if ln)}
        first = None
        if b"content-length" in headers:
            data = await self.r.readexactly(int(headers[b"content-length"]))
            first = time.perf_counter() - t0
            return status, data, first
        parts: list[bytes] = []  # chunked (streamed) response
        while True:
            size = int((await self.r.readuntil(b"\r\n")).strip(), 16)
            chunk = await self.r.readexactly(size + 2)
            if size == 0:
                break
            parts.append(chunk[:-2])
            if first is None and (first_marker is None or first_marker in chunk):
                first = time.perf_counter() - t0
        return status, b"".join(parts), first


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    v = sorted(values)
    return v[min(len(v) - 1, int(round(q / 100 * (len(v) - 1))))]


async def load(host: str, port: int, path: str, bodies: list[bytes], clients: int, max_requests: int,
               max_seconds: float, ok: Any = None, marker: bytes | None = None) -> dict[str, Any]:
    conns = [Conn(host, port) for _ in range(clients)]
    await asyncio.gather(*(c.open() for c in conns))
    lat: list[float] = []
    firsts: list[float] = []
    server_first: list[float] = []
    errors: dict[str, int] = {}
    issued = 0
    t_start = time.perf_counter()
    deadline = t_start + max_seconds

    async def worker(c: Conn, seed: int) -> None:
        nonlocal issued
        rnd = random.Random(seed)
        while issued < max_requests and time.perf_counter() < deadline:
            issued += 1
            body = bodies[rnd.randrange(len(bodies))]
            t0 = time.perf_counter()
            try:
                status, data, first = await c.post(path, body, marker)
            except (OSError, asyncio.IncompleteReadError, ValueError) as e:
                errors[type(e).__name__] = errors.get(type(e).__name__, 0) + 1
                c.close()
                await c.open()
                continue
            dt = time.perf_counter() - t0
            problem = None if status == 200 else f"HTTP {status}"
            if problem is None and ok is not None:
                problem = ok(data, server_first)
            if problem:
                errors[problem] = errors.get(problem, 0) + 1
            else:
                lat.append(dt)
                if first is not None:
                    firsts.append(first)

    await asyncio.gather(*(worker(c, i) for i, c in enumerate(conns)))
    wall = time.perf_counter() - t_start
    for c in conns:
        c.close()
    ms = lambda v: None if v is None else round(v * 1000, 2)  # noqa: E731
    out = {"clients": clients, "requests": len(lat) + sum(errors.values()), "ok": len(lat),
           "errors": sum(errors.values()), "error_kinds": errors, "seconds": round(wall, 2),
           "rps": round(len(lat) / wall, 1) if wall > 0 else 0.0,
           "p50_ms": ms(pct(lat, 50)), "p95_ms": ms(pct(lat, 95)), "p99_ms": ms(pct(lat, 99))}
    if marker is not None:
        out["first_token_p50_ms"] = ms(pct(firsts, 50))
        out["first_token_p95_ms"] = ms(pct(firsts, 95))
        out["server_first_token_after_retrieval_p50_ms"] = round(pct(server_first, 50) or 0, 2) if server_first else None
        out["server_first_token_after_retrieval_p95_ms"] = round(pct(server_first, 95) or 0, 2) if server_first else None
    return out


def search_ok(data: bytes, _acc: list[float]) -> str | None:
    return None if b'"hits"' in data else "no hits field"


def answer_ok(data: bytes, acc: list[float]) -> str | None:
    """A streamed answer must end with a done event; its server-side first-token time is collected."""
    if b"event: error" in data:
        return "error event"
    i = data.rfind(b"event: done\ndata: ")
    if i < 0:
        return "no done event"
    done = json.loads(data[i + len(b"event: done\ndata: "):].split(b"\n", 1)[0])
    ft = (done.get("timings") or {}).get("first_token_ms")
    if ft is not None:
        acc.append(ft)
    return None


# ---- servers -----------------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(port: int, proc: subprocess.Popen, timeout: float = 300) -> None:
    import urllib.request

    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server on port {port} exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise SystemExit(f"server on port {port} not up after {timeout}s")


def start_ragkiln(workspace: Path, generator: str, port: int, extra_env: dict[str, str]) -> subprocess.Popen:
    env = {**os.environ, "RAGKILN_SERVER__GENERATOR": generator, "RAGKILN_SERVER__API_KEYS": "",
           "RAGKILN_NER__ENABLED": "false", **extra_env}
    return subprocess.Popen([sys.executable, "-m", "cli", "--workspace", str(workspace), "--log-level", "WARNING",
                             "serve", "--port", str(port)], cwd=ROOT, env=env)


def baseline_app():  # noqa: ANN201
    """The framework floor: a FastAPI POST endpoint parsing the same JSON body and returning a small model."""
    from fastapi import FastAPI

    app = FastAPI()
    app.post("/v1/search", response_model=_BaselineResponse)(_baseline_search)
    app.get("/healthz")(lambda: {"status": "ok"})
    return app


class _BaselineQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")
    query: str
    k: int = 10
    mode: str = "hybrid"


class _BaselineResponse(BaseModel):
    query: str
    hits: list[int]


async def _baseline_search(q: _BaselineQuery) -> _BaselineResponse:
    return _BaselineResponse(query=q.query, hits=list(range(q.k)))


def start_baseline(port: int) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--serve-baseline", str(port)], cwd=ROOT)


# ---- workspace -------------------------------------------------------------------------------------
def _usable(home: Path) -> bool:
    from common.errors import RagkilnError
    from common.settings import load_settings
    from indexer.workspace import Workspace

    if not (home / "docstore.sqlite").exists():
        return False
    try:
        return Workspace.open(load_settings({"home": home})).active_index_name() is not None
    except RagkilnError as e:
        print(f"bench: {home} not usable: {e}", file=sys.stderr)
        return False


def pick_workspace(arg: Path | None) -> tuple[Path, str, list[str]]:
    """The SciFact index (bench/work/scifact, else built into bench/work/server-scifact from the shared
    dataset), or the sample corpus when the dataset is absent."""
    from common.settings import load_settings
    from indexer.service import ingest

    if arg is not None:
        if not _usable(arg):
            raise SystemExit(f"{arg} holds no usable index")
        return arg, str(arg), SAMPLE_QUERIES
    data = ROOT.parent / "shared/datasets/scifact"
    if (data / "corpus.jsonl").exists():
        queries = [json.loads(line)["text"] for line in (data / "queries.jsonl").read_text().splitlines() if line.strip()]
        for home in (ROOT / "bench/work/scifact", ROOT / "bench/work/server-scifact"):
            if _usable(home):
                return home, "scifact", queries
        home = ROOT / "bench/work/server-scifact"
        print(f"bench: ingesting SciFact into {home} (no NER; several minutes)", file=sys.stderr)
        ingest(load_settings({"home": home}), [data / "corpus.jsonl"], progress=True)
        return home, "scifact", queries
    home = ROOT / "bench/work/server-python-docs"
    if not _usable(home):
        ingest(load_settings({"home": home}), [ROOT / "samples/python-docs"], progress=False)
    return home, "samples/python-docs (no SciFact dataset at ../shared/datasets/scifact)", SAMPLE_QUERIES


def precision_agreement(workspace: Path, queries: list[str], n: int = 300) -> dict[str, Any]:
    """bf16 vs fp32 query vectors on the served index: top-10 agreement, and nDCG@10 on SciFact test qrels."""
    from common.settings import load_settings
    from indexer.metrics import ndcg_at_k
    from indexer.workspace import Workspace
    from indexer.embedder import bf16_supported
    from server.encoding import QueryEncoder
    from server.querying import VectorSearcher

    if not bf16_supported():
        return {"bf16": "not supported on this CPU (queries are fp32)"}
    searcher = Workspace.open(load_settings({"home": workspace})).searcher()
    encoders = {p: QueryEncoder(searcher.embedder, p) for p in ("fp32", "bf16")}
    qrels_file = ROOT.parent / "shared/datasets/scifact/qrels/test.tsv"
    qrels: dict[str, dict[str, int]] = {}
    texts: dict[str, str] = {}
    if qrels_file.exists():
        for line in qrels_file.read_text().splitlines()[1:]:
            qid, did, score = line.split("\t")
            qrels.setdefault(qid, {})[did] = int(score)
        for line in (ROOT.parent / "shared/datasets/scifact/queries.jsonl").read_text().splitlines():
            q = json.loads(line)
            if q["_id"] in qrels:
                texts[q["_id"]] = q["text"]
    items = list(texts.items())[:n] if texts else [(str(i), q) for i, q in enumerate(queries[:n])]
    same, ndcg = 0, {"fp32": 0.0, "bf16": 0.0}
    for qid, q in items:
        ranked = {}
        for p, enc in encoders.items():
            hits = VectorSearcher(searcher, enc.encode([q])[0], None).search(q, k=10, mode="hybrid")
            ranked[p] = [h.chunk.doc_id for h in hits]
            if qid in qrels:
                ndcg[p] += ndcg_at_k(list(dict.fromkeys(ranked[p])), qrels[qid], 10)
        same += ranked["fp32"] == ranked["bf16"]
    out: dict[str, Any] = {"queries": len(items), "identical_top10_hybrid": round(same / len(items), 4)}
    if qrels:
        out["ndcg@10_hybrid"] = {p: round(v / len(items), 4) for p, v in ndcg.items()}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workspace", type=Path, default=None)
    ap.add_argument("--generator", default="auto", help="GGUF file for /v1/answer ('auto': the workspace's newest).")
    ap.add_argument("--clients", default="1,8,32")
    ap.add_argument("--requests", type=int, default=3000, help="Most search requests per level.")
    ap.add_argument("--seconds", type=float, default=20.0, help="Longest time per level.")
    ap.add_argument("--answer-requests", type=int, default=60, help="Most answer requests per level.")
    ap.add_argument("--max-tokens", type=int, default=32)
    ap.add_argument("--agreement-queries", type=int, default=300,
                    help="Queries for the bf16-vs-fp32 agreement check (0 skips it).")
    ap.add_argument("--out", type=Path, default=ROOT / "bench/results/server.json")
    ap.add_argument("--set", action="append", default=[], metavar="RAGKILN_X=V",
                    help="Extra server environment (e.g. RAGKILN_INDEXER__QUERY_PRECISION=fp32); repeatable.")
    ap.add_argument("--serve-baseline", type=int, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    import signal

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the `finally` that stops the servers
    if args.serve_baseline:
        import uvicorn

        uvicorn.run(baseline_app(), host="127.0.0.1", port=args.serve_baseline, log_level="warning", access_log=False)
        return

    levels = [int(x) for x in args.clients.split(",")]
    workspace, corpus, queries = pick_workspace(args.workspace)
    rnd = random.Random(0)
    rnd.shuffle(queries)
    queries = queries[:500]
    search_bodies = [json.dumps({"query": q, "k": 10, "mode": "hybrid"}).encode() for q in queries]
    answer_bodies = [json.dumps({"question": q, "k": 5, "max_tokens": args.max_tokens, "stream": True}).encode()
                     for q in queries]

    result: dict[str, Any] = {"corpus": corpus, "workspace": str(workspace), "machine": {
        "cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "command": " ".join([Path(sys.executable).name, *sys.argv]), "levels": levels,
        "bounds": {"search_requests": args.requests, "answer_requests": args.answer_requests,
                   "seconds": args.seconds},
        "load_average_at_start": os.getloadavg()}
    port_b, port_r = free_port(), free_port()
    base = start_baseline(port_b)
    extra_env = dict(kv.split("=", 1) for kv in args.set)
    result["server_env"] = extra_env
    rag = start_ragkiln(workspace, args.generator, port_r, extra_env)
    try:
        wait_ready(port_b, base)
        wait_ready(port_r, rag)
        result["ready"] = _get_json(f"http://127.0.0.1:{port_r}/readyz")
        asyncio.run(load("127.0.0.1", port_r, "/v1/search", search_bodies, 4, 100, 30, search_ok))  # warm-up
        asyncio.run(load("127.0.0.1", port_b, "/v1/search", search_bodies, 4, 100, 30))
        result["baseline"] = [asyncio.run(load("127.0.0.1", port_b, "/v1/search", search_bodies, c, args.requests,
                                               args.seconds)) for c in levels]
        result["search"] = [asyncio.run(load("127.0.0.1", port_r, "/v1/search", search_bodies, c, args.requests,
                                             args.seconds, search_ok)) for c in levels]
        for b, s in zip(result["baseline"], result["search"]):
            s["rps_vs_baseline"] = round(s["rps"] / b["rps"], 3) if b["rps"] else None
        if result["ready"].get("generator"):
            result["answer"] = [asyncio.run(load("127.0.0.1", port_r, "/v1/answer", answer_bodies, c,
                                                 args.answer_requests, args.seconds, answer_ok, b"event: token"))
                                for c in levels]
        else:
            result["answer"] = None
            result["answer_skipped"] = "; ".join(result["ready"].get("problems", [])) or "no generator loaded"
        metrics = _get_text(f"http://127.0.0.1:{port_r}/metrics")
        result["embedding_batches"] = _batch_summary(metrics)
    finally:
        for p in (base, rag):
            p.terminate()
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()
    result["query_precision"] = {"served": (result["ready"].get("index") or {}).get("query_precision")}
    if args.agreement_queries:
        result["query_precision"].update(precision_agreement(workspace, queries, args.agreement_queries))
    s8 = next((s for s in result["search"] if s["clients"] == 8), None)
    if s8:
        result["targets"] = {"search_8_clients_rps>=150": s8["rps"] >= 150,
                             "search_8_clients_p99<=100ms": (s8["p99_ms"] or 1e9) <= 100,
                             "search_8_clients_zero_errors": s8["errors"] == 0}
    if result.get("answer"):
        a1 = result["answer"][0]
        ft = a1.get("server_first_token_after_retrieval_p50_ms")
        result.setdefault("targets", {})["answer_first_token_after_retrieval<=300ms (1 client, p50)"] = (
            ft is not None and ft <= 300)
    result["load_average_at_end"] = os.getloadavg()  # other work on the machine skews every figure
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: result[k] for k in ("corpus", "search", "baseline", "answer", "targets") if k in result},
                     indent=1))


def _get_json(url: str) -> dict[str, Any]:
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return json.loads(r.read())
    except urllib.error.HTTPError as e:
        return json.loads(e.read())


def _get_text(url: str) -> str:
    import urllib.request

    with urllib.request.urlopen(url, timeout=10) as r:
        return r.read().decode()


def _batch_summary(metrics: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for line in metrics.splitlines():
        if line.startswith("ragkiln_embedding_batch_size_sum"):
            out["queries"] = float(line.split()[-1])
        elif line.startswith("ragkiln_embedding_batch_size_count"):
            out["batches"] = float(line.split()[-1])
    if out.get("batches"):
        out["mean_batch"] = round(out["queries"] / out["batches"], 2)
    return out


if __name__ == "__main__":
    main()
