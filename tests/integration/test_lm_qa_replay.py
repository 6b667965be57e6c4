"""QA tuning with document replay on a real ingested workspace (lm.qa_replay): the training rows hold the
base model's kind of rows, from documents neither model holds out; the held-out rows stay QA only."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from indexer.workspace import Workspace
from reader.serve import qa_reader
from trainer.lm.checkpoint import load_model
from trainer.lm.data import LmDataset
from trainer.lm.service import train_lm
from trainer.lm.tokenizer import Tokenizer

sys.path.insert(0, str(Path(__file__).parent))
from lm_support import ingested  # noqa: E402

LM = {"preset": "tiny", "vocab_size": 400, "target_len": 32, "neighbour_len": 24, "batch_size": 4, "steps": 3,
      "eval_every": 3, "ckpt_every": 3, "heldout_fraction": 0.3, "synthetic_per_chunk": 0,
      "retrieval_mode": "hybrid"}  # dense hits for every chunk: the six topics share no words for BM25


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    return ingested(tmp_path_factory.mktemp("lm_qa_replay"), LM)


def _qa_file(path: Path) -> Path:
    rows = [{"question": "Where was the first piano built?", "answer": "Italy",
             "context": ["Bartolomeo Cristofori built the first piano in Italy around 1700."]},
            {"question": "Where does the Nile flow?", "answer": "the Mediterranean Sea",
             "context": ["The Nile flows north into the Mediterranean Sea."]}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.mark.parametrize("replay", [0.0, 4.0])
def test_qa_tuning_replays_documents_the_base_trained_on(settings, tmp_path: Path, replay: float) -> None:
    rag = tmp_path / "rag"
    train_lm(settings, retrieval=True, out=rag)
    s = settings.model_copy(update={"lm": settings.lm.model_copy(update={"qa_replay": replay, "steps": 2})})
    train_lm(s, qa=_qa_file(tmp_path / "qa.jsonl"), init=rag, out=tmp_path / "qa",
             reader=qa_reader(s.server.reader_pipeline))
    manifest = json.loads((tmp_path / "qa" / "manifest.json").read_text())
    qa = manifest["training"]["qa"]
    run = Workspace.open(s).home / "runs" / "lm-tiny-qa"
    train, held = LmDataset(run / "data" / "train"), LmDataset(run / "data" / "heldout")
    assert len(held) == qa["heldout"] == 1 and held.meta.get("qa")  # QA rows only
    # the held-out question was asked of the tuned model and of the reader; the gate reads the scores
    asked = [json.loads(line) for line in (run / "heldout_qa.jsonl").read_text().splitlines()]
    assert len(asked) == 1 and asked[0]["context"] and asked[0]["answer"] in ("Italy", "the Mediterranean Sea")
    check = manifest["metrics"]["heldout_answers"]
    assert check["questions"] == 1 and 0 <= check["model_f1"] <= 1
    assert check["reader_f1"] == 1.0  # the reader reads the passage the question was asked about
    assert load_model(tmp_path / "qa")[2]["metrics"]["heldout_answers"] == check  # the checkpoint still verifies
    assert qa["replay"] == replay and len(train) == qa["rows"]
    if not replay:
        assert qa["replay_rows"] == 0 and len(train) == 1
        return
    assert qa["replay_rows"] > 0 and len(train) == 1 + qa["replay_rows"]
    tok = Tokenizer.load(rag / "tokenizer.model")
    held_docs = set(json.loads((rag / "manifest.json").read_text())["training"]["heldout_doc_ids"])
    store = Workspace.open(s).store
    held_starts = [c.text[:20] for c in store.iter_chunks() if c.doc_id in held_docs]
    assert held_starts
    for i in range(1, len(train)):
        t_len, p_len = (int(v) for v in train.lens[i])
        target = tok.decode(train.targets[i, :t_len].tolist())
        prefix = tok.decode([t for t in train.prefix[i, :p_len].tolist() if t > 4])  # not the markers
        assert p_len > 0 and target.strip()  # read with its neighbours, as the base model was trained
        assert not any(h in target or h in prefix for h in held_starts)  # no held-out document, either side
        assert int(np.asarray(train.loss_mask[i]).sum()) == t_len  # the whole document window is scored


def test_without_the_answer_check_the_perplexity_alone_gates(settings, tmp_path: Path) -> None:
    rag = tmp_path / "rag"
    train_lm(settings, retrieval=True, out=rag)
    s = settings.model_copy(update={"lm": settings.lm.model_copy(update={"answer_check": 0, "steps": 2})})
    summary = train_lm(s, qa=_qa_file(tmp_path / "qa.jsonl"), init=rag, out=tmp_path / "qa",
                       reader=qa_reader(s.server.reader_pipeline))
    run = Workspace.open(s).home / "runs" / "lm-tiny-qa"
    assert not (run / "heldout_qa.jsonl").exists() and "heldout_answers" not in summary
    assert "heldout_answers" not in load_model(tmp_path / "qa")[2]["metrics"]
