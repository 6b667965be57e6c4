"""Liveness, readiness and Prometheus metrics (no key needed: load balancers and scrapers call them)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query
from fastapi.responses import JSONResponse, Response

from common.errors import RagkilnError
from server.deps import get_state, only_query
from server.readiness import Need, capabilities, needed
from server.schemas import CapabilityOut, Health, Readiness
from server.state import ServerState

router = APIRouter(tags=["health"])
STATE = Depends(get_state)


@router.get("/healthz", response_model=Health)
def healthz() -> Health:
    """The process is alive."""
    return Health(status="ok")


@router.get("/readyz", response_model=Readiness, responses={503: {"model": Readiness}},
            dependencies=[Depends(only_query("need"))])
def readyz(need: Need = Query("deployment", description="deployment (what this server serves), search or answers"),
           state: ServerState = STATE) -> JSONResponse:
    """Ready (200) when the capabilities asked for are: search as soon as the index is loaded, answers when
    a generator is loaded with no context stuck (or, with no model in the workspace yet, when the index is:
    the reader answers); 503 with the reasons otherwise."""
    index, index_problem = None, None
    try:
        s = state.searcher()
        index = {"name": s.name, "chunks": s.size, "embedder": s.embedder.id, "query_precision": s.query_precision}
    except RagkilnError as e:
        index_problem = str(e)
    generator = None
    if state.generator is not None:
        generator = {"model": state.generator.model_id, **state.generator.runtime.health()}
    ner = None if state.enricher is None else getattr(state.enricher, "name", "loaded")
    caps = capabilities(state, index_problem)
    wanted = needed(state, need)
    problems = [p for name in wanted for p in caps[name].problems]
    if state.enricher is None and state.ner_problem:
        problems.append(f"ner: {state.ner_problem}")  # reported, never blocking: search works without entities
    body = Readiness(ready=all(caps[n].ready for n in wanted), need=wanted, index=index, generator=generator, ner=ner,
                     capabilities={n: CapabilityOut(ready=c.ready, problems=c.problems) for n, c in caps.items()},
                     problems=list(dict.fromkeys(problems)))
    return JSONResponse(body.model_dump(), status_code=200 if body.ready else 503)


@router.get("/metrics", response_class=Response, responses={200: {"content": {"text/plain": {}}}})
def metrics(state: ServerState = STATE) -> Response:
    """Prometheus text format: per-route counts and latency, index size, generation speed, queue depth."""
    try:
        state.searcher()  # refresh the index gauges
    except RagkilnError:
        pass
    return Response(state.metrics.render(), media_type=state.metrics.content_type)
