"""Answering from context: the fixed QA prompt (and its plan for a context window, which the server and
QA tuning's answer check share), QA JSONL loading and the QA training rows.

Prompt (also `tokenizer.PROMPT_FORMAT`, recorded in the manifest):
    <s><ctx> passage </ctx>...<q> question <a> answer</s>
QA examples are stored in the same memmap layout as LM data (trainer/lm/data.py): the prefix holds
context + question + `<a>`, the target holds answer + `</s>`, so the loss is on the answer only
(several pairs per row after one shared context when packed; see `build_qa_dataset`).

Beside this module, one concept each:
    qa_focus      the sentences of a passage that a question keeps (`focus_passage`)
    qa_bounds     where an answer copied from the passages may start and stop (extractive decoding)
    qa_synthetic  synthetic questions made from the corpus (cloze, counterfactual, lookup)
    qa_metrics    SQuAD exact match and token F1
    answer_check  after QA tuning: the model's own answers against the extractive reader's
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from common.errors import ContextOverflow, InvalidInput
from common.jsonl import iter_jsonl
from trainer.lm.data import _write
from trainer.lm.qa_focus import focus_contexts
from trainer.lm.tokenizer import BOS_ID, Tokenizer


# An answer never opens a new passage or question: the model doing so has finished answering.
ANSWER_STOPS = ("<ctx>", "<q>")
MIN_NEW_TOKENS = 8  # a prompt is planned to leave room for at least this many answer tokens


@dataclass(frozen=True)
class QaExample:
    question: str
    answer: str
    context: tuple[str, ...] = ()
    doc_id: str = ""


def qa_prompt_ids(tokenizer: Tokenizer, contexts: Sequence[str], question: str, passage_len: int) -> list[int]:
    """`<s><ctx> c </ctx>...<q> question <a>`: the ids the model continues with the answer."""
    ids = [BOS_ID]
    for c in contexts:
        ids += [tokenizer.ctx_open, *tokenizer.encode(c)[:passage_len], tokenizer.ctx_close]
    return ids + [tokenizer.q_id, *tokenizer.encode(question)[:64], tokenizer.a_id]


class PromptTokenizer(Protocol):
    ctx_open: int
    ctx_close: int
    q_id: int
    a_id: int

    def encode(self, text: str) -> list[int]: ...


@dataclass(frozen=True)
class PromptPlan:
    ids: list[int]
    passages: int  # how many of the given passages made it into the prompt
    passage_len: int  # tokens kept of each
    max_new: int  # new tokens that still fit the context


def plan_prompt(tok: PromptTokenizer, passages: Sequence[str], question: str, n_ctx: int, max_tokens: int,
                passage_len: int) -> PromptPlan:
    """The QA prompt that fits `n_ctx` with room for min(max_tokens, 8) new tokens, or ContextOverflow."""
    keep = list(passages)
    plen = max(1, passage_len)
    want_room = min(max_tokens, MIN_NEW_TOKENS)
    while True:
        ids = qa_prompt_ids(tok, keep, question, plen)  # type: ignore[arg-type]
        if len(ids) + want_room <= n_ctx:
            return PromptPlan(ids, len(keep), plen, min(max_tokens, n_ctx - len(ids)))
        if len(keep) > 1:
            keep.pop()
        elif keep and plen > 8:
            plen //= 2
        elif keep:
            keep = []
        else:
            raise ContextOverflow(
                f"the question alone needs {len(ids)} tokens; the model's context holds {n_ctx} "
                f"including {want_room} new ones"
            )


def load_qa_jsonl(path: Path) -> list[QaExample]:
    """Read `{"question", "answer"[, "context"]}` lines; any bad line is an InvalidInput naming it."""
    out: list[QaExample] = []
    for where, row in iter_jsonl(path, "QA file"):
        if not isinstance(row, dict) or not isinstance(row.get("question"), str) or not isinstance(row.get("answer"), str):
            raise InvalidInput(f"{where}: needs string fields 'question' and 'answer'")
        ctx = row.get("context")
        if ctx is not None and not isinstance(ctx, (str, list)):
            raise InvalidInput(f"{where}: 'context' must be a string or a list of strings")
        contexts = (ctx,) if isinstance(ctx, str) else tuple(str(c) for c in (ctx or ()))
        out.append(QaExample(row["question"].strip(), row["answer"].strip(), contexts))
    if not out:
        raise InvalidInput(f"{path} holds no QA examples")
    return out


def build_qa_dataset(
    examples: Sequence[QaExample],
    tokenizer: Tokenizer,
    out_dir: Path,
    passage_len: int,
    retrieve: Callable[[str], list[str]] | None = None,
    max_answer: int = 32,
    pack: int = 1,
    max_row: int | None = None,
    focus: int = 0,
) -> dict[str, int]:
    """Write QA examples in the LM memmap layout: prefix = context + question, target = answer + `</s>`.

    With `pack` > 1, consecutive examples with the same context share one row (up to `pack`
    questions and `max_row` tokens): `ctx <q> q1 <a> a1 </s> <q> q2 <a> a2 </s> ...`, with the loss on
    the answers only (loss_mask.npy). The first pair is exactly the inference prompt; the rest multiply
    the answer tokens a row teaches, which is what a copy skill learned from scratch is short of.
    `focus` > 0 keeps only that many sentences of each passage, chosen by the question
    (`focus_passage`), as inference then does; pairs share a row only when their kept sentences do.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    prefixes: list[list[int]] = []
    targets: list[list[int]] = []
    masks: list[list[int]] = []
    last_ctx: tuple[str, ...] | None = None
    for ex in examples:
        contexts = ex.context if ex.context else tuple(retrieve(ex.question) if retrieve else ())
        contexts = tuple(focus_contexts(contexts, ex.question, focus))
        answer = [*tokenizer.encode(ex.answer)[:max_answer], tokenizer.eos_id]  # "▁Answer": the dummy-prefix space
        if pack > 1 and ex.context and contexts == last_ctx:
            more = [tokenizer.q_id, *tokenizer.encode(ex.question)[:64], tokenizer.a_id]
            fits = max_row is None or len(prefixes[-1]) + len(targets[-1]) + len(more) + len(answer) <= max_row
            if fits and targets[-1].count(tokenizer.eos_id) < pack:
                targets[-1] += more + answer
                masks[-1] += [0] * len(more) + [1] * len(answer)
                continue
        prefixes.append(qa_prompt_ids(tokenizer, contexts, ex.question, passage_len)[1:])  # BOS is added per row
        targets.append(answer)
        masks.append([1] * len(answer))
        last_ctx = contexts
    if not targets:
        raise InvalidInput("no QA examples to train on")
    P, T = max(map(len, prefixes)), max(map(len, targets))
    pre = np.full((len(targets), P), -1, np.int32)
    tgt = np.full((len(targets), T), -1, np.int32)
    msk = np.zeros((len(targets), T), np.int32)
    lens = np.zeros((len(targets), 2), np.int32)
    for i, (p, t, m) in enumerate(zip(prefixes, targets, masks)):
        pre[i, : len(p)], tgt[i, : len(t)], msk[i, : len(m)], lens[i] = p, t, m, (len(t), len(p))
    _write(out_dir / "targets.npy", tgt)
    _write(out_dir / "prefix.npy", pre)
    _write(out_dir / "lens.npy", lens)
    _write(out_dir / "loss_mask.npy", msk)
    meta = {"rows": len(targets), "questions": len(examples), "target_tokens": int(msk.sum()), "target_len": T,
            "prefix_len": P, "longest_row": int(lens.sum(axis=1).max()), "qa": True}
    (out_dir / "meta.json").write_text(json.dumps(meta, indent=2), encoding="utf-8")
    return meta
