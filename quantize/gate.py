"""Which models may answer in their own words: the generation quality gate (pure).

One rule, used by the server (a gated model answers extractively and says so; it is never run free)
and by the build report (its "too weak to generate" warning):

- A ragkiln-trained model may generate when its held-out perplexity, as verified at build, is at most
  a tenth of its vocabulary size (`PPL_VOCAB_SHARE`; why a tenth: pipeline/report_summary.py). The
  perplexity is the one `quantize verify` measured through llama.cpp on the served file's type
  (recorded in the export directory's verify.json, or in the build's verify stage), else the training
  run's held-out perplexity (its manifest's `metrics.heldout_ppl`). A model with no record is not
  verified, so it does not generate.
- And, when QA tuning recorded it (`metrics.heldout_answers`, trainer/lm/answer_check.py), only if its
  own answers to held-out questions score a token F1 at least the extractive reader's on the same
  passages: a model whose free text answers worse than the reader would only make answers worse (the
  demo's tiny model passes the perplexity bound and answers with one unrelated word).
- A chat model a user registered (a GGUF without ragkiln's manifest) is a released chat model: it is
  trusted to generate.
- Settings may override either way per model (`server.generative`).
"""

from __future__ import annotations

from typing import Any

from trainer.lm.answer_check import may_generate

PPL_VOCAB_SHARE = 0.1


def generation_gate(heldout_ppl: float | None, vocab_size: int | None) -> tuple[bool, str]:
    """(may generate, why): held-out perplexity at most PPL_VOCAB_SHARE * |V|."""
    if heldout_ppl is None or not vocab_size:
        return False, "no held-out perplexity was recorded for it (run `ragkiln quantize verify` or `ragkiln build`)"
    limit = PPL_VOCAB_SHARE * vocab_size
    if heldout_ppl > limit:
        return False, (f"its held-out perplexity {heldout_ppl:.4g} is above {limit:.4g} (a tenth of its "
                       f"{vocab_size:,}-token vocabulary): its free text would be word salad")
    return True, f"held-out perplexity {heldout_ppl:.4g} <= {limit:.4g} (a tenth of its {vocab_size:,}-token vocabulary)"


def recorded_ppl(manifest: dict[str, Any], verify: dict[str, Any] | None, qtype: str | None) -> tuple[float | None, str]:
    """(held-out perplexity, where it was recorded) of a ragkiln GGUF file: `verify` (a `quantize verify`
    result for this export) measured on the file's type, else its torch reference, else the training
    run's held-out perplexity from the model manifest."""
    types = (verify or {}).get("types") or {}
    v = (types.get(qtype) or {}).get("ppl") if qtype else None
    if isinstance(v, (int, float)):
        return float(v), f"quantize verify ({qtype})"
    v = ((verify or {}).get("torch") or {}).get("ppl")
    if isinstance(v, (int, float)):
        return float(v), "quantize verify (torch)"
    v = (manifest.get("metrics") or {}).get("heldout_ppl")
    if isinstance(v, (int, float)):
        return float(v), "training (held-out rows)"
    return None, "none"


def gate_model(manifest: dict[str, Any] | None, verify: dict[str, Any] | None, qtype: str | None,
               override: bool | None = None) -> tuple[bool, str]:
    """The gate for one served file: `manifest` is its ragkiln LM manifest (None: a foreign chat model)."""
    if override is not None:
        return override, f"server.generative sets it to {'generate' if override else 'answer extractively'}"
    if manifest is None:
        return True, "a chat model registered by the user (trusted to generate)"
    ppl, where = recorded_ppl(manifest, verify, qtype)
    ok, why = generation_gate(ppl, (manifest.get("model_args") or {}).get("vocab_size"))
    why = why if ppl is None else f"{why} [{where}]"
    if not ok:
        return ok, why
    return answers_gate((manifest.get("metrics") or {}).get("heldout_answers"), why)


def answers_gate(check: dict[str, Any] | None, why: str) -> tuple[bool, str]:
    """(may generate, why) after the perplexity bound passed (`why`): its held-out answers against the reader's."""
    if not check:
        return True, f"{why}; its answers were not compared with the extractive reader's"
    f1, reader, n = check.get("model_f1", 0.0), check.get("reader_f1", 0.0), check.get("questions", 0)
    if not may_generate(f1, reader):
        return False, (f"its own answers to {n} held-out questions score token F1 {f1:.3f}, below the extractive "
                       f"reader's {reader:.3f} on the same passages")
    return True, f"{why}; its held-out answers score token F1 {f1:.3f} >= the extractive reader's {reader:.3f} ({n} questions)"
