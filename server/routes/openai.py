"""OpenAI-compatible endpoints: /v1/chat/completions (RAG by default, streaming), /v1/embeddings, /v1/models."""

from __future__ import annotations

from collections.abc import Iterator

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool

from common.errors import InvalidInput, RagkilnError
from server import openai_compat as oai
from server.answering import (AnswerRun, GenOptions, citation_outs, finish_answer, record, start_answer,
                              streaming_answer, usage_of)
from server.deps import READ
from server.errors import sse_error
from server.querying import retrieve
from server.schemas import (ChatChoice, ChatChoiceMessage, ChatRequest, ChatResponse, EmbeddingItem,
                            EmbeddingsRequest, EmbeddingsResponse, EmbeddingUsage, ErrorResponse, ModelCard,
                            ModelList)
from server.sse import sse_data, sse_openapi
from server.state import ServerState

router = APIRouter(tags=["openai"], responses={401: {"model": ErrorResponse}, 403: {"model": ErrorResponse},
                                               404: {"model": ErrorResponse}, 422: {"model": ErrorResponse}})


def _generator_ids(state: ServerState) -> list[str]:
    if state.reader_only():
        return [oai.GENERATOR_ALIAS]
    return [*state.generator_names(), oai.GENERATOR_ALIAS] if state.generator else []


def _reader_card(state: ServerState) -> list[ModelCard]:
    """With no model in the workspace the reader answers under the default's alias: extractive only."""
    if not state.reader_only():
        return []
    return [ModelCard(id=oai.GENERATOR_ALIAS, object="model", created=oai.now(), owned_by="ragkiln",
                      kind="generator", format="ragkiln", generative=False,
                      gate="no language model in this workspace: answers are the extractive reader's spans")]


def _embedder_ids(state: ServerState) -> list[str]:
    e = state.searcher().embedder
    return [e.name, e.id]


@router.get("/v1/models", response_model=ModelList)
def models(state: ServerState = READ) -> ModelList:
    """The generator (answers, chat) and the index's embedder (embeddings)."""
    cards = [ModelCard(id=g.model_id, object="model", created=oai.now(), owned_by="ragkiln", kind="generator",
                       format=g.kind, generative=g.generative, gate=g.gate or None) for g in state.all_generators()]
    cards += _reader_card(state)
    try:
        e = state.searcher().embedder
        cards.append(ModelCard(id=e.name, object="model", created=oai.now(), owned_by="ragkiln", kind="embedder"))
    except RagkilnError:  # no index yet: no embedder to list
        pass
    return ModelList(object="list", data=cards)


@router.post("/v1/chat/completions", response_model=ChatResponse,
             responses={200: {"content": sse_openapi(["message"], "With `stream: true`: one `data:` line per chat.completion.chunk "
                                                       "(JSON), then `data: [DONE]`.")},
                        429: {"model": ErrorResponse}, 503: {"model": ErrorResponse}})
async def chat_completions(req: ChatRequest, request: Request, state: ServerState = READ):  # noqa: ANN201
    """Chat completion answered over the index (`rag: false` asks the model without passages)."""
    if not state.reader_only():
        state.require_generator()  # none loaded: 503 with the fix
    name = oai.check_model(req.model, _generator_ids(state), "generator")
    gen = None if state.reads_for(name) else state.require_generator(
        None if name.lower() == oai.GENERATOR_ALIAS else name)
    gen_id = gen.model_id if gen is not None else None  # None: the reader answers
    model_id = gen_id or oai.GENERATOR_ALIAS
    question = oai.chat_question(req.messages)
    hits, took, ended = [], 0.0, None
    if req.rag:
        r = await retrieve(state, request.app.state.metadata_index, question, req.k, "hybrid", req.filters)
        hits, took, ended = r.hits, r.seconds, r.ended
    opts = GenOptions(max_tokens=req.max_completion_tokens or req.max_tokens or 128,
                      temperature=req.temperature if req.temperature is not None else 0.0,
                      top_p=req.top_p if req.top_p is not None else 1.0, stop=oai.stop_strings(req.stop),
                      seed=req.seed, extractive=None if gen is None else False)  # no model: the reader's span
    run = await run_in_threadpool(start_answer, state, question, hits, took, opts, req.rag, ended, gen_id,
                                  oai.chat_history(req.messages))
    cid, created = oai.completion_id(), oai.now()
    if req.stream:
        usage = bool(req.stream_options and req.stream_options.include_usage)
        return streaming_answer(run, _chunks(state, run, cid, created, model_id, usage))
    await finish_answer(run, request)  # a client that hangs up or a timeout stops the generation
    record(state, run)
    return ChatResponse(id=cid, object="chat.completion", created=created, model=model_id,
                        choices=[ChatChoice(index=0, message=ChatChoiceMessage(role="assistant", content=run.text),
                                            finish_reason=run.finish_reason)],
                        usage=usage_of(run), citations=citation_outs(run), mode=run.mode if run.stream else None,
                        notice=run.notice)


def _chunks(state: ServerState, run: AnswerRun, cid: str, created: int, model: str, with_usage: bool) -> Iterator[str]:
    try:
        yield sse_data(oai.chat_chunk(cid, created, model, {"role": "assistant", "content": ""}, None))
        for piece in run.pieces():
            yield sse_data(oai.chat_chunk(cid, created, model, {"content": piece}, None))
        if run.cancelled:  # closed mid-way: nobody is listening
            return
        record(state, run)
        yield sse_data(oai.chat_chunk(cid, created, model, {}, run.finish_reason,
                                      extra=oai.ragkiln_extras([c.model_dump() for c in citation_outs(run)],
                                                               run.mode if run.stream else None, run.notice)))
        if with_usage:
            yield sse_data(oai.chat_chunk(cid, created, model, {}, None, usage_of(run).model_dump()))
        yield sse_data("[DONE]")
    except Exception as e:  # noqa: BLE001 - the status line is sent; report in-band
        yield sse_error(e)
    finally:
        run.close()


@router.post("/v1/embeddings", response_model=EmbeddingsResponse)
async def embeddings(req: EmbeddingsRequest, state: ServerState = READ) -> EmbeddingsResponse:
    """Embeddings from the index's own embedder (L2-normalised)."""
    embedder = state.searcher().embedder
    oai.check_model(req.model, _embedder_ids(state), "embedding")
    texts = oai.embedding_inputs(req.input, state.settings.server.max_batch_inputs)
    if req.dimensions is not None and req.dimensions != embedder.dim:
        raise InvalidInput(f"dimensions: {embedder.name} has {embedder.dim} dimensions, not {req.dimensions}")
    vecs = await run_in_threadpool(embedder.encode, texts, False)
    tokens = await run_in_threadpool(lambda: sum(len(starts) for starts, _ in embedder.token_spans(texts)))
    return EmbeddingsResponse(object="list", model=embedder.name, usage=EmbeddingUsage(prompt_tokens=tokens,
                                                                                        total_tokens=tokens),
                              data=[EmbeddingItem(object="embedding", index=i,
                                                  embedding=oai.encode_vector(v, req.encoding_format))
                                    for i, v in enumerate(vecs)])
