"""`ragkiln serve`: run the HTTP API (uvicorn) over the workspace."""

from __future__ import annotations

import json
import os
import sys

import typer

from common.settings import load_settings
from cli.app import app, overrides_of
from cli.output import handle_errors


@app.command()
@handle_errors
def serve(
    ctx: typer.Context,
    host: str = typer.Option(None, "--host", help="Address to bind (default 127.0.0.1; a public one needs API keys or --insecure)."),
    port: int = typer.Option(None, "--port", min=1, max=65535, help="Port (default 8000)."),
    workers: int = typer.Option(None, "--workers", min=1, max=64, help="Worker processes (default 1)."),
    insecure: bool = typer.Option(False, "--insecure", help="Allow a non-loopback --host without API keys."),
) -> None:
    """Serve search, answers, documents and OpenAI-compatible endpoints; docs at /docs, UI at /."""
    import uvicorn

    from server.app import SETTINGS_ENV, create_app
    from server.auth import KeyRing, bind_address

    settings = load_settings(overrides_of(ctx, server={"host": host, "port": port, "workers": workers}))
    cfg = settings.server
    bind, warning = bind_address(cfg.host, KeyRing.parse(cfg.api_keys), insecure)
    if warning:
        print(f"ragkiln: warning: {warning}", file=sys.stderr)
    print(f"ragkiln: serving {settings.home} on http://{bind}:{cfg.port} (docs at /docs)", file=sys.stderr)
    log_level = settings.log_level.lower()
    if cfg.workers > 1:
        os.environ[SETTINGS_ENV] = json.dumps(settings.model_dump(mode="json"))
        uvicorn.run("server.app:app_from_env", factory=True, host=bind, port=cfg.port, workers=cfg.workers,
                    log_level=log_level, access_log=False)
    else:
        uvicorn.run(create_app(settings), host=bind, port=cfg.port, log_level=log_level, access_log=False)
