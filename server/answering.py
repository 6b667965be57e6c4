"""Grounded answers: retrieval -> relevant passages -> the extractive reader (ragkiln's own models'
extractive answers) or a QA prompt and GGUF generation (free text, chat models) -> citations.

An extractive answer is read, not generated (`read_relevant`): the reader (reader/) ranks the relevant
passages' sentences and the token-aligned spans of the best ones, and the answer is the best span, with
its sentence and their document offsets (`AnswerResponse.sentence`). The reader's spaCy pipeline and
caches live in one `ReaderRuntime` per server state (`reader_runtime`), made on first use.

`start_answer` does everything that can fail with a clean HTTP status (no generator, queue full,
prompt too long) before the first byte, so a streamed response only ever fails mid-way on a real
generation error. `AnswerRun.pieces()` is a sync iterator (run it on a worker thread).

Ending a run early (issue 27): `finish_answer` and `streaming_answer` run the generation on worker
threads and close the run from the event loop however the request ends (done, client gone, the
timeout middleware's cancellation). `AnswerRun.close()` is safe from any thread while a worker is
inside a token: the runtime only flags the running generation, which frees its context after that
token, so a cut-off request never keeps a context and never raises into the event loop.
"""

from __future__ import annotations

import asyncio
import threading
import time
import weakref
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

import anyio
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import StreamingResponse

from common.errors import ModelUnavailable
from indexer.types import Hit
from reader.answer import NO_ANSWER, make_reader_runtime, read_relevant
from reader.grounding import relevant_hits
from reader.serve import ReaderRuntime, ReadResult
from server.chat_prompt import marker_citations, rag_messages
from server.rag import Citation, select_citations
from server.schemas import (AnswerExampleOut, AnswerResponse, AnswerSentenceOut, AnswerTimings, CitationOut, PassageOut,
                            Usage)
from server.sse import SSE_HEADERS
from server.state import READER_ONLY, ServerState
from trainer.lm.qa import ANSWER_STOPS, MIN_NEW_TOKENS, plan_prompt
from trainer.lm.qa_focus import focus_contexts


@dataclass(frozen=True)
class GenOptions:
    max_tokens: int = 64
    temperature: float = 0.0
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    seed: int | None = None
    extractive: bool | None = False  # the reader's span of the relevant passages, not generated text
    # (None: server.answer_extractive for ragkiln's own models; a chat model always answers in its own words)


@dataclass
class AnswerRun:
    question: str
    hits: list[Hit]
    relevant: list[Hit]
    in_prompt: list[Hit]
    retrieval_s: float
    model: str | None
    stream: Any = None  # quantize.runtime._Stream; None when nothing relevant was found
    prompt_tokens: int = 0
    text: str = ""
    finish_reason: str = "stop"
    completion_tokens: int = 0
    first_token_s: float | None = None
    generation_s: float | None = None
    tokens_per_s: float | None = None
    citations: list[Citation] = field(default_factory=list)
    mode: str = "extractive"  # "extractive": a span copied from the passages; "generative": the model's own words
    notice: str | None = None  # why the answer is not what was asked for (a model the quality gate keeps extractive)
    cite: str = "spans"  # "spans": rag.select_citations; "markers": the answer's [n] markers (chat models)
    question_vec: tuple[Any, str | None] = (None, None)  # retrieval's query vector and its embedder's id (reused by the reader)
    sentence: AnswerSentenceOut | None = None  # an extractive answer's sentence and offsets
    example: AnswerExampleOut | None = None  # ... and the code its sentence introduces (a how-to question)
    _t_ready: float = 0.0

    @property
    def grounded(self) -> bool:
        return bool(self.relevant)

    @property
    def cancelled(self) -> bool:
        """Closed before its generation ended (client gone, timed out): nothing more to send or record."""
        return self.stream is not None and self.stream.cancelled

    def pieces(self) -> Iterator[str]:
        """The answer text piece by piece; afterwards the fields hold the result and citations."""
        if self.stream is None:
            self.text = NO_ANSWER
            self.citations = []
            yield NO_ANSWER
            return
        if isinstance(self.stream, ReaderStream):
            yield from self._read_pieces(self.stream)
            return
        parts: list[str] = []
        try:
            for piece in self.stream:
                if self.first_token_s is None:
                    self.first_token_s = time.perf_counter() - self._t_ready
                parts.append(piece)
                yield piece
        finally:
            self.stream.close()
        self.text = "".join(parts)
        if self.stream.cancelled:
            return
        res = self.stream.result
        if res is not None:
            self.finish_reason = res.finish_reason
            self.completion_tokens = len(res.tokens)
            self.generation_s = res.prompt_s + res.gen_s
            self.tokens_per_s = res.gen_tok_s or None
            if self.first_token_s is None:  # nothing emitted (e.g. EOS first): time to the decision
                self.first_token_s = res.prompt_s
        self.citations = (marker_citations(self.text, self.in_prompt) if self.cite == "markers"
                          else select_citations(self.text, self.in_prompt, self.question))

    def _read_pieces(self, stream: ReaderStream) -> Iterator[str]:
        """The reader's answer: the span as one piece (as its qualified name when it names a module's member,
        "pty.spawn"), cited by the span's own document offsets and words."""
        a = stream.result.answer
        self.first_token_s = self.generation_s = stream.result.seconds
        if a is None:  # relevant passages, but no candidate span in them (e.g. only punctuation)
            self.text, self.citations = NO_ANSWER, []
            yield NO_ANSWER
            return
        hit = self.in_prompt[a.passage]
        c = hit.chunk
        self.text = a.name or a.text
        self.citations = [Citation(c.doc_id, c.title, c.id, a.passage + 1, a.doc_start, a.doc_end, a.text,
                                   float(hit.score), "answer")]
        self.sentence = AnswerSentenceOut(text=a.sentence, doc_id=c.doc_id, chunk_id=c.id, start=a.sentence_doc_start,
                                          end=a.sentence_doc_end, span_start=a.doc_start, span_end=a.doc_end)
        if (ex := stream.result.example) is not None:
            self.example = AnswerExampleOut(text=ex.text, doc_id=c.doc_id, chunk_id=c.id, start=ex.doc_start,
                                            end=ex.doc_end)
        yield self.text

    def finish(self) -> None:
        for _ in self.pieces():
            pass

    def close(self) -> None:
        """Stop the generation and free its context; from any thread, any number of times, never raises."""
        if self.stream is not None:
            self.stream.close()


@dataclass
class ReaderStream:
    """A run's stream when the reader answered: already read, nothing to generate, cancel or free."""

    result: ReadResult
    cancelled: bool = False

    def close(self) -> None:
        pass


_RUNTIMES: dict[int, ReaderRuntime] = {}
_RUNTIMES_LOCK = threading.Lock()


def reader_runtime(state: ServerState) -> ReaderRuntime:
    """The server state's reader (weights, spaCy pipeline, caches), made on first use and dropped with the state."""
    key = id(state)
    with _RUNTIMES_LOCK:
        rt = _RUNTIMES.get(key)
        if rt is None:
            rt = make_reader_runtime(state.settings)
            _RUNTIMES[key] = rt
            weakref.finalize(state, _RUNTIMES.pop, key, None)
        return rt


async def finish_answer(run: AnswerRun, request: Request) -> None:
    """`run.finish()` on a worker thread. A client that hangs up meanwhile cancels the generation, and
    so does this coroutine being cancelled (the timeout middleware's 504): either way the run is
    closed here, on the event loop, and its context is free within a token."""
    work = asyncio.ensure_future(run_in_threadpool(run.finish))
    work.add_done_callback(_retrieve)  # after a cancellation nobody awaits it
    gone = asyncio.ensure_future(_client_gone(request))
    gone.add_done_callback(_retrieve)
    try:
        await asyncio.wait({work, gone}, return_when=asyncio.FIRST_COMPLETED)
        if not work.done():  # the client hung up: stop generating, then let the worker return
            run.close()
        await work
    finally:
        gone.cancel()
        run.close()


def streaming_answer(run: AnswerRun, events: Iterator[str]) -> StreamingResponse:
    """A text/event-stream response of `events` (a sync generator over `run`, run on worker threads).

    Starlette never closes a sync body iterator when the client hangs up: it cancels the task and
    drops the iterator, which kept the generation (and its context) alive until garbage collection,
    and its thread call shields the cancellation until `next()` returns (a request queued for a
    context would wait out acquire_timeout_s). Here each `next()` is abandoned on cancellation and
    the run is closed at once in the finally; the worker, if inside a token or waiting for a
    context, sees the flag and frees everything itself. The background task closes it again,
    idempotently (Starlette runs it after a disconnect too: a cancellation while a chunk is sent)."""

    async def body() -> AsyncIterator[str]:
        try:
            while (event := await anyio.to_thread.run_sync(next, events, _END, abandon_on_cancel=True)) is not _END:
                yield event
        finally:
            run.close()

    return StreamingResponse(body(), media_type="text/event-stream", headers=SSE_HEADERS,
                             background=BackgroundTask(_close, run))


_END = object()


async def _close(run: AnswerRun) -> None:
    run.close()


async def _client_gone(request: Request) -> None:
    """Returns when the client disconnects (the request body has been read: nothing else arrives)."""
    while (await request.receive())["type"] != "http.disconnect":
        await asyncio.sleep(0.05)  # a stray body message: never spin


def _retrieve(f: asyncio.Future[Any]) -> None:
    if not f.cancelled():
        f.exception()


def start_answer(state: ServerState, question: str, hits: Sequence[Hit], retrieval_s: float, opts: GenOptions,
                 rag: bool = True, retrieved_at: float | None = None, model: str | None = None,
                 history: Sequence[tuple[str, str]] = (),
                 question_vec: tuple[np.ndarray | None, str | None] = (None, None)) -> AnswerRun:
    """Pick the relevant passages and start generating; raises ModelUnavailable/Busy/ContextOverflow
    (NotFound for a `model` not served; None: the default generator).

    `retrieved_at` (perf_counter) is when retrieval ended: first-token latency counts from there.
    `history`: (role, content) of a chat's messages, for a chat model's prompt. A model the quality gate
    (quantize/gate.py) keeps extractive answers with a span of the passages whatever was asked, says so
    in `notice`, and is never run free: without passages (`rag` off) it refuses (ModelUnavailable).
    `question_vec`: retrieval's query vector and the id of the embedder that made it, reused by the reader
    while the index still embeds with that embedder."""
    cfg = state.settings.server
    relevant = relevant_hits(hits, question, state.searcher().gen.bm25, cfg) if rag else []
    run = AnswerRun(question, list(hits), relevant, [], retrieval_s, None, question_vec=question_vec)
    if rag and not relevant:
        return run
    if state.reads_for(model):  # no LM in the workspace yet: the reader needs none
        if not rag or opts.extractive is False:
            raise ModelUnavailable(f"{READER_ONLY}; without one, answers are extractive and read the retrieved "
                                   "passages (rag on, extractive unset or true)")
        _start_reader(run, state, None)
        return run
    gen = state.require_generator(model)
    run.model = gen.model_id
    run._t_ready = retrieved_at if retrieved_at is not None else time.perf_counter()
    if gen.kind == "chat":
        _start_chat(run, gen, state.settings.server, opts, rag, history)
    else:
        _start_ragkiln(run, gen, state, opts, rag)
    return run


def gated_message(gen: Any) -> str:
    return (f"model {gen.model_id!r} may not generate free text ({gen.gate}); it answers only with spans of "
            "retrieved passages: ask with rag on (the default), pick another model, or override with server.generative")


def _start_ragkiln(run: AnswerRun, gen: Any, state: ServerState, opts: GenOptions, rag: bool) -> None:
    """ragkiln's own model: the reader's span (extractive), or past the quality gate free text from its QA prompt."""
    from quantize.runtime import SamplingParams

    cfg = state.settings.server
    extractive = cfg.answer_extractive if opts.extractive is None else opts.extractive
    if not gen.generative:
        if not rag:
            raise ModelUnavailable(gated_message(gen))
        if not extractive:
            run.notice = (f"{gen.model_id} answered extractively (a span copied from the passages), not in its own "
                          f"words: {gen.gate}")
        extractive = True
    if extractive and run.relevant:
        _start_reader(run, state, gen)
        return
    question, relevant = run.question, run.relevant
    passages = relevant[: gen.passages]
    texts = focus_contexts([h.chunk.text for h in passages], question, gen.context_sentences)  # as tuned
    plan = plan_prompt(gen.tokenizer, texts, question, gen.runtime.n_ctx, opts.max_tokens, gen.passage_len)
    tok = gen.tokenizer
    params = SamplingParams(max_tokens=plan.max_new, temperature=opts.temperature, top_p=opts.top_p,
                            stop=tuple(dict.fromkeys((*opts.stop, *ANSWER_STOPS))), seed=opts.seed,
                            stop_tokens=(tok.ctx_open, tok.ctx_close, tok.q_id, tok.a_id),  # the prompt's markers
                            repeat_penalty=cfg.repeat_penalty)
    run.mode = "generative"
    run.stream = gen.runtime.stream(plan.ids, params)
    run.in_prompt = passages[: plan.passages]
    run.prompt_tokens = len(plan.ids)


def _start_reader(run: AnswerRun, state: ServerState, gen: Any | None) -> None:
    """Read the answer now (before the first byte: a failure is a clean status), with the index's embedder.
    Usage counts the answer's tokens in the model's vocabulary, as a client billing by output would
    (`gen` None: no model is served, see `ServerState.reader_only`)."""
    searcher = state.searcher()
    embedder = searcher.embedder
    vec, made_by = run.question_vec
    if made_by != str(embedder.id):  # the index switched embedders since retrieval: embed the question again
        vec = None
    result, used = read_relevant(reader_runtime(state), embedder, run.question, run.relevant, vec,
                                 searcher.store, state.settings.server.reader_context_chunks)
    run.mode, run.in_prompt, run.stream = "extractive", used, ReaderStream(result)
    if result.answer is not None:  # without a model, in the index embedder's word pieces
        run.completion_tokens = (len(gen.tokenizer.encode(result.answer.text)) if gen is not None else
                                 len(embedder.tokenizer(result.answer.text, add_special_tokens=False)["input_ids"]))
    if result.problem:
        run.notice = f"{run.notice}; {result.problem}" if run.notice else result.problem


def _start_chat(run: AnswerRun, gen: Any, cfg: Any, opts: GenOptions, rag: bool,
                history: Sequence[tuple[str, str]]) -> None:
    """A registered chat model: its own chat template, numbered passages, [n] markers become citations."""
    from quantize.runtime import SamplingParams

    if not gen.generative:  # server.generative set it false: a chat model has no extractive mode
        raise ModelUnavailable(gated_message(gen).replace("it answers only with spans of retrieved passages: ", ""))
    if opts.extractive:
        run.notice = (f"{gen.model_id} is a chat model: it answers in its own words, citing the passages as [n] "
                      "(extractive answers are for ragkiln's own models)")
    n_ctx = gen.runtime.n_ctx
    passages = list(run.relevant[: gen.passages]) if rag else []
    while True:
        if rag:
            messages = rag_messages(run.question, [(h.chunk.title, h.chunk.text) for h in passages], history)
        else:  # the conversation as sent
            messages = [{"role": "system" if r == "developer" else r, "content": c} for r, c in history] or [
                {"role": "user", "content": run.question}]
        ids = gen.chat.prompt_ids(messages)
        if len(ids) + min(opts.max_tokens, MIN_NEW_TOKENS) <= n_ctx or not passages:
            break
        passages.pop()  # the lowest-ranked passage goes first
    params = SamplingParams(max_tokens=max(1, min(opts.max_tokens, n_ctx - len(ids))), temperature=opts.temperature,
                            top_p=opts.top_p, stop=tuple(dict.fromkeys((*opts.stop, *gen.chat.stop))), seed=opts.seed,
                            stop_tokens=gen.chat.stop_tokens, repeat_penalty=cfg.repeat_penalty)
    run.mode, run.cite = "generative", "markers"
    run.stream = gen.runtime.stream(ids, params)  # ContextOverflow when even the question does not fit
    run.in_prompt = passages
    run.prompt_tokens = len(ids)


def citation_outs(run: AnswerRun) -> list[CitationOut]:
    return [CitationOut(**asdict(c)) for c in run.citations]


def passage_outs(run: AnswerRun) -> list[PassageOut]:
    rel = {h.chunk.id for h in run.relevant}
    used = {h.chunk.id for h in run.in_prompt}
    return [PassageOut(doc_id=h.chunk.doc_id, chunk_id=h.chunk.id, title=h.chunk.title, start=h.chunk.start,
                       end=h.chunk.end, score=round(h.score, 6), scores={k: round(v, 6) for k, v in h.scores.items()},
                       relevant=h.chunk.id in rel, in_prompt=h.chunk.id in used, text=h.chunk.text) for h in run.hits]


def usage_of(run: AnswerRun) -> Usage:
    return Usage(prompt_tokens=run.prompt_tokens, completion_tokens=run.completion_tokens,
                 total_tokens=run.prompt_tokens + run.completion_tokens)


def timings_of(run: AnswerRun) -> AnswerTimings:
    ms = lambda s: None if s is None else round(s * 1000, 3)  # noqa: E731
    return AnswerTimings(retrieval_ms=round(run.retrieval_s * 1000, 3), first_token_ms=ms(run.first_token_s),
                         generation_ms=ms(run.generation_s),
                         tokens_per_s=None if run.tokens_per_s is None else round(run.tokens_per_s, 2))


def answer_response(run: AnswerRun) -> AnswerResponse:
    return AnswerResponse(answer=run.text, grounded=run.grounded, citations=citation_outs(run),
                          passages=passage_outs(run), model=run.model, finish_reason=run.finish_reason,
                          usage=usage_of(run), timings=timings_of(run), mode=run.mode, notice=run.notice,
                          sentence=run.sentence, example=run.example)


def record(state: ServerState, run: AnswerRun) -> None:
    """Generation metrics of a generated answer (a read one generated nothing)."""
    if run.stream is not None and not isinstance(run.stream, ReaderStream) and not run.cancelled:
        state.metrics.observe_generation(run.completion_tokens, run.tokens_per_s or 0.0, run.first_token_s)
