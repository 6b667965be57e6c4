"""POST /v1/answer: a grounded answer with citations, as JSON or as Server-Sent Events."""

from __future__ import annotations

from collections.abc import Iterator

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool

from server.answering import (AnswerRun, GenOptions, answer_response, citation_outs, finish_answer, passage_outs,
                              record, start_answer, streaming_answer)
from server.deps import READ
from server.errors import sse_error
from server.querying import retrieve
from server.schemas import AnswerRequest, AnswerResponse, ErrorResponse
from server.sse import sse_event, sse_openapi
from server.state import ServerState

router = APIRouter(tags=["answer"])

_STREAM_DOC = sse_openapi(["token", "citations", "done", "error"],
                          "`event: token` {text} ..., then `event: citations` {citations, passages}, then `event: done` "
                          "{answer, grounded, model, finish_reason, usage, timings, mode, notice, sentence, example}; `event: "
                          "error` if generation fails. An extractive answer is read before the stream starts: one "
                          "`token` event holds the whole span, and `done` carries its `sentence` (null otherwise).")


@router.post("/v1/answer", response_model=AnswerResponse,
             responses={200: {"content": _STREAM_DOC}, 401: {"model": ErrorResponse}, 403: {"model": ErrorResponse},
                        404: {"model": ErrorResponse}, 422: {"model": ErrorResponse}, 429: {"model": ErrorResponse},
                        503: {"model": ErrorResponse}})
async def answer(req: AnswerRequest, request: Request, state: ServerState = READ):  # noqa: ANN201
    """Retrieve, answer from the relevant passages (the extractive reader's span and its sentence, with the code
    example a how-to answer's sentence introduces; a how-to span that names nothing is given as its whole sentence;
    or the GGUF model's own words), cite the supporting spans. When nothing relevant is found the answer says so
    (grounded: false) instead of inventing one."""
    if req.model is not None and not state.reads_for(req.model):  # an unknown model is 404 before any work
        state.require_generator(req.model)
    r = await retrieve(state, request.app.state.metadata_index, req.question, req.k, req.mode, req.filters)
    opts = GenOptions(max_tokens=req.max_tokens, temperature=req.temperature, extractive=req.extractive)
    run = await run_in_threadpool(start_answer, state, req.question, r.hits, r.seconds, opts, True, r.ended,
                                  req.model, (), (r.query_vec, r.query_embedder))
    if req.stream:
        return streaming_answer(run, _events(state, run))
    await finish_answer(run, request)  # a client that hangs up or a timeout stops the generation
    record(state, run)
    return answer_response(run)


def _events(state: ServerState, run: AnswerRun) -> Iterator[str]:
    try:
        for piece in run.pieces():
            yield sse_event("token", {"text": piece})
        if run.cancelled:  # closed mid-way: nobody is listening
            return
        record(state, run)
        yield sse_event("citations", {"citations": [c.model_dump() for c in citation_outs(run)],
                                      "passages": [p.model_dump() for p in passage_outs(run)]})
        done = answer_response(run).model_dump(exclude={"citations", "passages"})
        yield sse_event("done", done)
    except Exception as e:  # noqa: BLE001 - the status line is sent; report in-band
        yield sse_error(e)
    finally:
        run.close()
