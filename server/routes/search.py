"""POST /v1/search and GET /v1/entities."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query, Request

from ner.filters import list_entities
from server.deps import READ, only_query
from server.querying import retrieve, search_response
from server.schemas import EntitiesResponse, ErrorResponse, SearchRequest, SearchResponse
from server.state import ServerState

router = APIRouter(tags=["search"], responses={401: {"model": ErrorResponse}, 403: {"model": ErrorResponse}})


@router.post("/v1/search", response_model=SearchResponse,
             responses={404: {"model": ErrorResponse}, 422: {"model": ErrorResponse}})
async def search(req: SearchRequest, request: Request, state: ServerState = READ) -> SearchResponse:
    """Hybrid (or dense / BM25) search; filters restrict retrieval to chunks with the entities or
    document metadata given; hits carry their entities, facets count them."""
    r = await retrieve(state, request.app.state.metadata_index, req.query, req.k, req.mode, req.filters)
    return search_response(req.query, req.mode, r)


@router.get("/v1/entities", response_model=EntitiesResponse, responses={422: {"model": ErrorResponse}},
            dependencies=[Depends(only_query("label", "top"))])
def entities(label: str | None = Query(None, min_length=1, max_length=100),
             top: int = Query(50, ge=1, le=1000), state: ServerState = READ) -> EntitiesResponse:
    """Entity labels and values of the active corpus with their chunk counts, most frequent first."""
    return EntitiesResponse(**list_entities(state.workspace.store, label=label, top=top))
