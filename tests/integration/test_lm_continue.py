"""An interrupted LM training continues from its last checkpoint when it is run again under the same token
(the build's stage inputs), and starts over under any other (trainer.lm.service.train_lm)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from trainer.lm import run as lm_run
from trainer.lm import service
from trainer.lm.checkpoint import read_manifest

sys.path.insert(0, str(Path(__file__).parent))
from lm_support import ingested  # noqa: E402

LM = {"preset": "tiny", "vocab_size": 400, "target_len": 32, "neighbour_len": 24, "batch_size": 4, "steps": 4,
      "eval_every": 2, "ckpt_every": 2, "heldout_fraction": 0.3}


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    return ingested(tmp_path_factory.mktemp("lm_continue"), LM)


def _interrupted(settings, out: Path, token: str, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    """Train under `token` until the checkpoint of step 2, then stop as a killed build would."""

    def stopped(run_dir: Path, resume: bool = False) -> dict:
        lm_run.run_training(run_dir, resume=resume, stop_after=2)
        raise KeyboardInterrupt

    with monkeypatch.context() as m:
        m.setattr(service, "run_training", stopped)
        with pytest.raises(KeyboardInterrupt):
            service.train_lm(settings, retrieval=True, out=out, token=token)
    assert not (out / "manifest.json").exists()


def test_the_same_token_continues_from_the_last_checkpoint(settings, tmp_path: Path, monkeypatch) -> None:
    out = tmp_path / "rag"
    _interrupted(settings, out, "inputs-1", monkeypatch)
    summary = service.train_lm(settings, retrieval=True, out=out, token="inputs-1")
    assert summary["resumed_from_step"] == 2 and summary["steps"] == 4
    assert read_manifest(out)["step"] == 4


def test_another_token_starts_over(settings, tmp_path: Path, monkeypatch) -> None:
    out = tmp_path / "rag"
    _interrupted(settings, out, "inputs-1", monkeypatch)
    summary = service.train_lm(settings, retrieval=True, out=out, token="inputs-2")  # the corpus or config changed
    assert "resumed_from_step" not in summary and read_manifest(out)["step"] == 4
    # and a run without a token (the CLI) never continues another's run unasked
    summary = service.train_lm(settings, retrieval=True, out=tmp_path / "again")
    assert "resumed_from_step" not in summary
