"""Does the QA-tuned model answer better in its own words than the extractive reader does?

The server answers ragkiln's own models with the extractive reader unless the model may generate
(quantize/gate.py). Held-out perplexity only says the model's text is not word salad: the demo's
tiny model passed it and still answered with one unrelated word. So QA tuning ends by asking both
the same held-out questions (documents and questions the tuning never saw), on the same passages:
the model greedily, with the served prompt and stops, and the reader, as `/v1/answer` reads. The
model may answer in its own words only where its token F1 is at least the reader's: free text that
answers worse than the fallback is no service.

The questions are the tuning's own kind (synthetic cloze questions unless the user gave a QA file),
so the comparison leans towards the model: it was trained on that kind, the reader was not.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from common.errors import ContextOverflow
from trainer.lm.qa import ANSWER_STOPS, QaExample, plan_prompt
from trainer.lm.qa_focus import focus_contexts
from trainer.lm.qa_metrics import exact_match, token_f1

HELDOUT_FILE = "heldout_qa.jsonl"  # in the QA run directory: the held-out questions, their passages and answers

Answerer = Callable[[QaExample], "str | None"]


def may_generate(model_f1: float, reader_f1: float) -> bool:
    """The rule (quantize/gate.py applies it to the recorded scores): free text that answers at least as well."""
    return model_f1 >= reader_f1


def call_words(model_wins: bool) -> str:
    """The call as the log, `train lm` and the build report state it."""
    return "it may answer in its own words" if model_wins else "the reader answers for it"


@dataclass(frozen=True)
class AnswerCheck:
    questions: int
    model_f1: float
    model_em: float
    reader_f1: float
    reader_em: float

    @property
    def model_wins(self) -> bool:
        return may_generate(self.model_f1, self.reader_f1)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "model_wins": self.model_wins}


def compare_answers(examples: Sequence[QaExample], model: Answerer, reader: Answerer) -> AnswerCheck:
    """Mean SQuAD token F1 and exact match of both answerers against each example's answer (None scores 0)."""
    if not examples:
        raise ValueError("no held-out questions to compare answers on")
    sums = [0.0, 0.0, 0.0, 0.0]
    for ex in examples:
        for i, ans in enumerate((model(ex), reader(ex))):
            ans = ans or ""
            sums[2 * i] += token_f1(ans, [ex.answer])
            sums[2 * i + 1] += exact_match(ans, [ex.answer])
    n = len(examples)
    return AnswerCheck(n, *(round(s / n, 4) for s in sums))


def pick_questions(examples: Sequence[QaExample], n: int, seed: int,
                   retrieve: Callable[[str], list[str]] | None = None) -> list[QaExample]:
    """At most n examples, sampled with `seed` (cloze questions come in runs from one chunk), each with
    its passages: its own, else `retrieve`'s (as its training row read them); those with none are dropped."""
    pool = list(examples)
    picked = pool if len(pool) <= n else random.Random(seed).sample(pool, n)
    out = []
    for e in picked:
        ctx = e.context or (tuple(retrieve(e.question)) if retrieve else ())
        if ctx:
            out.append(replace(e, context=ctx))
    return out


def write_heldout(path: Path, examples: Iterable[QaExample]) -> int:
    n = 0
    with open(path, "w", encoding="utf-8") as f:
        for e in examples:
            f.write(json.dumps({"question": e.question, "answer": e.answer, "context": list(e.context),
                                "doc_id": e.doc_id}) + "\n")
            n += 1
    return n


def read_heldout(path: Path) -> list[QaExample]:
    if not path.exists():
        return []
    rows = (json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip())
    return [QaExample(r["question"], r["answer"], tuple(r["context"]), r.get("doc_id", "")) for r in rows]


def model_answerer(model: Any, tokenizer: Any, passage_len: int, context_sentences: int, repeat_penalty: float,
                   max_tokens: int = 32) -> Answerer:
    """The model's greedy answer from the served prompt: focused passages, the QA markers as stops."""
    from common.sampling import SamplingParams
    from trainer.lm.sampling import generate

    params = SamplingParams(max_tokens=max_tokens, temperature=0.0, stop=ANSWER_STOPS, repeat_penalty=repeat_penalty,
                            stop_tokens=(tokenizer.ctx_open, tokenizer.ctx_close, tokenizer.q_id, tokenizer.a_id))

    def answer(ex: QaExample) -> str:
        texts = focus_contexts(list(ex.context), ex.question, context_sentences)
        try:  # as the server plans it: passages dropped, then shortened, to leave room for the answer
            plan = plan_prompt(tokenizer, texts, ex.question, model.args.max_seq_len, max_tokens, passage_len)
        except ContextOverflow:
            return ""
        return generate(model, tokenizer, plan.ids, replace(params, max_tokens=plan.max_new)).text.strip()

    return answer
