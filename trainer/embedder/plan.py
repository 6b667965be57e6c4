"""How many pairs and steps an embedder run gets: sized to the corpus and to a time budget (pure, but for
`measure_slowdown`, which times this machine).

One recipe for every corpus (the config's loss, sources and learning rate); what changes with the corpus
is how much of it is trained on. A run costs a fixed part (loading, mining the teacher's candidates with
one index search per pair, three dev evaluations) plus its steps, and a step's cost grows with the texts
it encodes: batch_size x (anchor + positive + candidates) texts of up to max_seq_length tokens.

Calibration (2 cores, fp32, dropout 0, batch 32 x 6 texts x 160 tokens): 12.45 s a step on the bench
machine (bench/results/embedder-step.json, 'none'); bf16 on a CPU with native bf16 halves it (6.27 s).
Machines differ by 3x and more (a 2-core AVX2 EPYC under load trains several times slower than that), and
so does what bf16 buys (on a Zen 4 EPYC a bf16 step is barely faster than fp32), so a run measures this
machine first (`measure_slowdown`: one forward and backward pass of the torch model over a few training
texts, in the training precision, against the calibration's time per text) and scales every estimate by
the ratio. Timing a forward pass alone, through the index's embedder, once measured an int8 export.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

# seconds per encoded text of 160 tokens, forward + backward, 2 cores, fp32 (12.45 s / (32 x 6))
SECONDS_PER_TEXT = 12.45 / (32 * 6)
BF16_FACTOR = 6.27 / 12.45  # measured on a CPU with AVX512-BF16 (embedder-step.json)
DROPOUT_FACTOR = 2.25  # the base model's dropout stops torch's fused attention (embedder-step.json)
SEARCH_SECONDS = 0.03  # one hybrid search while mining candidates, per pair
FIXED_SECONDS = 30.0  # loading the models, the split, saving
EVAL_SECONDS_PER_TEXT = 0.004  # dev evaluation: encoding only, per text
MIN_STEPS = 5  # a budget that buys fewer steps barely moves the model; the plan says so


@dataclass(frozen=True)
class TrainPlan:
    """What a run will do and about how long it takes (on 2 cores unless the calibration says else)."""

    available_pairs: int  # training pairs the corpus gives after the dev split
    pairs: int
    steps: int
    batch_size: int
    epochs: int
    texts_per_pair: int
    seconds_per_step: float
    estimated_seconds: float
    budget_seconds: float | None
    limited_by: str  # "corpus", "budget" or "max_pairs"
    slowdown: float = 1.0  # this machine's measured time over the calibration machine's

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def describe(self) -> str:
        mins = self.estimated_seconds / 60
        budget = f" of a {self.budget_seconds / 60:.0f}-minute budget" if self.budget_seconds else ""
        where = "on 2 cores" if self.slowdown == 1.0 else f"on this machine ({self.slowdown:.1f}x the calibration's time)"
        return (f"plan: {self.pairs} pairs of {self.available_pairs} the corpus gives ({self.limited_by} limits it), "
                f"{self.steps} steps of {self.batch_size} x {self.epochs} epoch(s), about "
                f"{self.seconds_per_step:.1f} s a step: {mins:.1f} minutes{budget} {where}"
                + ("; too few steps to adapt much: raise --budget-minutes" if self.limited_by == "budget"
                   and self.steps < MIN_STEPS else ""))


def step_seconds(batch_size: int, texts_per_pair: int, max_seq_length: int, bf16: bool = False,
                 dropout: bool = False) -> float:
    """Estimated seconds of one optimizer step (attention is a small share at these lengths: linear)."""
    s = SECONDS_PER_TEXT * batch_size * texts_per_pair * max_seq_length / 160
    return s * (BF16_FACTOR if bf16 else 1.0) * (DROPOUT_FACTOR if dropout else 1.0)


def fixed_seconds(dev_texts: int, searched_pairs: int, slowdown: float = 1.0) -> float:
    """Loading and saving, one search per mined pair, three dev evaluations and the gate's two probes."""
    return slowdown * (FIXED_SECONDS + SEARCH_SECONDS * searched_pairs + 5 * EVAL_SECONDS_PER_TEXT * dev_texts)


def measure_slowdown(step, texts: list[str], max_seq_length: int, bf16: bool = False) -> float:  # type: ignore[no-untyped-def]
    """This machine's time over the calibration machine's, from one timed `step(texts)` (a forward and
    backward pass that returns the padded length it ran at), after a warm-up on four texts. The
    calibration's time per text of max_seq_length tokens is SECONDS_PER_TEXT (x BF16_FACTOR in bf16)."""
    import time

    if len(texts) < 2:
        return 1.0
    step(texts[:4])
    t0 = time.perf_counter()
    length = step(texts)
    per_text = (time.perf_counter() - t0) / len(texts) * max_seq_length / max(1, length)
    reference = SECONDS_PER_TEXT * (BF16_FACTOR if bf16 else 1.0) * max_seq_length / 160
    return round(max(0.25, per_text / reference), 2)


def plan_training(available_pairs: int, batch_size: int, texts_per_pair: int, max_seq_length: int,
                  budget_minutes: float | None, max_pairs: int | None = None, epochs: int = 1,
                  dev_texts: int = 1000, bf16: bool = False, dropout: bool = False, slowdown: float = 1.0) -> TrainPlan:
    """The most pairs (whole batches) that the corpus, max_pairs and the budget allow.

    The budget pays the fixed part first; what is left buys steps. A budget too small for even one step
    still plans one batch, and the plan's description says it is too few (MIN_STEPS)."""
    per_step = slowdown * step_seconds(batch_size, texts_per_pair, max_seq_length, bf16, dropout)
    cap, limited_by = available_pairs, "corpus"
    if max_pairs is not None and max_pairs < cap:
        cap, limited_by = max_pairs, "max_pairs"
    budget_s = budget_minutes * 60 if budget_minutes else None
    if budget_s is not None:
        # each pair costs its search while mining and its share of the steps
        per_pair = slowdown * SEARCH_SECONDS + epochs * per_step / batch_size
        affordable = int(max(0.0, budget_s - fixed_seconds(dev_texts, 0, slowdown)) / per_pair)
        affordable = max(batch_size, affordable // batch_size * batch_size)
        if affordable < cap:
            cap, limited_by = affordable, "budget"
    pairs = max(0, cap)
    steps = epochs * -(-pairs // batch_size)
    est = fixed_seconds(dev_texts, pairs, slowdown) + steps * per_step
    return TrainPlan(available_pairs=available_pairs, pairs=pairs, steps=steps, batch_size=batch_size, epochs=epochs,
                     texts_per_pair=texts_per_pair, seconds_per_step=round(per_step, 2),
                     estimated_seconds=round(est, 1), budget_seconds=budget_s, limited_by=limited_by,
                     slowdown=slowdown)
