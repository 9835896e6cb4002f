"""A fake Kubernetes cluster's OIDC issuer: the service-account tokens that workload identity exchanges.

On AKS (and any cluster with service-account issuer discovery) the API server signs projected
service-account tokens and publishes ``{issuer}/.well-known/openid-configuration`` and a JWKS
(kubernetes.io/docs/reference/access-authn-authz/service-accounts-admin, "Service account issuer
discovery"); Entra fetches them to check a ``client_assertion`` that a federated identity credential
trusts. fakests plays the cluster too: its issuer is ``{fakests origin}/kubernetes/{cluster}``, served
by fakests itself, so no second server is needed and a token's ``iss`` is a URL that really answers.
Every cluster name shares one RSA key, kept in ``{state_dir}/kubernetes/`` like the STS's own keys,
and the STS checks assertions from these issuers against it directly (no HTTP round trip to itself).
"""

from __future__ import annotations

import re
import uuid
from typing import Any
from urllib.parse import urlsplit

from .directory import WORKLOAD_AUDIENCE
from .keys import KeySet, SigningKey

DEFAULT_CLUSTER = "fakests"
ISSUER_PREFIX = "/kubernetes/"
DEFAULT_ISSUER_PATH = ISSUER_PREFIX + DEFAULT_CLUSTER
DEFAULT_NAMESPACE = "default"
DEFAULT_SERVICE_ACCOUNT = "workload"
TOKEN_LIFETIME = 3600  # what AKS's webhook projects (serviceAccountToken expirationSeconds: 3600)
CLUSTER_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")  # a DNS label, as cluster names are
_ISSUER_PATH = re.compile(r"^/kubernetes/([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)/?$")


def issuer_url(origin: str, cluster: str = DEFAULT_CLUSTER) -> str:
    """The issuer of ``cluster``'s service-account tokens on fakests at ``origin``."""
    if not CLUSTER_NAME.match(cluster):
        raise ValueError(f"a cluster name is a DNS label (a-z, 0-9, '-'), got {cluster!r}")
    return f"{origin.rstrip('/')}{ISSUER_PREFIX}{cluster}"


def cluster_of(issuer: str) -> str | None:
    """The cluster an issuer URL names when it is one fakests publishes (``https://host/kubernetes/NAME``),
    whatever the host: fakests answers on several origins (its TLS port, ``public_url``, Entra's own hosts
    under ``intercept``). None: an issuer fakests does not publish."""
    try:
        parts = urlsplit(issuer)
    except ValueError:
        return None
    m = _ISSUER_PATH.match(parts.path) if parts.scheme == "https" and parts.netloc and not parts.query else None
    return m.group(1) if m else None


def subject(namespace: str, service_account: str) -> str:
    """A service account's ``sub``, as Kubernetes writes it."""
    return f"system:serviceaccount:{namespace}:{service_account}"


def discovery(issuer: str) -> dict[str, Any]:
    """The issuer's OIDC discovery document, field for field what kube-apiserver serves."""
    return {"issuer": issuer, "jwks_uri": f"{issuer}/openid/v1/jwks", "response_types_supported": ["id_token"],
            "subject_types_supported": ["public"], "id_token_signing_alg_values_supported": ["RS256"]}


def _jwk(key: SigningKey) -> dict[str, Any]:
    """The key as kube-apiserver publishes its keys: the STS's JWK without ``x5t``/``x5c``, with ``alg``."""
    entry = key.jwk()
    return {"use": "sig", "kty": "RSA", "kid": entry["kid"], "alg": "RS256", "n": entry["n"], "e": entry["e"]}


class ClusterIssuer:
    """The signing key of every fake cluster, made on first use (or loaded from the state directory)."""

    def __init__(self, keys: KeySet | None = None) -> None:
        self._keys = keys

    @property
    def keys(self) -> KeySet:
        if self._keys is None:  # about 50 ms: only for a registry that is ever asked
            self._keys = KeySet.load_or_create(None)
        return self._keys

    def jwks(self, now: float) -> dict[str, Any]:
        return {"keys": [_jwk(k) for k in self.keys.published(now)]}

    def find(self, kid: str) -> SigningKey | None:
        return self.keys.find(kid)

    def claims(self, issuer: str, *, namespace: str = DEFAULT_NAMESPACE,
               service_account: str = DEFAULT_SERVICE_ACCOUNT, audiences: list[str] | None = None,
               now: float, lifetime: float = TOKEN_LIFETIME, pod: str | None = None) -> dict[str, Any]:
        """A projected service-account token's claims: ``aud`` a list, ``sub`` the service account, and
        the ``kubernetes.io`` claim naming namespace, service account and pod with their uids."""
        issued = int(now)
        kube: dict[str, Any] = {"namespace": namespace,
                                "serviceaccount": {"name": service_account, "uid": str(uuid.uuid4())}}
        if pod is not None:
            kube["pod"] = {"name": pod, "uid": str(uuid.uuid4())}
        return {"aud": list(audiences or [WORKLOAD_AUDIENCE]), "exp": issued + int(lifetime), "iat": issued,
                "iss": issuer, "jti": str(uuid.uuid4()), "kubernetes.io": kube, "nbf": issued,
                "sub": subject(namespace, service_account)}

    def token(self, issuer: str, **kwargs: Any) -> str:
        """A signed service-account token (RS256, ``kid``), as the kubelet projects into the pod."""
        return self.keys.sign(self.claims(issuer, **kwargs))
