"""Serve a GGUF model on CPU through llama-cpp-python: streaming, stop strings, sampling, bounded queue.

The model is loaded once per `LlamaCppGenerator`; requests are served by a fixed pool of contexts
(each a `Llama` over the same memory-mapped file) and at most `queue_size` more wait for one; a
further request is refused at once with `Busy`. Tokenisation uses a separate vocab-only handle and
`health()` touches no context, so a long generation never blocks health checks or the context
check. llama.cpp calls release the GIL (ctypes), so contexts run truly in parallel.

Prompt token budget: a prompt that leaves no room for one new token raises `ContextOverflow`;
otherwise `max_tokens` is capped to what still fits and the result says `finish_reason="length"`.
Prompts may be text (`<s>` is prepended, as in training) or token ids that already include `<s>`.
"""

from __future__ import annotations

import codecs
import queue
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from common.errors import Busy, ContextOverflow, InvalidInput, ModelUnavailable, NotFound
from common.sampling import (SamplingParams, likeliest_span, read_span_scores, span_candidates, span_continuations,
                             span_rows)


@dataclass(frozen=True)
class Generation:
    text: str
    tokens: list[int]
    finish_reason: str  # "stop" (EOS or a stop string) or "length"
    prompt_tokens: int
    prompt_s: float  # prompt processing + first token
    gen_s: float  # the remaining tokens

    @property
    def gen_tok_s(self) -> float:
        return (len(self.tokens) - 1) / self.gen_s if len(self.tokens) > 1 and self.gen_s > 0 else 0.0


def split_on_stop(pending: str, stops: Sequence[str]) -> tuple[str, str, bool]:
    """(text safe to emit, text to hold back, stopped) for streaming with stop strings (pure).

    On a stop string everything before its earliest occurrence is emitted and generation ends;
    otherwise the longest tail that could still grow into a stop string is held back.
    """
    hits = [i for i in (pending.find(s) for s in stops if s) if i >= 0]
    if hits:
        return pending[: min(hits)], "", True
    hold = 0
    for s in stops:
        for n in range(min(len(s) - 1, len(pending)), 0, -1):
            if pending.endswith(s[:n]):
                hold = max(hold, n)
                break
    return pending[: len(pending) - hold], pending[len(pending) - hold :], False


class _Stream:
    """Iterator of text pieces for one request; gives its context back when done, closed or collected."""

    def __init__(self, owner: "LlamaCppGenerator", ids: list[int], params: SamplingParams, max_new: int) -> None:
        self._owner, self._ids, self._params, self._max_new = owner, ids, params, max_new
        self._it: Iterator[str] | None = None
        self.result: Generation | None = None
        self._released = False

    def __iter__(self) -> "_Stream":
        return self

    def __next__(self) -> str:
        if self._it is None:
            self._it = self._run()
        return next(self._it)

    def close(self) -> None:
        if self._it is not None:
            self._it.close()  # type: ignore[attr-defined]
        self._release(None)

    def __del__(self) -> None:  # a request abandoned before its first token still frees its slot
        try:
            self.close()
        except Exception:  # noqa: BLE001 - never raise from a finaliser
            pass

    def _admit_and_acquire(self) -> Any:
        self._admit()
        try:
            return self._acquire()
        except Busy:
            self._slots.release()
            raise

    def _release(self, llm: Any) -> None:
        if not self._released:
            self._released = True
            self._owner._release(llm)

    def _run(self) -> Iterator[str]:
        try:
            llm = self._owner._acquire()
        except Busy:
            self._release(None)
            raise
        try:
            yield from self._generate(llm)
        finally:
            self._release(llm)

    def _generate(self, llm: Any) -> Iterator[str]:
        import llama_cpp

        p = self._params
        llm.set_seed(p.seed if p.seed is not None else llama_cpp.LLAMA_DEFAULT_SEED)
        llm.reset()
        vocab = llama_cpp.llama_model_get_vocab(llm.model)
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        out: list[int] = []
        pending, emitted, finish, by_stop_string = "", [], "length", False
        t0 = time.perf_counter()
        t_first = t0
        if p.extract_from is not None and not p.extract_from:  # nothing to copy from: an empty answer
            self.result = Generation("", [], "stop", len(self._ids), 0.0, 0.0)
            return
        if p.extract_from is not None and p.extract_search == "best" and p.temperature == 0:
            gen: Iterator[int] = (t for t in [*self._best_span(llm), self._owner.eos_id])
        else:
            gen = llm.generate(self._ids, top_k=p.top_k, top_p=p.top_p, min_p=0.0, typical_p=1.0,
                               temp=p.temperature, repeat_penalty=1.0, reset=True,
                               logits_processor=self._span_processor(llama_cpp) if p.extract_from is not None else None)
        try:
            for tok in gen:
                if not out:
                    t_first = time.perf_counter()
                if llama_cpp.llama_token_is_eog(vocab, tok) and not p.ignore_eos:  # EOS ends the answer
                    finish = "stop"
                    break
                out.append(tok)
                pending += decoder.decode(llm.detokenize([tok]))
                emit, pending, by_stop_string = split_on_stop(pending, p.stop)
                if emit:
                    emitted.append(emit)
                    yield emit
                if by_stop_string:
                    finish = "stop"
                    break
                if len(out) >= self._max_new:
                    break
        finally:
            gen.close()
        if not by_stop_string:  # flush text held back for a stop string that never completed
            tail = pending + decoder.decode(b"", final=True)
            if tail:
                emitted.append(tail)
                yield tail
        t_end = time.perf_counter()
        self.result = Generation("".join(emitted), out, finish, len(self._ids), t_first - t0, t_end - t_first)

    def _best_span(self, llm: Any) -> list[int]:
        """Span search (`SamplingParams.extract_search = "best"`), as the torch generator's `best_span`:
        the prompt is evaluated once, then each start's run of the source on top of it (the K/V cache
        cut back to the prompt each time), with logits kept for every token of the run. Uses
        llama-cpp-python's context and batch objects (pinned version): its `eval` keeps only the last
        logits unless the whole context was created with logits_all."""
        p, ids = self._params, self._ids
        source = p.extract_from or ()
        spans = span_candidates(source, min(p.max_tokens, self._max_new), p.extract_avoid, p.extract_starts,
                                p.extract_ends)
        if not spans:
            return []
        n_vocab = self._owner.n_vocab
        llm.reset()
        llm.eval(ids)
        first = np.ctypeslib.as_array(llm._ctx.get_logits_ith(-1), shape=(n_vocab,)).copy()  # (V,) after the prompt
        scores: dict[tuple[int, ...], float] = {}
        for start, n in span_rows(spans):
            llm._ctx.kv_cache_seq_rm(-1, len(ids), -1)
            llm._batch.set_batch(batch=list(source[start : start + n]), n_past=len(ids), logits_all=True)
            llm._ctx.decode(llm._batch)
            rows = np.ctypeslib.as_array(llm._ctx.get_logits(), shape=(n * n_vocab,)).reshape(n, n_vocab)
            read_span_scores(source, spans, start, np.vstack([first, rows]), self._owner.eos_id, scores)  # (n + 1, V)
        return likeliest_span(scores, spans, p.extract_alpha)

    def _span_processor(self, llama_cpp: Any) -> Any:
        """Extractive decoding as a llama.cpp logits processor: every token outside
        `common.sampling.span_continuations` of what was generated so far gets -inf, the same rule
        as the torch generator's, so both back ends copy the same span."""
        source, n_prompt, eos = self._params.extract_from or (), len(self._ids), self._owner.eos_id
        avoid, starts, ends = self._params.extract_avoid, self._params.extract_starts, self._params.extract_ends

        def only_spans(input_ids: np.ndarray, scores: np.ndarray) -> np.ndarray:
            allowed = [t for t in span_continuations(source, [int(t) for t in input_ids[n_prompt:]], eos, avoid, starts, ends)
                       if 0 <= t < len(scores)]
            out = np.full_like(scores, -np.inf)  # (V,)
            out[allowed] = scores[allowed]
            return out

        return llama_cpp.LogitsProcessorList([only_spans])


class LlamaCppGenerator:
    """A GGUF model served by llama-cpp-python; create once, share between threads."""

    def __init__(
        self,
        path: Path,
        *,
        threads: int = 2,
        n_ctx: int = 0,
        pool_size: int = 1,
        queue_size: int = 8,
        acquire_timeout_s: float = 60.0,
        logits_all: bool = False,
        kv_cache: str = "f32",
    ) -> None:
        try:
            from llama_cpp import Llama
        except ImportError as e:  # pragma: no cover - a declared dependency
            raise ModelUnavailable("llama-cpp-python is not installed") from e
        self.path = Path(path)
        if not self.path.is_file():
            raise NotFound(f"GGUF file {self.path} does not exist")
        if pool_size < 1 or queue_size < 0:
            raise InvalidInput("pool_size must be >= 1 and queue_size >= 0")
        self.threads, self.logits_all, self.acquire_timeout_s = threads, logits_all, acquire_timeout_s
        import llama_cpp

        if kv_cache not in ("f32", "f16"):
            raise InvalidInput(f"kv_cache must be f32 or f16, not {kv_cache!r}")
        # F32 K/V keeps llama.cpp's F32 logits within 1e-5 of torch; llama.cpp's default F16 cache
        # alone moves them by ~1e-2 (measured on the test model), which would hide exporter bugs.
        kv = llama_cpp.GGML_TYPE_F32 if kv_cache == "f32" else llama_cpp.GGML_TYPE_F16

        def load(ctx_len: int) -> Any:
            return Llama(str(self.path), n_ctx=ctx_len, n_batch=512, n_ubatch=512, n_threads=threads,
                         n_threads_batch=threads, logits_all=logits_all, type_k=kv, type_v=kv, verbose=False)

        try:
            first = load(n_ctx)  # n_ctx=0: llama.cpp sizes the context from the file
            self.n_ctx = n_ctx or int(llama_cpp.llama_model_n_ctx_train(first.model))
            if self.n_ctx < 2:
                raise ModelUnavailable(f"{self.path} records no usable context length")
            self._free: queue.Queue[Any] = queue.Queue()
            self._free.put(first)
            for _ in range(pool_size - 1):
                self._free.put(load(n_ctx))
        except ValueError as e:  # llama-cpp-python raises ValueError("Failed to load model ...")
            raise ModelUnavailable(f"llama.cpp cannot load {self.path}: {e}") from e
        # Tokenisation reads only the vocabulary (never a context), so any pool member serves it.
        self._vocab = first
        self.pool_size, self.queue_size = pool_size, queue_size
        self._slots = threading.BoundedSemaphore(pool_size + queue_size)
        self._tok_lock = threading.Lock()
        self._active = 0
        self._count_lock = threading.Lock()
        self.metadata: dict[str, str] = dict(first.metadata)
        self.bos_id, self.eos_id = int(self._vocab.token_bos()), int(self._vocab.token_eos())
        self.n_vocab = int(self._vocab.n_vocab())

    # ---- tokens ---------------------------------------------------------------------------------
    def tokenize(self, text: str, add_bos: bool = True) -> list[int]:
        """llama.cpp's tokenisation (user-defined symbols such as <ctx> are matched, <s>/</s> are not)."""
        with self._tok_lock:
            return list(self._vocab.tokenize(text.encode("utf-8"), add_bos=add_bos, special=False))

    def detokenize(self, ids: Sequence[int]) -> str:
        with self._tok_lock:
            return self._vocab.detokenize(list(ids)).decode("utf-8", errors="replace")

    def piece_bytes(self, i: int) -> bytes:
        """The bytes token `i` adds inside a text, its leading space kept (trainer.lm's Tokenizer.piece_bytes)."""
        with self._tok_lock:
            return bytes(self._vocab.detokenize([int(i)])) if int(i) != self.bos_id else b""

    def prompt_ids(self, prompt: str | Sequence[int]) -> list[int]:
        ids = self.tokenize(prompt) if isinstance(prompt, str) else [int(t) for t in prompt]
        if not ids:
            raise InvalidInput("empty prompt")
        bad = [t for t in ids if not 0 <= t < self.n_vocab]
        if bad:
            raise InvalidInput(f"token id {bad[0]} is outside the vocabulary (0..{self.n_vocab - 1})")
        return ids

    def check_context(self, n_prompt: int) -> None:
        if n_prompt >= self.n_ctx:
            raise ContextOverflow(
                f"prompt has {n_prompt} tokens; the context holds {self.n_ctx} including at least one new token"
            )

    # ---- pool -----------------------------------------------------------------------------------
    def _admit(self) -> None:
        if not self._slots.acquire(blocking=False):
            raise Busy(f"{self.pool_size} generation(s) running and {self.queue_size} waiting; retry later")

    def _acquire(self) -> Any:
        try:
            llm = self._free.get(timeout=self.acquire_timeout_s)
        except queue.Empty:  # the caller still holds its admission slot and gives it back
            raise Busy(f"no free context within {self.acquire_timeout_s:.0f}s") from None
        with self._count_lock:
            self._active += 1
        return llm

    def _admit_and_acquire(self) -> Any:
        self._admit()
        try:
            return self._acquire()
        except Busy:
            self._slots.release()
            raise

    def _release(self, llm: Any) -> None:
        if llm is not None:
            with self._count_lock:
                self._active -= 1
            self._free.put(llm)
        self._slots.release()

    # ---- generation -----------------------------------------------------------------------------
    def stream(self, prompt: str | Sequence[int], params: SamplingParams) -> _Stream:
        """Start a generation: checks run now (ContextOverflow, Busy); iterate to get text pieces.

        After iteration `.result` holds the `Generation` (tokens, finish reason, timings).
        """
        params.validate()
        ids = self.prompt_ids(prompt)
        self.check_context(len(ids))
        max_new = min(params.max_tokens, self.n_ctx - len(ids))
        self._admit()
        return _Stream(self, ids, params, max_new)

    def generate(self, prompt: str | Sequence[int], params: SamplingParams) -> Generation:
        s = self.stream(prompt, params)
        for _ in s:
            pass
        assert s.result is not None
        return s.result

    def logits(self, ids: Sequence[int]) -> np.ndarray:
        """Next-token logits at every position of `ids`, (T, V) float32 (needs logits_all=True)."""
        if not self.logits_all:
            raise InvalidInput("this generator was created without logits_all")
        ids = self.prompt_ids(list(ids))
        if len(ids) > self.n_ctx:
            raise ContextOverflow(f"{len(ids)} tokens do not fit the context of {self.n_ctx}")
        llm = self._admit_and_acquire()
        try:
            llm.reset()
            llm.eval(ids)
            return np.array(llm.scores[: len(ids)], dtype=np.float32, copy=True)
        finally:
            self._release(llm)

    def prompt_seconds(self, ids: Sequence[int]) -> float:
        """Wall time of processing `ids` as one prompt (for prompt-processing tokens/s)."""
        ids = self.prompt_ids(list(ids))
        self.check_context(len(ids))
        llm = self._admit_and_acquire()
        try:
            llm.reset()
            llm.eval(ids[:1])  # first use of a context allocates its buffers; keep that out of the timing
            llm.reset()
            t0 = time.perf_counter()
            llm.eval(ids)
            return time.perf_counter() - t0
        finally:
            self._release(llm)

    def health(self) -> dict[str, Any]:
        """Pool state without touching a context (never blocked by a running generation)."""
        with self._count_lock:
            active = self._active
        return {"model": str(self.path), "n_ctx": self.n_ctx, "threads": self.threads,
                "contexts": self.pool_size, "busy": active, "queue_size": self.queue_size}

    def close(self) -> None:
        while True:
            try:
                self._free.get_nowait().close()
            except queue.Empty:
                break
