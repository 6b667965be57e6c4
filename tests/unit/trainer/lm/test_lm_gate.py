"""trainer.lm.gate: which LM the build tunes for answers, from held-out perplexities alone."""

from __future__ import annotations

from trainer.lm.gate import lm_served


def payoff(rag: float, plain: float) -> dict:
    return {"documents": 12, "tokens": 900, "retrieval_ppl_with_context": rag, "plain_ppl": plain,
            "ratio": rag / plain}


def test_the_retrieval_model_is_kept_when_its_neighbours_lower_perplexity() -> None:
    served, why = lm_served(payoff(122.1, 139.4))
    assert served == "retrieval" and "122.1" in why and "139.4" in why and "0.88" in why


def test_the_plain_model_is_served_when_neighbours_do_not_pay() -> None:
    served, why = lm_served(payoff(526.0, 432.0))  # the tiny preset before issue 28's fix
    assert served == "plain" and "1.22" in why and "did not pay" in why
    assert lm_served(payoff(400.0, 400.0))[0] == "plain"  # a tie does not pay for the retrieval model's cost


def test_without_context_rows_the_retrieval_model_stays() -> None:
    served, why = lm_served({"documents": 3, "ratio": None})
    assert served == "retrieval" and "could not be compared" in why
