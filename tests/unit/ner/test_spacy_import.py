"""spaCy imported without thinc's torch support for one-shot commands: each case runs in a fresh interpreter,
since which import came first is process state."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def _run(code: str) -> str:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def test_spacy_comes_without_torch_and_torch_stays_importable():
    out = _run(
        "import sys\n"
        "from ner.pipeline import import_spacy_without_torch\n"
        "spacy = import_spacy_without_torch()\n"
        "import thinc.compat\n"
        "print('torch' in sys.modules, thinc.compat.has_torch, len(spacy.blank('en')('two words')))\n"
        "import torch\n"
        "print(int(torch.ones(3).sum()))\n")
    assert out.splitlines() == ["False False 2", "3"]


def test_a_process_that_has_torch_already_imports_spacy_as_usual():
    out = _run(
        "import torch\n"
        "from ner.pipeline import import_spacy_without_torch\n"
        "import_spacy_without_torch()\n"
        "import thinc.compat\n"
        "print(thinc.compat.has_torch)\n")
    assert out == "True"


def test_answering_a_question_imports_no_torch_of_its_own():
    """`ragkiln ask`'s modules: torch would cost the command's cold start more than a second."""
    out = _run(
        "import sys\n"
        "import cli.main, reader.answer, reader.serve, server.rag\n"
        "print('torch' in sys.modules)\n")
    assert out == "False"
