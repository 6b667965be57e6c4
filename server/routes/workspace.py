"""GET /v1/workspace: what the served workspace holds and what to try (the web page's welcome panel)."""

from __future__ import annotations

from dataclasses import asdict

from fastapi import APIRouter, Depends, Request

from server.deps import READ, only_query
from server.schemas import ErrorResponse, WorkspaceResponse
from server.state import ServerState

router = APIRouter(tags=["workspace"], responses={401: {"model": ErrorResponse}, 403: {"model": ErrorResponse}})


@router.get("/v1/workspace", response_model=WorkspaceResponse, responses={422: {"model": ErrorResponse}},
            dependencies=[Depends(only_query())])
def workspace(request: Request, state: ServerState = READ) -> WorkspaceResponse:
    """Documents, chunks and entities of the active corpus, the models served (embedder, NER, GGUF
    generator and the quantization types exported), and example queries taken from the corpus."""
    return WorkspaceResponse.model_validate(asdict(request.app.state.workspace_info.describe(state)))
