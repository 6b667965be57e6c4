"""No stuck slots (issue 27.1): a generation closed from any thread, at any point, frees its context.

The reported failure: a request timed out while a worker thread was inside the stream's `next()`;
the event loop's `run.close()` raised `ValueError: generator already executing` and the context
was never given back. A gate on the context's `detokenize` (called once per token, inside
`next()`) holds the generating thread there while another thread closes the stream.
"""

from __future__ import annotations

import asyncio
import gc
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

pytest.importorskip("llama_cpp")

from common.errors import Busy  # noqa: E402
from quantize.runtime import LlamaCppGenerator, SamplingParams  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from server_support import READ, LiveServer, base_workspace, copy_workspace  # noqa: E402,F401

SENTENCES = [
    "The committee approved the budget for the new research laboratory in March.",
    "Researchers measured the binding affinity of 42 compounds against the target protein.",
    "A retrieval-augmented model reads passages from an index before it answers a question.",
    "Quantization stores weights in fewer bits: Q8_0 keeps one scale per block of 32 values.",
]
LONG = SamplingParams(max_tokens=100, temperature=0.0, ignore_eos=True)  # far more tokens than one next()


@pytest.fixture(scope="module")
def tiny_gguf(tmp_path_factory) -> Path:
    """A tiny random Llama (real llama.cpp, meaningless text) as Q8_0, as tests/integration/test_quantize_gguf.py."""
    import torch

    from quantize.export import export_model
    from quantize.types import parse_types
    from trainer.lm.checkpoint import save_checkpoint
    from trainer.lm.model import ModelArgs, Transformer
    from trainer.lm.tokenizer import train_tokenizer

    tok = train_tokenizer(SENTENCES * 10, vocab_size=400)
    torch.manual_seed(0)
    args = ModelArgs(dim=32, n_layers=1, n_heads=2, n_kv_heads=1, vocab_size=tok.vocab_size, hidden_dim=64,
                     max_seq_len=256)
    ckpt = tmp_path_factory.mktemp("lm") / "tiny-lm"
    save_checkpoint(ckpt, Transformer(args), tok)
    return export_model(ckpt, tmp_path_factory.mktemp("gguf") / "out", parse_types("q8_0"), threads=1).path_of("q8_0")


@pytest.fixture
def make_gen(tiny_gguf):
    made: list[LlamaCppGenerator] = []

    def make(**kw) -> LlamaCppGenerator:
        kw = {"threads": 1, "pool_size": 1, "queue_size": 0, "acquire_timeout_s": 2.0, **kw}
        made.append(LlamaCppGenerator(tiny_gguf, **kw))
        return made[-1]

    yield make
    for g in made:
        g.close()


class Gate:
    """Wraps a callable; its `at`-th call (1-based) signals `entered` and waits for `release`."""

    def __init__(self, fn, at: int = 1) -> None:
        self.fn, self.at, self.calls = fn, at, 0
        self.entered, self.release = threading.Event(), threading.Event()

    def __call__(self, *a, **kw):
        self.calls += 1
        if self.calls == self.at:
            self.entered.set()
            self.release.wait(20)
        return self.fn(*a, **kw)


def gate_tokens(gen: LlamaCppGenerator, at: int = 1) -> Gate:
    """Hold the generating thread inside `next()` at its `at`-th token (every context of the pool)."""
    contexts = list(gen._free.queue)
    gate = Gate(contexts[0].detokenize, at)
    for llm in contexts:
        llm.detokenize = gate
    return gate


def assert_all_free(gen: LlamaCppGenerator) -> None:
    """Every context and admission slot is back: the pool admits and serves its full capacity."""
    deadline = time.time() + 5
    while gen.health()["busy"] and time.time() < deadline:
        time.sleep(0.01)
    assert gen.health()["busy"] == 0
    held = []
    try:
        for _ in range(gen.pool_size + gen.queue_size):
            held.append(gen.stream("The", SamplingParams(max_tokens=1)))  # Busy here: a leaked admission slot
        with pytest.raises(Busy):
            gen.stream("The", SamplingParams(max_tokens=1))
    finally:
        for s in held:
            s.close()
    assert gen.generate("The", SamplingParams(max_tokens=2, temperature=0.0)).tokens  # a leaked context: Busy


def test_closing_a_generation_another_thread_is_inside_frees_its_slot(make_gen):
    """The reported failure: thread A inside next(), thread B closes (ValueError before the fix)."""
    gen = make_gen()
    gate = gate_tokens(gen)
    s = gen.stream("The committee", LONG)
    got: dict[str, object] = {}

    def one_token() -> None:  # as the web request's worker: one next(), then its caller is gone
        try:
            got["piece"] = next(s, None)
        except BaseException as e:  # noqa: BLE001
            got["error"] = e

    a = threading.Thread(target=one_token)
    a.start()
    try:
        assert gate.entered.wait(10), "the generation never reached its first token"
        t0 = time.perf_counter()
        s.close()  # thread B, while A executes the generator
        assert time.perf_counter() - t0 < 1.0  # only flags it: never waits for the generation
        assert gen.health()["busy"] == 1  # A still holds the context until its token is done
    finally:
        gate.release.set()
        a.join(10)
    assert "error" not in got
    assert gen.health()["busy"] == 0  # freed by A after its token: no further next(), no GC needed
    assert s.cancelled and s.result is None
    with pytest.raises(StopIteration):
        next(s)
    s.close()  # idempotent
    assert_all_free(gen)


def test_a_stream_closed_before_its_first_token_never_takes_a_context(make_gen):
    gen = make_gen()
    s = gen.stream("The", LONG)
    s.close()
    with pytest.raises(StopIteration):  # before the fix it started anyway and its context was never returned
        next(s)
    assert_all_free(gen)


def test_closing_a_generation_queued_for_a_context_stops_its_wait(make_gen):
    gen = make_gen(queue_size=1, acquire_timeout_s=30.0)
    first = gen.stream("The", LONG)
    next(first)  # holds the only context
    queued = gen.stream("The", LONG)
    got: dict[str, object] = {}
    a = threading.Thread(target=lambda: got.setdefault("piece", next(queued, None)))
    a.start()
    time.sleep(0.2)  # A waits for the context inside next()
    assert a.is_alive()
    t0 = time.perf_counter()
    queued.close()
    a.join(5)
    assert not a.is_alive() and time.perf_counter() - t0 < 1.0  # not acquire_timeout_s later
    assert got["piece"] is None and queued.cancelled
    assert gen.health()["busy"] == 1
    first.close()
    assert_all_free(gen)


def test_closing_during_span_search_stops_it(make_gen, monkeypatch):
    import quantize.runtime as runtime

    gen = make_gen()
    gate = Gate(runtime.read_span_scores)
    monkeypatch.setattr(runtime, "read_span_scores", gate)
    source = tuple(gen.tokenize("The committee approved the budget for the new laboratory", add_bos=False))
    s = gen.stream([gen.bos_id, *source], SamplingParams(max_tokens=8, temperature=0.0, extract_from=source,
                                                         extract_search="best"))
    got: dict[str, object] = {}
    a = threading.Thread(target=lambda: got.setdefault("piece", next(s, None)))
    a.start()
    try:
        assert gate.entered.wait(10)
        s.close()
    finally:
        gate.release.set()
        a.join(10)
    assert got["piece"] is None and gate.calls == 1  # no row scored after the close
    assert_all_free(gen)


def test_an_abandoned_stream_frees_its_slot_when_collected(make_gen):
    gen = make_gen()
    s = gen.stream("The", LONG)
    next(s)
    assert gen.health()["busy"] == 1
    del s
    gc.collect()
    assert_all_free(gen)


def test_closes_from_many_threads_at_random_points_leak_nothing(make_gen):
    gen = make_gen(pool_size=2, queue_size=6, acquire_timeout_s=30.0)
    streams = [gen.stream("The committee", LONG) for _ in range(8)]
    errors: list[BaseException] = []

    def consume(s) -> None:
        try:
            for _ in s:
                pass
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    def closer(s, delay: float) -> None:
        time.sleep(delay)
        try:
            for _ in range(3):
                s.close()
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=consume, args=(s,)) for s in streams]
    threads += [threading.Thread(target=closer, args=(s, 0.002 * i)) for i, s in enumerate(streams)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert errors == [] and not any(t.is_alive() for t in threads)
    assert_all_free(gen)


def test_health_reports_a_context_held_past_the_timeout_and_readiness_says_why(make_gen):
    from server.readiness import generator_problems

    gen = make_gen(acquire_timeout_s=0.3)
    state = SimpleNamespace(generator=SimpleNamespace(runtime=gen))
    assert gen.health()["oldest_busy_s"] == 0 and generator_problems(state) == []
    s = gen.stream("The", LONG)
    next(s)
    assert generator_problems(state) == []  # busy, not stuck
    time.sleep(0.4)
    h = gen.health()
    assert h["stuck"] == 1 and h["oldest_busy_s"] >= 0.3
    (problem,) = generator_problems(state)
    assert "quantize.acquire_timeout_s" in problem and "busy" in problem
    s.close()
    assert gen.health()["stuck"] == 0 and generator_problems(state) == []
    assert generator_problems(SimpleNamespace(generator=None)) == []


# ---- the server's side: a run closed from the event loop while its worker is inside a token -----------------
class _Request:
    """Just what `finish_answer` reads: `receive()`, which says disconnect once `gone` is set."""

    def __init__(self) -> None:
        self.gone = asyncio.Event()

    async def receive(self) -> dict:
        await self.gone.wait()
        return {"type": "http.disconnect"}


def _run_of(stream):
    from server.answering import AnswerRun

    return AnswerRun("q", [], [], [], 0.0, "tiny", stream=stream)


def test_a_timed_out_answer_frees_its_context_without_raising(make_gen):
    """answer.py's non-streamed path cancelled by the timeout middleware (the log's traceback)."""
    from server.answering import finish_answer

    gen = make_gen()
    gate = gate_tokens(gen)
    run = _run_of(gen.stream("The committee", LONG))

    async def main() -> None:
        task = asyncio.ensure_future(finish_answer(run, _Request()))
        assert await asyncio.to_thread(gate.entered.wait, 10)
        task.cancel()  # as ServerMiddleware does at server.request_timeout_s
        with pytest.raises(asyncio.CancelledError):
            await task  # not ValueError: generator already executing

    try:
        asyncio.run(main())
    finally:
        gate.release.set()
    assert run.cancelled
    assert_all_free(gen)


def test_a_client_that_hangs_up_stops_its_answer(make_gen):
    from server.answering import finish_answer

    gen = make_gen()
    gate = gate_tokens(gen, at=3)
    run = _run_of(gen.stream("The committee", LONG))

    async def main() -> None:
        req = _Request()
        task = asyncio.ensure_future(finish_answer(run, req))
        assert await asyncio.to_thread(gate.entered.wait, 10)
        req.gone.set()
        await asyncio.sleep(0.1)
        gate.release.set()
        await asyncio.wait_for(task, 10)

    try:
        asyncio.run(main())
    finally:
        gate.release.set()
    assert run.cancelled and run.completion_tokens == 0
    assert_all_free(gen)


def test_a_cut_off_stream_closes_its_run_at_once(make_gen):
    """streaming_answer's body cancelled (Starlette on a disconnect) while the worker is inside a token:
    the body ends at once (no shielded wait) and the context is free right after that token."""
    from server.answering import streaming_answer

    gen = make_gen()
    gate = gate_tokens(gen, at=3)
    run = _run_of(gen.stream("The committee", LONG))
    response = streaming_answer(run, iter(run.pieces()))
    first: list[str] = []

    async def main() -> None:
        async def consume() -> None:
            async for event in response.body_iterator:
                first.append(event)

        task = asyncio.ensure_future(consume())
        assert await asyncio.to_thread(gate.entered.wait, 10)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(task, 1.0)  # not blocked by the worker still inside the gate
        assert gen.health()["busy"] == 1
        gate.release.set()
        await response.background()  # what Starlette runs after the body: closes again, harmlessly

    try:
        asyncio.run(main())
    finally:
        gate.release.set()
    assert first and run.cancelled
    assert_all_free(gen)


# ---- the target, against a live server: cut-off and concurrent streams leave nothing stuck ---------------------
@pytest.mark.slow
def test_after_cut_off_and_concurrent_streams_every_answer_comes_within_15s(base_workspace, tmp_path):  # noqa: F811
    """16 streamed /v1/answer requests cut off after their first event, then 8 at once cut off the same
    way; then 6 answers one after another must each be 200 within 15 s, and /readyz ready."""
    from concurrent.futures import ThreadPoolExecutor

    import httpx

    server = LiveServer(copy_workspace(base_workspace, tmp_path / "ws"))
    url = server.url + "/v1/answer"
    question = "How many volunteers did the vaccine trial enroll?"

    def cut_off(_: int = 0) -> int:
        body = {"question": question, "max_tokens": 200, "stream": True, "extractive": False}
        with httpx.Client(timeout=30) as c, c.stream("POST", url, json=body, headers=READ) as r:
            for chunk in r.iter_raw():  # leaving after the first event closes the connection
                if b"\n\n" in chunk:
                    break
            return r.status_code

    try:
        statuses = [cut_off() for _ in range(16)]
        with ThreadPoolExecutor(8) as pool:
            statuses += list(pool.map(cut_off, range(8)))
        assert statuses == [200] * 24
        for _ in range(6):
            t0 = time.perf_counter()
            r = httpx.post(url, json={"question": question, "max_tokens": 16}, headers=READ, timeout=15)
            assert r.status_code == 200, r.text
            assert time.perf_counter() - t0 < 15
            assert r.json()["usage"]["completion_tokens"] >= 1
        ready = httpx.get(server.url + "/readyz", timeout=15)
        assert ready.status_code == 200 and ready.json()["generator"]["stuck"] == 0, ready.text
    finally:
        server.stop()
