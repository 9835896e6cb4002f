"""``create_app``: the Starlette app, and its route table, which is the index of the server."""

from __future__ import annotations

import re
import time

import uvicorn
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from ..admin import routes as admin
from ..failures.faults import protocol_class
from ..state.settings import Settings
from ..sts import cluster, endpoints, identity, signin
from ..sts.context import origin_of
from ..sts.context import sts_endpoint as sts
from ..sts.errors import StsError, internal_error, render_json
from ..sts.ids import RequestIds
from .runtime import Runtime

GET, POST, BOTH = ["GET"], ["POST"], ["GET", "POST"]
# POST-only STS endpoints take every method, so a wrong one gets Entra's AADSTS900561, not a bare 405;
# OPTIONS also carries browsers' CORS preflights (``sts.context.preflight``).
ANY = ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


def routes() -> list[BaseRoute]:
    """Paths exactly as Entra has them (entra-wire.md §1.2), then fakests' own under /_fakests/."""
    return [
        Mount("/_fakests", routes=admin.routes()),
        # The token endpoint first after /_fakests: Starlette tries routes in order, and no route below
        # matches a token path, so this only spares the busiest request a dozen regex matches.
        Route("/{tenant}/oauth2/v2.0/token", sts("token", endpoints.token), methods=ANY),
        Route("/{tenant}/oauth2/token", sts("token", endpoints.token), methods=ANY),
        Route("/error", sts("error", endpoints.error_lookup), methods=GET),
        Route("/devicelogin", _device_login_shortcut, methods=GET),
        Route("/common/discovery/instance", sts("instance_discovery", endpoints.instance_discovery), methods=GET),
        Route("/common/userrealm/{username}", sts("userrealm", endpoints.user_realm), methods=BOTH),
        Route("/common/oauth2/deviceauth", sts("device_login", signin.device_login, errors="page"), methods=BOTH),
        Route("/{tenant}/v2.0/.well-known/openid-configuration",
              sts("discovery", endpoints.openid_configuration), methods=GET),
        Route("/{tenant}/.well-known/openid-configuration",
              sts("discovery", endpoints.openid_configuration_v1), methods=GET),
        Route("/{tenant}/discovery/v2.0/keys", sts("jwks", endpoints.jwks), methods=GET),
        Route("/{tenant}/discovery/keys", sts("jwks", endpoints.jwks_v1), methods=GET),
        Route("/{tenant}/oauth2/v2.0/authorize", sts("authorize", signin.authorize, errors="page"), methods=BOTH),
        Route("/{tenant}/oauth2/authorize", sts("authorize", signin.authorize, errors="page"), methods=BOTH),
        Route("/{tenant}/oauth2/v2.0/devicecode", sts("devicecode", endpoints.devicecode), methods=ANY),
        Route("/{tenant}/oauth2/devicecode", sts("devicecode", endpoints.devicecode), methods=ANY),
        Route("/{tenant}/oauth2/v2.0/logout", sts("logout", signin.logout), methods=BOTH),
        Route("/{tenant}/oauth2/logout", sts("logout", signin.logout), methods=BOTH),
        *_identity_routes(identity.TLS_IDENTITY_PATHS),  # Service Fabric: HTTPS, pinned by the STS's certificate
        # The fake Kubernetes cluster's issuer (workload identity; sts/cluster.py), not Entra's.
        Route("/kubernetes/{cluster}/.well-known/openid-configuration", cluster.discovery, methods=GET),
        Route("/kubernetes/{cluster}/openid/v1/jwks", cluster.jwks, methods=GET),
    ]


def identity_routes() -> list[BaseRoute]:
    """The managed-identity endpoints (``sts/identity.py``), served on a plain-HTTP origin of their own, as
    Azure serves them: each path bare (the default sandbox) and under a tenant segment (that tenant's
    sandbox), so that a test's environment variables name its own sandbox."""
    return _identity_routes(identity.IDENTITY_PATHS)


def _identity_routes(paths: dict[str, str]) -> list[BaseRoute]:
    """Every bare path before any tenant one: ``/azureml/msi/token`` must not be App Service's
    ``/{tenant}/msi/token`` for a tenant named "azureml" (nor ``/arc/metadata/...`` IMDS's for "arc")."""
    endpoints = {name: sts(name, getattr(identity, name), shape=identity.ERROR_SHAPE) for name in paths}
    return [*(Route(path, endpoints[name], methods=ANY) for name, path in paths.items()),
            *(Route("/{tenant}" + path, endpoints[name], methods=ANY) for name, path in paths.items())]


async def _device_login_shortcut(request: Request) -> Response:
    """``/devicelogin`` (the short address people type): a redirect to the device login page."""
    return RedirectResponse("/common/oauth2/deviceauth", 302, headers=RequestIds.new(request.headers).headers())


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    ids = RequestIds.new(request.headers)
    if exc.status_code == 405 and not request.url.path.startswith("/_fakests/"):
        # A method an STS endpoint does not take: Entra's AADSTS900561, in the Entra error shape.
        allow = dict(exc.headers or {})
        error = StsError(900561, status=405, headers=allow, methods=allow.get("Allow", "GET"), method=request.method)
        return render_json(error, ids, time.time(), origin_of(request, request.app.state.runtime.settings.public_url))
    body = {"error": "not_found" if exc.status_code == 404 else "invalid_request",
            "error_description": f"{exc.status_code} {exc.detail}: {request.method} {request.url.path}",
            "trace_id": ids.trace_id, "correlation_id": ids.correlation_id}
    return JSONResponse(body, status_code=exc.status_code, headers=ids.headers())


async def _crash(request: Request, exc: Exception) -> Response:
    # Last resort for failures outside sts_endpoint (which has its own): Entra's 500, no traceback.
    # It sees the request as the server sent it, so it must not build ``request.url`` (see _AsciiQuery).
    ids = RequestIds.new(request.headers)
    scheme = request.scope.get("scheme", "http")
    return internal_error(ids, time.time(), f"{scheme}://{request.headers.get('host', '')}")


_NON_ASCII = re.compile(rb"[\x80-\xff]")


class _AsciiQuery:
    """Percent-encodes the raw query string's non-ASCII bytes, which uvicorn passes through: Starlette's
    ``request.url`` decodes the query as strict UTF-8 and raises on anything else (``?\xff``)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        query = scope.get("query_string", b"")
        if scope["type"] == "http" and not query.isascii():
            scope = {**scope, "query_string": _NON_ASCII.sub(lambda m: b"%%%02X" % m.group()[0], query)}
        await self.app(scope, receive, send)


SETTINGS_ENV = "FAKESTS_SETTINGS_JSON"  # serve --workers N: the parent's resolved settings, for its workers


def worker_app() -> Starlette:
    """The app of one ``fakests serve --workers N`` worker (uvicorn imports and calls this in each process).

    The parent resolved the settings (flags, environment, config file) and seeded the shared store with
    the default sandbox; a worker takes both as they are, so every worker serves the same thing, and
    shares grants, rule counters, the journal and sandbox changes through the store: the Redis one that
    ``store`` names (shared with other replicas too), else ``{state_dir}/shared.sqlite``."""
    import json
    import os

    from ..state.store import SharedStore
    from .runtime import SHARED_STORE, open_store

    settings = Settings.from_mapping(json.loads(os.environ[SETTINGS_ENV]), source=SETTINGS_ENV)
    if settings.log_requests:
        from .uvicorn import configure_logging

        configure_logging()
    store = open_store(settings) or SharedStore(settings.state_dir / SHARED_STORE,
                                                commit_turns=settings.journal_commit_turns)
    return create_app(runtime=Runtime.start(settings, store=store))


def create_identity_app(runtime: Runtime, sts_origin: str) -> Starlette:
    """The managed-identity app (``identity_routes``) on ``runtime``'s sandboxes; ``sts_origin`` is the STS
    whose issuer its tokens carry."""
    app = Starlette(routes=identity_routes(), middleware=[Middleware(_AsciiQuery)],
                    exception_handlers={HTTPException: _http_error, Exception: _crash})
    app.state.runtime = runtime
    app.state.sandboxes = runtime.sandboxes
    setattr(app.state, identity.STS_ORIGIN, sts_origin.rstrip("/"))
    return app


def identity_config(app: ASGIApp, host: str, port: int) -> uvicorn.Config:
    """The uvicorn config of a managed-identity server (``fakests serve``'s thread, ``FakeSTS.identity_url``):
    plain HTTP, with the same connection-fault protocol as the STS, so scripted faults break it too."""
    return uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False, lifespan="off",
                          server_header=False, http=protocol_class())


def create_app(settings: Settings | None = None, *, runtime: Runtime | None = None) -> Starlette:
    """The fakests ASGI app. Pass a ``Runtime`` to share keys and sandboxes with the caller."""
    runtime = runtime or Runtime.start(settings)
    app = Starlette(routes=routes(), middleware=[Middleware(_AsciiQuery)],
                    exception_handlers={HTTPException: _http_error, Exception: _crash})
    app.state.runtime = runtime
    app.state.sandboxes = runtime.sandboxes
    return app
