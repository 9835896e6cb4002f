# Copied unchanged (below this header) from the project's shared reference ../shared/bench/floor_app.py, our own
# performance floor (see ../shared/bench/README.md for its published figures). Keep the two in step.
"""Physical-floor Starlette apps for the fake-Entra-STS performance anchors.

Routes (all JSON):
  GET  /health                                   -> {"status": "ok"}
  GET  /hello                                    -> {"hello": "world"}
  GET  /mint/rs256                               -> two RS256 JWTs (2048-bit key), Entra-shaped claims
  GET  /mint/es256                               -> two ES256 JWTs (P-256 key)
  POST /{tenant}/oauth2/v2.0/token               -> form-parsed client_credentials request,
                                                    one RS256 access token (Entra v2 response shape)
  GET  /{tenant}/v2.0/.well-known/openid-configuration
  GET  /{tenant}/discovery/v2.0/keys             -> JWKS of the RS256 key

Keys are generated once at import time unless FLOOR_KEYS=0 (then only
/health and /hello work): set FLOOR_KEYS=0 for the "bare" start-up figure.

Run: uvicorn floor_app:app --host 127.0.0.1 --port 18001 --no-access-log
"""

from __future__ import annotations

import os
import time
import uuid

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

KEYS = os.environ.get("FLOOR_KEYS", "1") != "0"

if KEYS:
    import jwt
    from cryptography.hazmat.primitives.asymmetric import ec, rsa
    from jwt.algorithms import RSAAlgorithm

    RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    EC_KEY = ec.generate_private_key(ec.SECP256R1())
    KID_RSA = "floor-rsa-1"
    KID_EC = "floor-ec-1"
    _jwk = RSAAlgorithm.to_jwk(RSA_KEY.public_key(), as_dict=True)
    JWKS = {"keys": [{**_jwk, "kid": KID_RSA, "use": "sig", "alg": "RS256"}]}

TENANT = "00000000-0000-0000-0000-000000000001"
CLIENT = "11111111-1111-1111-1111-111111111111"


def _claims(kind: str, now: int, aud: str) -> dict:
    base = {
        "aud": aud,
        "iss": f"https://login.microsoftonline.com/{TENANT}/v2.0",
        "iat": now,
        "nbf": now,
        "exp": now + 3600,
        "aio": "E2RgYJg0/fake+aio==",
        "azp": CLIENT,
        "azpacr": "1",
        "oid": "22222222-2222-2222-2222-222222222222",
        "rh": "0.AAAA-fake-rh.",
        "sub": "22222222-2222-2222-2222-222222222222",
        "tid": TENANT,
        "uti": uuid.uuid4().hex[:22],
        "ver": "2.0",
    }
    if kind == "id":
        base.update({"name": "Test User", "preferred_username": "user@example.test", "nonce": "n-0S6_WzA2Mj"})
    else:
        base.update({"roles": ["Data.Read"], "idtyp": "app"})
    return base


def _mint_rs(claims: dict) -> str:
    return jwt.encode(claims, RSA_KEY, algorithm="RS256", headers={"kid": KID_RSA, "typ": "JWT"})


def _mint_es(claims: dict) -> str:
    return jwt.encode(claims, EC_KEY, algorithm="ES256", headers={"kid": KID_EC, "typ": "JWT"})


async def health(request: Request) -> JSONResponse:
    return JSONResponse({"status": "ok"})


async def hello(request: Request) -> JSONResponse:
    return JSONResponse({"hello": "world"})


def _two(mint) -> dict:
    now = int(time.time())
    return {
        "token_type": "Bearer",
        "expires_in": 3599,
        "ext_expires_in": 3599,
        "access_token": mint(_claims("at", now, "api://floor")),
        "id_token": mint(_claims("id", now, CLIENT)),
    }


async def mint_rs256(request: Request) -> JSONResponse:
    return JSONResponse(_two(_mint_rs))


async def mint_es256(request: Request) -> JSONResponse:
    return JSONResponse(_two(_mint_es))


async def token(request: Request) -> JSONResponse:
    form = await request.form()
    if form.get("grant_type") != "client_credentials":
        return JSONResponse({"error": "unsupported_grant_type"}, status_code=400)
    scope = str(form.get("scope") or "api://floor/.default")
    aud = scope.rsplit("/.default", 1)[0]
    now = int(time.time())
    return JSONResponse(
        {
            "token_type": "Bearer",
            "expires_in": 3599,
            "ext_expires_in": 3599,
            "access_token": _mint_rs(_claims("at", now, aud)),
        }
    )


async def openid_configuration(request: Request) -> JSONResponse:
    tenant = request.path_params["tenant"]
    base = str(request.base_url).rstrip("/")
    return JSONResponse(
        {
            "issuer": f"{base}/{tenant}/v2.0",
            "authorization_endpoint": f"{base}/{tenant}/oauth2/v2.0/authorize",
            "token_endpoint": f"{base}/{tenant}/oauth2/v2.0/token",
            "jwks_uri": f"{base}/{tenant}/discovery/v2.0/keys",
            "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
            "subject_types_supported": ["pairwise"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt", "client_secret_basic"],
            "tenant_region_scope": "EU",
        }
    )


async def jwks(request: Request) -> JSONResponse:
    return JSONResponse(JWKS)


app = Starlette(
    routes=[
        Route("/health", health),
        Route("/hello", hello),
        Route("/mint/rs256", mint_rs256),
        Route("/mint/es256", mint_es256),
        Route("/{tenant}/oauth2/v2.0/token", token, methods=["POST"]),
        Route("/{tenant}/v2.0/.well-known/openid-configuration", openid_configuration),
        Route("/{tenant}/discovery/v2.0/keys", jwks),
    ]
)
