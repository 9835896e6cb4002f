"""The admin REST API under ``/_fakests/``: health, sandboxes, directory, journal, clock, keys."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route


async def health(request: Request) -> Response:
    """Cheap liveness probe for healthchecks (no sandbox, no crypto)."""
    return JSONResponse({"status": "ok"})


def routes() -> list[BaseRoute]:
    return [Route("/health", health, methods=["GET"])]
