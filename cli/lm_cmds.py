"""`ragkiln train lm`, `ragkiln eval lm`, `ragkiln generate`: thin adapters over trainer.lm.service."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from common.settings import load_settings
from cli.groups import eval_app, train_app
from cli.app import app, overrides_of
from cli.output import emit, handle_errors


@train_app.command("lm")
@handle_errors
def train_lm_cmd(
    ctx: typer.Context,
    preset: str = typer.Option(None, "--preset", help="tiny (~1M), small (~5M) or base (~25M parameters)."),
    retrieval: bool = typer.Option(True, "--retrieval/--no-retrieval", help="Prefix neighbours from the index."),
    out: Path = typer.Option(None, "--out", help="Model directory (default WORKSPACE/models/lm-PRESET-MODE)."),
    qa: Path = typer.Option(None, "--qa", help="Fine-tune for answering on JSONL {question, answer[, context]}."),
    init: Path = typer.Option(None, "--init", help="Checkpoint to fine-tune with --qa (default the rag model)."),
    steps: int = typer.Option(None, "--steps", help="Optimizer steps."),
    batch_size: int = typer.Option(None, "--batch-size", help="Sequences per step."),
    lr: float = typer.Option(None, "--lr", help="Peak learning rate."),
    nproc: int = typer.Option(None, "--nproc", help="DDP processes (torchrun, gloo)."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run from its last checkpoint."),
    tokenizer_from: Path = typer.Option(None, "--tokenizer-from", help="Reuse this model's tokenizer (to compare "
                                        "perplexities with it: `eval lm --against-plain`)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Train the compact Llama LM on the workspace corpus (retrieval-augmented by default)."""
    from reader.serve import qa_reader
    from trainer.lm.service import train_lm

    settings = load_settings(overrides_of(ctx, lm={"preset": preset, "steps": steps, "batch_size": batch_size,
                                                   "lr": lr, "nproc": nproc}))
    tokenizer = Path(tokenizer_from) / "tokenizer.model" if tokenizer_from is not None else None
    result = train_lm(settings, retrieval=retrieval, out=out, qa=qa, init=init, resume=resume, tokenizer=tokenizer,
                      reader=qa_reader(settings.server.reader_pipeline))
    emit(result, as_json, _render_train)


def _render_train(r: dict[str, Any]) -> str:
    from trainer.lm.answer_check import call_words

    lines = [f"model: {r['out']}", f"final train loss {r.get('final_train_loss')}"]
    if r.get("heldout_ppl") is not None:
        lines.append(f"held-out loss {r['heldout_loss']:.4f}  ppl {r['heldout_ppl']:.2f}")
    ans = r.get("heldout_answers")
    if ans:
        lines.append(f"held-out answers ({ans['questions']} questions): token F1 {ans['model_f1']:.3f} in its own words, "
                     f"{ans['reader_f1']:.3f} from the extractive reader: " + call_words(ans["model_wins"]))
    if r.get("tokens_per_s"):
        lines.append(f"{r['tokens_per_s']:.0f} tokens/s, MFU {100 * r['mfu']:.1f}% of {r['matmul_peak_gflops']} GFLOP/s")
    return "\n".join(lines)


@eval_app.command("lm")
@handle_errors
def eval_lm_cmd(
    ctx: typer.Context,
    model: Path = typer.Option(None, "--model", help="LM checkpoint directory."),
    gguf: Path = typer.Option(None, "--gguf", help="Evaluate a GGUF export instead (llama.cpp)."),
    heldout: bool = typer.Option(True, "--heldout/--no-heldout", help="Use the model's held-out documents."),
    rows: int = typer.Option(None, "--rows", help="Evaluate only the first N held-out rows."),
    against_plain: Path = typer.Option(None, "--against-plain", help="A plain LM trained on the same documents "
                                       "with --tokenizer-from MODEL: the check `ragkiln build` keeps an LM by."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Held-out perplexity without and with retrieved context (or against a plain LM)."""
    from common.errors import InvalidInput

    settings = load_settings(overrides_of(ctx))
    if not heldout:
        raise InvalidInput("only --heldout evaluation is supported")
    if gguf is not None:
        from cli.quantize_cmds import gguf_eval_cmd

        gguf_eval_cmd(settings, gguf, rows, as_json)
        return
    if model is None:
        raise InvalidInput("give --model DIR (or --gguf FILE)")
    from trainer.lm.service import eval_lm, retrieval_payoff

    if against_plain is not None:
        from trainer.lm.gate import lm_served

        payoff = retrieval_payoff(settings, model, against_plain)
        served, why = lm_served(payoff)
        emit({**payoff, "keep": served, "reason": why}, as_json, lambda d: f"keep the {served} model: {why}")
        return
    emit(eval_lm(settings, model, rows), as_json, lambda d: "\n".join(f"{k}: {v}" for k, v in d.items()))


@app.command("generate")
@handle_errors
def generate_cmd(
    ctx: typer.Context,
    prompt: str = typer.Argument(..., help="Prompt text (may use <ctx> </ctx> <q> <a>)."),
    model: Path = typer.Option(None, "--model", help="LM checkpoint directory."),
    gguf: Path = typer.Option(None, "--gguf", help="Sample from a GGUF export instead (llama.cpp)."),
    max_tokens: int = typer.Option(128, "--max-tokens"),
    temperature: float = typer.Option(0.8, "--temperature"),
    top_k: int = typer.Option(0, "--top-k"),
    top_p: float = typer.Option(1.0, "--top-p"),
    stop: list[str] = typer.Option(None, "--stop", help="Stop string (repeatable)."),
    seed: int = typer.Option(None, "--seed"),
    extractive: bool = typer.Option(False, "--extractive",
                                    help="Only copy a span of the <ctx> passages, at word edges, "
                                    "not opening on the question's words or a stop word (on a number or "
                                    "a name when the question asks for one)."),
    search: str = typer.Option("greedy", "--search", help="With --extractive and --temperature 0: 'greedy' "
                               "token by token, or 'best', the likeliest whole span."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Sample a continuation of PROMPT."""
    from common.errors import InvalidInput
    from common.sampling import SamplingParams

    settings = load_settings(overrides_of(ctx))
    params = SamplingParams(max_tokens=max_tokens, temperature=temperature, top_k=top_k, top_p=top_p,
                            stop=tuple(stop or ()), seed=seed, extract_search=search).validate()
    if search != "greedy" and not extractive:
        raise InvalidInput("--search chooses among copied spans: it needs --extractive")
    if gguf is not None:
        from cli.quantize_cmds import gguf_generate_cmd

        gguf_generate_cmd(settings, gguf, prompt, params, as_json, extractive)
        return
    if model is None:
        raise InvalidInput("give --model DIR (or --gguf FILE)")
    from trainer.lm.service import generate_text

    g = generate_text(model, prompt, params, extractive=extractive)
    emit({"text": g.text, "tokens": len(g.tokens), "prompt_tokens": g.prompt_tokens,
          "finish_reason": g.finish_reason, "model": str(model)}, as_json, lambda d: d["text"])
