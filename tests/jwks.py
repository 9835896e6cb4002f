"""Verify a token the way a resource server would: against the JWKS fakests serves."""

from __future__ import annotations

from typing import Any

import jwt
import requests


def verify(token: str, session: requests.Session, authority: str, audience: str, *,
           leeway: float = 0) -> dict[str, Any]:
    """Check signature (JWKS from the discovery document's ``jwks_uri``), ``iss`` equal to the
    discovery issuer (``{tenantid}`` filled from ``tid``), ``aud`` and ``exp``. v1 tokens are checked
    against the v1 discovery document, as a v1 resource would. ``leeway``: seconds of clock skew allowed,
    for tokens issued on a sandbox clock moved ahead of the real one."""
    unverified = jwt.decode(token, options={"verify_signature": False})
    v1 = unverified.get("ver") == "1.0"
    path = "/.well-known/openid-configuration" if v1 else "/v2.0/.well-known/openid-configuration"
    discovery = session.get(authority + path)
    discovery.raise_for_status()
    doc = discovery.json()
    keys = jwt.PyJWKSet.from_dict(session.get(doc["jwks_uri"]).json())
    kid = jwt.get_unverified_header(token)["kid"]
    key = next(k for k in keys.keys if k.key_id == kid)
    issuer = doc["issuer"].replace("{tenantid}", unverified["tid"])
    return jwt.decode(token, key.key, algorithms=["RS256"], audience=audience, issuer=issuer, leeway=leeway,
                      options={"require": ["exp", "iat", "nbf", "iss", "aud"]})
