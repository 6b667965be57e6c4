"""Shared fixtures of the server tests: a small real workspace, a tiny GGUF generator, a live server.

Imported by tests/integration/test_server_*.py (`from server_support import *`): the workspace is
built once per session by ingesting server_corpus/ with the real all-MiniLM-L6-v2 and the spaCy
NER pipeline, then copied per module that changes it.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from common.settings import Settings, load_settings

CORPUS = Path(__file__).parent / "server_corpus"
ROOT = Path(__file__).resolve().parents[2]
ADMIN_KEY = "admin-key-123456"
READ_KEY = "read-key-1234567"
KEYS = f"{ADMIN_KEY}:admin,{READ_KEY}:read"
ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}
READ = {"Authorization": f"Bearer {READ_KEY}"}


# the fixture workspace's chunking: a server with other chunk settings would re-chunk every document on its first write
CHUNKING = {"chunk_tokens": 64, "chunk_overlap": 8}


def settings_for(home: Path, **server: object) -> Settings:
    return load_settings({"home": home, "indexer": CHUNKING, "server": {"api_keys": KEYS, **server}})


@pytest.fixture(scope="session")
def base_workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A workspace with the fixture corpus ingested (real embedder, real NER) and a tiny GGUF model."""
    from indexer.service import ingest
    from ner.enrich import open_enricher

    home = tmp_path_factory.mktemp("server-ws") / "ws"
    settings = load_settings({"home": home, "indexer": CHUNKING})
    with open_enricher(settings.ner.model_copy(update={"n_process": 1})) as enricher:
        ingest(settings, [CORPUS], enricher=enricher, progress=False)
    _tiny_gguf(home, tmp_path_factory.mktemp("lm"))
    return home


def _tiny_gguf(home: Path, tmp: Path) -> None:
    """A tiny random Llama exported as Q8_0 into the workspace: real llama.cpp, meaningless text."""
    pytest.importorskip("llama_cpp")
    import torch

    from quantize.service import quantize_model
    from trainer.lm.checkpoint import save_checkpoint
    from trainer.lm.model import ModelArgs, Transformer
    from trainer.lm.tokenizer import train_tokenizer

    texts = [p.read_text() for p in sorted(CORPUS.iterdir())]
    tok = train_tokenizer(texts * 20, vocab_size=400)
    torch.manual_seed(0)
    args = ModelArgs(dim=64, n_layers=1, n_heads=2, n_kv_heads=1, vocab_size=tok.vocab_size, hidden_dim=96,
                     max_seq_len=256)
    ckpt = tmp / "tiny-lm"
    save_checkpoint(ckpt, Transformer(args), tok)
    quantize_model(load_settings({"home": home}), ckpt, types="q8_0")


def copy_workspace(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LiveServer:
    """`ragkiln serve` in a subprocess on a free loopback port."""

    def __init__(self, home: Path, env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = home.parent / f"server-{self.port}.log"
        full_env = {**os.environ, "HF_HUB_OFFLINE": "1", "RAGKILN_SERVER__API_KEYS": KEYS, **(env or {})}
        self._out = open(self.log, "w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "cli", "--workspace", str(home), "--log-level", "WARNING", "serve",
             "--host", "127.0.0.1", "--port", str(self.port)],
            cwd=ROOT, env=full_env, stdout=self._out, stderr=subprocess.STDOUT)
        deadline = time.time() + 120
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {self.log.read_text()[-2000:]}")
            try:
                if httpx.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.3)
        self.stop()
        raise RuntimeError("server did not start within 120 s")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self._out.close()


def parse_sse(text: str) -> list[tuple[str, dict]]:
    """(event name, JSON data) of each event of a named-event stream (/v1/answer's)."""
    out = []
    for block in text.strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines())
        out.append((lines["event"], json.loads(lines["data"])))
    return out


def served_copy(base: Path, tmp_path_factory: pytest.TempPathFactory, name: str) -> Iterator[LiveServer]:
    """A live server on a fresh copy of `base` (for module fixtures: `yield from served_copy(...)`);
    the copy's path is `server.home`."""
    home = copy_workspace(base, tmp_path_factory.mktemp(name) / "ws")
    server = LiveServer(home)
    server.home = home
    try:
        yield server
    finally:
        server.stop()
