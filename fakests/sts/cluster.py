"""The fake Kubernetes cluster's OIDC issuer on the wire: its discovery document and JWKS.

kube-apiserver serves ``{issuer}/.well-known/openid-configuration`` and ``/openid/v1/jwks`` (Kubernetes
"Service account issuer discovery"); fakests serves the same two documents under each cluster's issuer,
``{origin}/kubernetes/{cluster}`` (``state/kubernetes.py``), so a verifier that fetches them, as Entra does,
finds them. They belong to the cluster, not to Entra: no tenant, no sandbox, no journal.
"""

from __future__ import annotations

import time

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ..state import kubernetes
from .context import origin_of

# kube-apiserver answers both with public caching (pkg/serviceaccount/openidmetadata.go: max-age=3600).
_HEADERS = {"Cache-Control": "public, max-age=3600"}


def _issuer(request: Request) -> str | None:
    cluster = request.path_params["cluster"]
    if not kubernetes.CLUSTER_NAME.match(cluster):
        return None
    return kubernetes.issuer_url(origin_of(request, request.app.state.sandboxes.settings.public_url), cluster)


async def discovery(request: Request) -> Response:
    """``/kubernetes/{cluster}/.well-known/openid-configuration``."""
    issuer = _issuer(request)
    if issuer is None:
        return JSONResponse({"error": "not_found"}, status_code=404)
    return JSONResponse(kubernetes.discovery(issuer), headers=_HEADERS)


async def jwks(request: Request) -> Response:
    """``/kubernetes/{cluster}/openid/v1/jwks``: the public key every fake cluster signs with."""
    if _issuer(request) is None:
        return JSONResponse({"error": "not_found"}, status_code=404)
    return JSONResponse(request.app.state.sandboxes.clusters.jwks(time.time()), headers=_HEADERS)
