"""Serve a GGUF model on CPU through llama-cpp-python: streaming, stop strings, sampling, bounded queue.

The model is loaded once per `LlamaCppGenerator`; requests are served by a fixed pool of contexts
(each a `Llama` over the same memory-mapped file) and at most `queue_size` more wait for one; a
further request is refused at once with `Busy`. Tokenisation uses a separate vocab-only handle and
`health()` touches no context, so a long generation never blocks health checks or the context
check. llama.cpp calls release the GIL (ctypes), so contexts run truly in parallel.

Prompt token budget: a prompt that leaves no room for one new token raises `ContextOverflow`;
otherwise `max_tokens` is capped to what still fits and the result says `finish_reason="length"`.
Prompts may be text (`<s>` is prepended, as in training) or token ids that already include `<s>`.

Cancellation: a stream's `close()` is safe from any thread at any time and always frees its slot
(see `_Stream`); `health()` reports how long the longest-held context has been held.
"""

from __future__ import annotations

import codecs
import logging
import queue
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from common.errors import Busy, ContextOverflow, InvalidInput, ModelUnavailable, NotFound
from common.sampling import (PENALTY_LAST_N, SamplingParams, likeliest_span, read_span_scores, span_candidates,
                             span_continuations, span_rows)
from quantize.llama_log import route_llama_logs

log = logging.getLogger(__name__)
CANCEL_POLL_S = 0.05  # how often a generation waiting for a context looks at its cancel flag


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
    """Iterator of text pieces for one request; holds an admission slot and, while generating, a context.

    One thread iterates at a time, but `close()` may come from any thread at any moment: the event
    loop when a client hangs up or a request times out, a worker thread, a finaliser. A generator
    cannot be closed while another thread runs it (`ValueError: generator already executing`, issue
    27), so `close()` never touches a running one: it sets the cancel flag, the generating thread
    stops at its next token (or while it waits for a context, or between span-search rows) and gives
    the context back itself. When no thread is inside, `close()` ends the generation at once. Either
    way the slot and the context go back exactly once, a closed stream never starts, and `close()`
    is idempotent and never raises.
    """

    def __init__(self, owner: "LlamaCppGenerator", ids: list[int], params: SamplingParams, max_new: int) -> None:
        self._owner, self._ids, self._params, self._max_new = owner, ids, params, max_new
        self.result: Generation | None = None
        self._lock = threading.RLock()  # guards the fields below; re-entered by `_run`'s finally under `_shut`
        self._cancel = threading.Event()
        self._it: Iterator[str] | None = None
        self._running = False  # a thread is inside next(self._it)
        self._finished = False  # exhausted, failed or closed: never advanced again
        self._admitted = True  # still holds its admission slot

    @property
    def cancelled(self) -> bool:
        """Closed before the generation ended (no `result`)."""
        return self._cancel.is_set() and self.result is None

    def __iter__(self) -> "_Stream":
        return self

    def __next__(self) -> str:
        with self._lock:
            if self._running:
                raise RuntimeError("a generation is iterated by one thread at a time")
            if self._finished or self._cancel.is_set():
                self._shut()
                raise StopIteration
            if self._it is None:
                self._it = self._run()
            self._running = True
        try:
            piece = next(self._it)
        except BaseException:  # StopIteration or a failure: `_run`'s finally has given everything back
            with self._lock:
                self._running, self._finished = False, True
            raise
        with self._lock:
            self._running = False
            if self._cancel.is_set():  # closed while this token was made: free the context now, not at GC
                self._shut()
        return piece

    def close(self) -> None:
        """Stop the generation and free its slot; safe from any thread, any number of times."""
        self._cancel.set()
        with self._lock:
            if not self._running:  # else the running thread sees the flag and frees the context itself
                self._shut()

    def __del__(self) -> None:  # a request abandoned mid-way still frees its slot
        try:
            if hasattr(self, "_lock"):
                self.close()
        except Exception:  # noqa: BLE001 - never raise from a finaliser
            pass

    def _shut(self) -> None:
        """End it here (the lock held, no thread inside): close the generator, give back what is held."""
        self._finished = True
        it, self._it = self._it, None
        try:
            if it is not None:
                it.close()  # GeneratorExit at its yield: `_run`'s finally gives back the context and the slot
        except Exception:  # noqa: BLE001 - a failing clean-up must not keep the slot or reach the caller
            log.exception("closing a generation failed")
        finally:
            self._give_back(None)  # not started (or already given back): the admission slot only, once

    def _give_back(self, llm: Any) -> None:
        with self._lock:
            admitted, self._admitted = self._admitted, False
        if llm is not None or admitted:
            self._owner._release(llm, slot=admitted)

    def _run(self) -> Iterator[str]:
        llm = None
        try:
            llm = self._owner._acquire(self._cancel)  # Busy after acquire_timeout_s; None if closed meanwhile
            if llm is not None:
                yield from self._generate(llm)
        finally:
            self._give_back(llm)

    def _generate(self, llm: Any) -> Iterator[str]:
        import llama_cpp

        p = self._params
        if self._cancel.is_set():
            return
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
            span = self._best_span(llm)
            if span is None:  # closed during the search
                return
            gen: Iterator[int] = (t for t in [*span, self._owner.eos_id])
        else:
            gen = llm.generate(self._ids, top_k=p.top_k, top_p=p.top_p, min_p=0.0, typical_p=1.0,
                               temp=p.temperature, repeat_penalty=p.repeat_penalty, reset=True,
                               logits_processor=self._span_processor(llama_cpp) if p.extract_from is not None else None)
        try:
            for tok in gen:
                if self._cancel.is_set():  # closed from another thread while this token was computed
                    break
                if not out:
                    t_first = time.perf_counter()
                if (llama_cpp.llama_token_is_eog(vocab, tok) or tok in p.stop_tokens) and not p.ignore_eos:  # EOS ends it
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
        if self._cancel.is_set():  # no tail, no result: the caller has gone
            return
        if not by_stop_string:  # flush text held back for a stop string that never completed
            tail = pending + decoder.decode(b"", final=True)
            if tail:
                emitted.append(tail)
                yield tail
        t_end = time.perf_counter()
        self.result = Generation("".join(emitted), out, finish, len(self._ids), t_first - t0, t_end - t_first)

    def _best_span(self, llm: Any) -> list[int] | None:
        """Span search (`SamplingParams.extract_search = "best"`), as the torch generator's `best_span`:
        the prompt is evaluated once, then each start's run of the source on top of it (the K/V cache
        cut back to the prompt each time), with logits kept for every token of the run. Uses
        llama-cpp-python's context and batch objects (pinned version): its `eval` keeps only the last
        logits unless the whole context was created with logits_all. None when closed meanwhile (the
        flag is read between rows)."""
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
            if self._cancel.is_set():
                return None
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
        route_llama_logs()
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
                         n_threads_batch=threads, logits_all=logits_all, type_k=kv, type_v=kv, verbose=False,
                         last_n_tokens_size=PENALTY_LAST_N)  # the repetition penalty's window, as the torch generator

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
        self._held: dict[int, float] = {}  # id(context) -> time.monotonic() it was taken (for `health`)
        # Re-entrant: a collected stream's __del__ gives its context back on whatever thread the
        # garbage collector runs, possibly one inside this lock already.
        self._count_lock = threading.RLock()
        self.metadata: dict[str, str] = dict(first.metadata)
        self.bos_id, self.eos_id = int(self._vocab.token_bos()), int(self._vocab.token_eos())
        self.n_vocab = int(self._vocab.n_vocab())

    # ---- tokens ---------------------------------------------------------------------------------
    def tokenize(self, text: str, add_bos: bool = True, special: bool = False) -> list[int]:
        """llama.cpp's tokenisation (user-defined symbols such as <ctx> are matched; control tokens such as
        <s> or a chat template's <|im_start|> only with `special`, for text a chat template rendered)."""
        with self._tok_lock:
            return list(self._vocab.tokenize(text.encode("utf-8"), add_bos=add_bos, special=special))

    def token_text(self, i: int) -> str:
        """The text of token `i` as the vocabulary stores it (a chat template's bos_token / eos_token)."""
        with self._tok_lock:
            return self._vocab._model.token_get_text(int(i)) if 0 <= int(i) < self.n_vocab else ""

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

    def _acquire(self, cancel: threading.Event | None = None) -> Any:
        """A free context within acquire_timeout_s, else Busy (the caller still holds its admission
        slot and gives it back); None as soon as `cancel` is set (its request has gone)."""
        deadline = time.monotonic() + self.acquire_timeout_s
        while True:
            if cancel is not None and cancel.is_set():
                return None
            left = deadline - time.monotonic()
            if left <= 0:
                raise Busy(f"no free context within {self.acquire_timeout_s:.0f}s")
            try:
                llm = self._free.get(timeout=left if cancel is None else min(left, CANCEL_POLL_S))
                break
            except queue.Empty:
                continue
        with self._count_lock:
            self._active += 1
            self._held[id(llm)] = time.monotonic()
        return llm

    def _admit_and_acquire(self) -> Any:
        self._admit()
        try:
            return self._acquire()
        except Busy:
            self._slots.release()
            raise

    def _release(self, llm: Any, slot: bool = True) -> None:
        """Give back a context (if any) and, with `slot`, the admission slot."""
        if llm is not None:
            with self._count_lock:
                self._active -= 1
                self._held.pop(id(llm), None)
            self._free.put(llm)
        if slot:
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
        """Pool state without touching a context (never blocked by a running generation).

        `oldest_busy_s`: how long the longest-held context has been taken (0 when none is);
        `stuck`: contexts held past acquire_timeout_s, so a request queued behind one of them
        now gives up before it frees (the server reports these as not ready)."""
        now = time.monotonic()
        with self._count_lock:
            active, taken = self._active, list(self._held.values())
        ages = [now - t for t in taken]
        return {"model": str(self.path), "n_ctx": self.n_ctx, "threads": self.threads,
                "contexts": self.pool_size, "busy": active, "queue_size": self.queue_size,
                "oldest_busy_s": round(max(ages, default=0.0), 3), "acquire_timeout_s": self.acquire_timeout_s,
                "stuck": sum(a > self.acquire_timeout_s for a in ages)}

    def close(self) -> None:
        while True:
            try:
                self._free.get_nowait().close()
            except queue.Empty:
                break
