"""Is the retrieval-trained LM worth serving? The build's label-free check (issue 28 item 3).

Held-out perplexity needs no labels: the retrieval-trained model reading its retrieved neighbours is compared
with a plain model trained on the same documents, tokenizer, steps and batch, on the same held-out target
tokens. Retrieval training costs the plain model's capacity for text on its own; where neighbours do not
help (a corpus whose documents share little, a model too small or too briefly trained to read them) the
plain model predicts the held-out text better, and it is served instead.
"""

from __future__ import annotations

from typing import Any


def lm_served(payoff: dict[str, Any]) -> tuple[str, str]:
    """("retrieval" or "plain", why) from `retrieval_payoff`'s figures: the lower held-out perplexity wins."""
    ratio = payoff.get("ratio")
    if ratio is None:
        return "retrieval", "no held-out row has retrieved context, so the plain model could not be compared"
    rag, plain = payoff["retrieval_ppl_with_context"], payoff["plain_ppl"]
    figures = (f"held-out perplexity {rag:.1f} with retrieved context against {plain:.1f} for a plain model "
               f"(ratio {ratio:.2f}, {payoff.get('documents')} documents)")
    if ratio < 1.0:
        return "retrieval", figures
    return "plain", figures + ": the neighbours did not pay for the capacity they cost"
