"""Liveness, readiness and Prometheus metrics (no key needed: load balancers and scrapers call them)."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse, Response

from common.errors import RagkilnError
from server.deps import get_state
from server.readiness import generator_problems
from server.schemas import Health, Readiness
from server.state import ServerState

router = APIRouter(tags=["health"])
STATE = Depends(get_state)


@router.get("/healthz", response_model=Health)
def healthz() -> Health:
    """The process is alive."""
    return Health(status="ok")


@router.get("/readyz", response_model=Readiness, responses={503: {"model": Readiness}})
def readyz(state: ServerState = STATE) -> JSONResponse:
    """Ready when the index and the generator are loaded and no context is stuck (503 with the reasons otherwise)."""
    problems: list[str] = []
    index = None
    try:
        s = state.searcher()
        index = {"name": s.name, "chunks": s.size, "embedder": s.embedder.id, "query_precision": s.query_precision}
    except RagkilnError as e:
        problems.append(f"index: {e}")
    generator = None
    if state.generator is not None:
        generator = {"model": state.generator.model_id, **state.generator.runtime.health()}
    else:
        problems.append(f"generator: {state.generator_problem}")
    ner = None if state.enricher is None else getattr(state.enricher, "name", "loaded")
    if state.enricher is None and state.ner_problem:
        problems.append(f"ner: {state.ner_problem}")
    stuck = generator_problems(state)  # a context held past its timeout (issue 27)
    problems += stuck
    body = Readiness(ready=index is not None and generator is not None and not stuck, index=index, generator=generator,
                     ner=ner, problems=problems)
    return JSONResponse(body.model_dump(), status_code=200 if body.ready else 503)


@router.get("/metrics", response_class=Response, responses={200: {"content": {"text/plain": {}}}})
def metrics(state: ServerState = STATE) -> Response:
    """Prometheus text format: per-route counts and latency, index size, generation speed, queue depth."""
    try:
        state.searcher()  # refresh the index gauges
    except RagkilnError:
        pass
    return Response(state.metrics.render(), media_type=state.metrics.content_type)
