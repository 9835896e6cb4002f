"""The peers that ``bench/throughput.py --only peers`` measures beside the floor and fakests.

- oauth2-mock-server (npm, axa-group), run by ``bench/peers/oauth2-mock-server.mjs`` on Node: the same
  client-credentials form, POSTed to its ``/token``; it signs one RS256 access token (2048-bit key).
- oidc-provider-mock (PyPI, geigerzaehler): a Flask app. It has no client-credentials grant (only
  authorization_code and refresh_token, and its refresh grant signs nothing), so the request measured is an
  authorization-code redemption: one fresh code per request, minted beforehand through its authorize endpoint
  (untimed), redeemed at ``/oauth2/token`` for an RS256 id_token (2048-bit key) plus opaque access and refresh
  tokens. Served as its own CLI serves it (uvicorn, ``--interface wsgi``), with the access log off like the
  floor's. Nearly all of that request's CPU is authlib/joserfc importing the private JWK (which validates the
  RSA key) for every id_token. One more row, for information: its refresh_token grant (one refresh token,
  reusable, client_secret_basic), which signs nothing and answers an opaque access token: what its Flask and
  authlib stack costs without the signature.

``Peer.check`` fetches one token with urllib before any measuring and checks it: HTTP 200, a JWT whose header
says RS256, a signature that verifies against the peer's JWKS with a 2048-bit RSA key (for the refresh row:
200 and a Bearer access token). A peer that answered 400 quickly would otherwise make a fast, lying row.
"""

from __future__ import annotations

import base64
import http.client
import importlib.metadata
import importlib.util
import json
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit

import jwt
from _proc import HOST, Server, free_port

BENCH_DIR = Path(__file__).resolve().parent
PEERS_DIR = BENCH_DIR / "peers"
NPM_INSTALL = "npm ci --prefix bench/peers"
PIP_INSTALL = "pip install -e '.[bench]'"
OIDC_CLIENT, OIDC_SECRET, OIDC_USER = "bench-client", "bench-secret", "bench-user"
OIDC_REDIRECT = "http://127.0.0.1/callback"
WELL_KNOWN = "/.well-known/openid-configuration"


@dataclass
class Peer:
    """How to start one peer, what to POST to it, and how to check once that it really issues a token."""

    name: str  # the row's name, with versions
    request: str  # what one measured request is, in a few words
    make: Callable[[int], Server]  # server pinned to the given CPU
    path: str
    form: str  # the body of every request (``mint`` unset)
    token_field: str | None  # the response field holding the JWT that check() inspects (None: no JWT)
    mint: Callable[[Server, int], list[str]] | None = None  # one-use bodies, one per request (untimed)
    setup: Callable[[Server], str] | None = None  # once the server is up: the form to use from then on
    headers: dict[str, str] = field(default_factory=dict)  # extra request headers

    def one_body(self, server: Server) -> str:
        return self.mint(server, 1)[0] if self.mint is not None else self.form

    def check(self, server: Server) -> str:
        """Run ``setup``, fetch one token and check it (raises RuntimeError if wrong); a short description."""
        if self.setup is not None:
            self.form = self.setup(server)
        base = f"http://{HOST}:{server.port}"
        status, body = _post(base + self.path, self.one_body(server), self.headers)
        if self.token_field is None:
            if status != 200 or body.get("token_type") != "Bearer" or not body.get("access_token"):
                raise RuntimeError(f"{self.name}: {status}, no Bearer access token: {str(body)[:300]}")
            return "200, opaque Bearer access token (no JWT: this grant signs nothing)"
        token = body.get(self.token_field)
        if status != 200 or not isinstance(token, str) or token.count(".") != 2:
            raise RuntimeError(f"{self.name}: {status}, no JWT in {self.token_field!r}: {str(body)[:300]}")
        header = jwt.get_unverified_header(token)
        if header.get("alg") != "RS256":
            raise RuntimeError(f"{self.name}: token header {header}, not RS256")
        with urllib.request.urlopen(base + WELL_KNOWN, timeout=10) as resp:
            jwks_uri = urlsplit(json.loads(resp.read())["jwks_uri"])
        with urllib.request.urlopen(f"{base}{jwks_uri.path}", timeout=10) as resp:
            keys = json.loads(resp.read())["keys"]
        jwk = next((k for k in keys if k.get("kid") == header.get("kid")), keys[0] if len(keys) == 1 else None)
        if jwk is None:
            raise RuntimeError(f"{self.name}: no key {header.get('kid')!r} in its JWKS")
        bits = len(base64.urlsafe_b64decode(jwk["n"] + "==")) * 8
        jwt.decode(token, jwt.PyJWK(jwk, algorithm="RS256").key, algorithms=["RS256"],
                   options={"verify_aud": False, "verify_iss": False})
        if bits != 2048:
            raise RuntimeError(f"{self.name}: a {bits}-bit RSA key, not 2048")
        return f"200, {self.token_field}: RS256 JWT, signature verified, RSA-{bits}"


def _post(url: str, form: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, object]]:
    req = urllib.request.Request(url, data=form.encode(), method="POST",
                                 headers={"Content-Type": "application/x-www-form-urlencoded", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            status, body = resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as e:
        raise RuntimeError(f"{url} answered {e.code}: {e.read()[:300]!r}") from e
    if not isinstance(body, dict):
        raise RuntimeError(f"{url}: not a JSON object: {str(body)[:300]}")
    return status, body


# --- oauth2-mock-server ---------------------------------------------------------------------------------
def _node_version() -> str:
    node = shutil.which("node")
    if node is None:
        return "?"
    out = subprocess.run([node, "--version"], capture_output=True, text=True, timeout=30, check=False)
    return out.stdout.strip().lstrip("v") or "?"


def oauth2_mock_server(form: str) -> Peer | str:
    """The peer, or why it is missing (the command that installs it)."""
    package = PEERS_DIR / "node_modules" / "oauth2-mock-server" / "package.json"
    node = shutil.which("node")
    if node is None:
        return "not installed: Node.js >= 20.19 (apt-get install -y nodejs npm), then " + NPM_INSTALL
    if not package.is_file():
        return f"not installed: {NPM_INSTALL}"
    version = json.loads(package.read_text())["version"]

    def make(cpu: int) -> Server:
        port = free_port()
        return Server("oauth2-mock-server", [node, str(PEERS_DIR / "oauth2-mock-server.mjs"), str(port)],
                      port=port, ready_path=WELL_KNOWN, cpu=cpu, cwd=str(PEERS_DIR),
                      env={"NODE_ENV": "production"})

    return Peer(f"oauth2-mock-server {version} (Node {_node_version()})",
                "client_credentials (same form), 1 RS256 access token", make, "/token", form, "access_token")


# --- oidc-provider-mock ---------------------------------------------------------------------------------
def _mint_codes(server: Server, count: int) -> list[str]:
    """``count`` token-request bodies, each redeeming a fresh authorization code (one authorize POST each)."""
    query = urlencode({"client_id": OIDC_CLIENT, "redirect_uri": OIDC_REDIRECT, "response_type": "code",
                       "scope": "openid"})
    form = urlencode({"sub": OIDC_USER})
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    bodies: list[str] = []
    conn = http.client.HTTPConnection(HOST, server.port, timeout=10)
    try:
        for _ in range(count):
            conn.request("POST", f"/oauth2/authorize?{query}", form, headers)
            resp = conn.getresponse()
            resp.read()
            location = resp.getheader("Location") or ""
            codes = parse_qs(urlsplit(location).query).get("code")
            if resp.status != 302 or not codes:
                raise RuntimeError(f"oidc-provider-mock authorize: {resp.status} {location!r}")
            bodies.append(urlencode({"grant_type": "authorization_code", "code": codes[0],
                                     "redirect_uri": OIDC_REDIRECT, "client_id": OIDC_CLIENT,
                                     "client_secret": OIDC_SECRET}))
    finally:
        conn.close()
    return bodies


def _refresh_form(server: Server) -> str:
    """Redeem one code; the refresh_token grant form for its refresh token (reusable: the grant issues no new
    refresh token and keeps the old one)."""
    status, body = _post(f"http://{HOST}:{server.port}/oauth2/token", _mint_codes(server, 1)[0])
    refresh = body.get("refresh_token")
    if status != 200 or not isinstance(refresh, str):
        raise RuntimeError(f"oidc-provider-mock: no refresh token: {str(body)[:300]}")
    return urlencode({"grant_type": "refresh_token", "refresh_token": refresh})


def oidc_provider_mock() -> list[Peer] | str:
    if importlib.util.find_spec("oidc_provider_mock") is None:
        return f"not installed: {PIP_INSTALL}"
    version = importlib.metadata.version("oidc-provider-mock")

    def make(cpu: int) -> Server:
        port = free_port()
        argv = [sys.executable, "-m", "uvicorn", "oidc_provider_mock:app", "--factory", "--interface", "wsgi",
                "--host", HOST, "--port", str(port), "--no-access-log"]
        # AUTHLIB_INSECURE_TRANSPORT: plain HTTP, as its CLI sets it. PYTHONWARNINGS: authlib's deprecation
        # warnings at import say nothing here.
        return Server("oidc-provider-mock", argv, port=port, ready_path=WELL_KNOWN, cpu=cpu, cwd=str(BENCH_DIR),
                      env={"AUTHLIB_INSECURE_TRANSPORT": "1", "PYTHONWARNINGS": "ignore"})

    # Its refresh grant takes client_secret_basic only (authlib's default for that grant).
    basic = base64.b64encode(f"{OIDC_CLIENT}:{OIDC_SECRET}".encode()).decode()
    return [
        Peer(f"oidc-provider-mock {version} (Flask, uvicorn --interface wsgi)",
             "authorization_code redemption, a fresh code each (it has no client_credentials): "
             "1 RS256 id_token + opaque access and refresh tokens", make, "/oauth2/token", "", "id_token",
             mint=_mint_codes),
        Peer("  the same, refresh_token grant (info)",
             "refresh_token grant, one reusable refresh token, client_secret_basic: an opaque access token, "
             "no signature", make, "/oauth2/token", "", None, setup=_refresh_form,
             headers={"Authorization": f"Basic {basic}"}),
    ]


def peers(form: str) -> tuple[list[Peer], list[tuple[str, str]]]:
    """The installed peers, and (name, how to install) for each missing one."""
    found: list[Peer] = []
    missing: list[tuple[str, str]] = []
    for name, peer in (("oauth2-mock-server", oauth2_mock_server(form)), ("oidc-provider-mock", oidc_provider_mock())):
        if isinstance(peer, str):
            missing.append((name, peer))
        else:
            found += peer if isinstance(peer, list) else [peer]
    return found, missing
