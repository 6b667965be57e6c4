"""The build report (`ragkiln build` writes it into the workspace), served as static files."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse

from common.errors import NotFound
from server.deps import READ
from server.schemas import ErrorResponse
from server.state import ServerState

router = APIRouter(tags=["report"])


def _report_dir(state: ServerState) -> Path:
    return Path(state.settings.home).expanduser().resolve() / "report"


@router.get("/report", response_class=FileResponse, responses={404: {"model": ErrorResponse}})
def report(state: ServerState = READ) -> FileResponse:
    """The HTML report of the last `ragkiln build` in this workspace."""
    path = _report_dir(state) / "report.html"
    if not path.is_file():
        raise NotFound("no build report in this workspace: run `ragkiln build CORPUS` first")
    return FileResponse(path, media_type="text/html")


@router.get("/report/{name}", response_class=FileResponse, responses={404: {"model": ErrorResponse}})
def report_asset(name: str, state: ServerState = READ) -> FileResponse:
    """A figure or the Markdown twin of the report (file names only, never a path)."""
    root = _report_dir(state)
    path = (root / name).resolve()
    if "/" in name or path.parent != root or not path.is_file() or path.suffix not in (".png", ".md", ".html"):
        raise NotFound(f"no report file {name!r}")
    return FileResponse(path)
