"""The build's label-free LM check on a real ingested workspace: a plain and a retrieval-trained tiny LM
scored on the same held-out tokens (trainer.lm.service.retrieval_payoff)."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest

from common.errors import InvalidInput
from trainer.lm.gate import lm_served
from trainer.lm.service import eval_lm, retrieval_payoff, train_lm

sys.path.insert(0, str(Path(__file__).parent))
from lm_support import ingested  # noqa: E402

LM = {"preset": "tiny", "vocab_size": 400, "target_len": 32, "neighbour_len": 24, "batch_size": 4, "steps": 3,
      "eval_every": 3, "ckpt_every": 3, "heldout_fraction": 0.3}


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    return ingested(tmp_path_factory.mktemp("lm_gate"), LM)


def test_plain_and_retrieval_models_are_scored_on_the_same_tokens(settings, tmp_path: Path) -> None:
    rag, plain = tmp_path / "rag", tmp_path / "plain"
    train_lm(settings, retrieval=True, out=rag)
    train_lm(settings, retrieval=False, out=plain, tokenizer=rag / "tokenizer.model")
    pay = retrieval_payoff(settings, rag, plain)
    # the retrieval model with context, and the plain one without, on the retrieval model's held-out rows
    assert pay["tokens"] == eval_lm(settings, rag)["tokens"] > 0
    assert math.isclose(pay["retrieval_ppl_with_context"], eval_lm(settings, rag)["ppl_with_context"], rel_tol=1e-6)
    assert math.isclose(pay["ratio"], pay["retrieval_ppl_with_context"] / pay["plain_ppl"])
    served, why = lm_served(pay)
    assert served == ("retrieval" if pay["ratio"] < 1 else "plain") and f"{pay['ratio']:.2f}" in why
    # the plain model read no neighbours, so it has no with-context perplexity of its own
    assert eval_lm(settings, plain)["ppl_with_context"] is None


def test_models_with_their_own_tokenizers_are_not_compared(settings, tmp_path: Path) -> None:
    rag, plain = tmp_path / "rag", tmp_path / "plain"
    train_lm(settings, retrieval=True, out=rag)
    other = settings.model_copy(update={"lm": settings.lm.model_copy(update={"vocab_size": 350})})
    train_lm(other, retrieval=False, out=plain)  # a tokenizer of its own: perplexities count other tokens
    with pytest.raises(InvalidInput, match="different tokenizers"):
        retrieval_payoff(settings, rag, plain)
