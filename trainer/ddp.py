"""Launching a training module under torchrun on one machine (gloo ranks on CPU), shared by the
embedder and LM trainers so both pick a free port and run from the project root the same way."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def torchrun(module: str, run_dir: Path, nproc: int, resume: bool = False, stdout: Any = None) -> subprocess.CompletedProcess:
    """`python -m torch.distributed.run ... -m MODULE RUN_DIR [--resume]`; `stdout` as for subprocess.run."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc_per_node", str(nproc),
           "--master_addr", "127.0.0.1", "--master_port", str(port), "-m", module, str(run_dir)]
    if resume:
        cmd.append("--resume")
    return subprocess.run(cmd, cwd=ROOT, stdout=stdout, text=True)
