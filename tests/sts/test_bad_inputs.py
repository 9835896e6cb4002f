"""Every bad input a real client or a careless test sends gets an Entra-shaped error, never a traceback.

One table (``CASES``): each case sends one bad request over the in-process transport with its own
``client-request-id`` and says what Entra answers (entra-wire.md §1.7, §2, §5, §6): the AADSTS code,
the HTTP status, ``error`` and ``suberror``, and how the error is delivered (token-endpoint JSON, the
"Sorry, but we're having trouble signing you in" page, or a redirect back to the client). The one
test checks the whole error contract for every case: ``error_codes``, the ``error_description``
template with its Trace ID / Correlation ID / Timestamp lines, ``trace_id`` == ``x-ms-request-id``,
``correlation_id`` == the ``client-request-id`` sent (and echoed), the timestamp format,
``error_uri``, and the journal entry for the request.
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Any, Literal
from urllib.parse import parse_qs, urlencode, urlsplit

import jwt
import pytest
import requests
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import Encoding

from fakests.state.directory import Certificate, Secret
from fakests.state.journal import Journal
from fakests.state.keys import new_key_and_cert
from fakests.testing.sandbox import StsSandbox

WEB_REDIRECT = "http://localhost:5000/getAToken"
SPA_REDIRECT = "http://localhost:3000"
SPA_ORIGIN = "http://localhost:3000"
FORM = {"Content-Type": "application/x-www-form-urlencoded"}
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
DEVICE_CODE_URN = "urn:ietf:params:oauth:grant-type:device_code"
JWT_BEARER_URN = "urn:ietf:params:oauth:grant-type:jwt-bearer"
USER_SCOPE = "openid profile offline_access User.Read"
TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}Z$")
VERIFIER = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"  # PKCE (RFC 7636 appendix B)
CHALLENGE = base64.urlsafe_b64encode(hashlib.sha256(VERIFIER.encode()).digest()).rstrip(b"=").decode()


class Probe:
    """One case's view of the sandbox: sends the bad request with the case's ``client-request-id``
    (``cid``); setup requests (``setup``) go without it, so the journal holds one entry for ``cid``."""

    def __init__(self, sts: StsSandbox) -> None:
        self.sts = sts
        self.http = sts.http_client()
        self.cid = str(uuid.uuid4())

    # --- the request under test ------------------------------------------------------------------
    def send(self, method: str, path: str, *, headers: dict[str, str] | None = None, **kw: Any) -> requests.Response:
        url = path if path.startswith("http") else self.sts.url + path
        return self.http.request(method, url, headers={"client-request-id": self.cid, **(headers or {})},
                                 allow_redirects=False, **kw)

    def token(self, data: dict[str, str] | bytes | None, *, tenant: str | None = None, method: str = "POST",
              **kw: Any) -> requests.Response:
        return self.send(method, f"/{tenant or self.sts.tenant_id}/oauth2/v2.0/token", data=data, **kw)

    def authorize(self, params: dict[str, str], *, tenant: str | None = None) -> requests.Response:
        return self.send("GET", f"/{tenant or self.sts.tenant_id}/oauth2/v2.0/authorize?{urlencode(params)}")

    # --- request bodies --------------------------------------------------------------------------
    @property
    def public_id(self) -> str:
        return self.sts.public.client_id

    def daemon(self, **extra: str | None) -> dict[str, str]:
        """client_credentials for the daemon app with its secret; ``extra`` overrides (``None`` drops)."""
        body = {"grant_type": "client_credentials", "client_id": self.sts.daemon.client_id,
                "client_secret": str(self.sts.daemon.secret), "scope": "https://graph.microsoft.com/.default"}
        return _merge(body, extra)

    def ropc(self, username: str | None = "alice@contoso.com", **extra: str | None) -> dict[str, str]:
        body: dict[str, str | None] = {
            "grant_type": "password", "client_id": self.public_id, "username": username,
            "password": self.sts.password, "scope": USER_SCOPE, "client_info": "1"}
        return _merge(body, extra)

    def web_code(self, code: str, /, **extra: str | None) -> dict[str, str]:
        body = {"grant_type": "authorization_code", "client_id": self.sts.web.client_id,
                "client_secret": str(self.sts.web.secret), "code": code, "redirect_uri": WEB_REDIRECT,
                "scope": USER_SCOPE, "code_verifier": VERIFIER}
        return _merge(body, extra)

    def assertion(self, key: rsa.RSAPrivateKey, der: bytes, *, client_id: str | None = None,
                  **claims: Any) -> dict[str, str]:
        """client_credentials authenticated by a certificate assertion (MSAL Python's form, §2.2)."""
        cid = client_id or self.sts.daemon.client_id
        now = time.time()
        payload = {"aud": f"{self.sts.authority()}/oauth2/v2.0/token", "iss": cid, "sub": cid,
                   "jti": str(uuid.uuid4()), "iat": now, "exp": now + 600, **claims}
        x5t = base64.urlsafe_b64encode(hashlib.sha1(der).digest()).decode()
        signed = jwt.encode(payload, key, algorithm="RS256", headers={"x5t": x5t})
        return {"grant_type": "client_credentials", "client_id": cid, "scope": "https://graph.microsoft.com/.default",
                "client_assertion_type": ASSERTION_TYPE, "client_assertion": signed}

    # --- setup (not the request under test) ------------------------------------------------------
    def setup(self, method: str, path: str, **kw: Any) -> requests.Response:
        response = self.http.request(method, self.sts.url + path, allow_redirects=False, **kw)
        assert response.status_code < 400, response.text
        return response

    def issue_code(self) -> str:
        """An authorization code for the web app (alice, PKCE S256 with ``VERIFIER``)."""
        params = {"client_id": self.sts.web.client_id, "response_type": "code", "redirect_uri": WEB_REDIRECT,
                  "scope": USER_SCOPE, "state": "s1", "code_challenge": CHALLENGE, "code_challenge_method": "S256"}
        auth_uri = f"{self.sts.authority()}/oauth2/v2.0/authorize?{urlencode(params)}"
        return self.sts.sign_in(auth_uri, WEB_REDIRECT)["code"]

    def issue_spa_code(self, *, pkce: bool = True, session: requests.Session | None = None) -> str:
        """An authorization code for the single-page app (alice), to its ``spa`` redirect URI; signed in
        with ``session``'s cookies when given (a browser that keeps the SSO session)."""
        params = {"client_id": self.sts.spa.client_id, "response_type": "code", "redirect_uri": SPA_REDIRECT,
                  "scope": USER_SCOPE, "state": "s1"}
        if pkce:
            params |= {"code_challenge": CHALLENGE, "code_challenge_method": "S256"}
        auth_uri = f"{self.sts.authority()}/oauth2/v2.0/authorize?{urlencode(params)}"
        return self.sts.sign_in(auth_uri, SPA_REDIRECT, session=session)["code"]

    def spa_code(self, code: str, /, **extra: str | None) -> dict[str, str]:
        """msal-browser's redemption body (no secret)."""
        body = {"grant_type": "authorization_code", "client_id": self.sts.spa.client_id, "code": code,
                "redirect_uri": SPA_REDIRECT, "scope": USER_SCOPE, "code_verifier": VERIFIER}
        return _merge(body, extra)

    def issue_spa_refresh_token(self) -> str:
        path = f"/{self.sts.tenant_id}/oauth2/v2.0/token"
        code = self.issue_spa_code()
        answer = self.setup("POST", path, data=self.spa_code(code), headers={"Origin": SPA_ORIGIN}).json()
        return str(answer["refresh_token"])

    def spa_refresh(self, rt: str) -> dict[str, str]:
        return {"grant_type": "refresh_token", "client_id": self.sts.spa.client_id, "refresh_token": rt,
                "scope": USER_SCOPE}

    def issue_refresh_token(self) -> str:
        path = f"/{self.sts.tenant_id}/oauth2/v2.0/token"
        return str(self.setup("POST", path, data=self.ropc()).json()["refresh_token"])

    def issue_device_code(self) -> str:
        path = f"/{self.sts.tenant_id}/oauth2/v2.0/devicecode"
        return str(self.setup("POST", path, data={"client_id": self.public_id, "scope": USER_SCOPE}).json()
                   ["device_code"])

    def register_certificate(self, pem: str) -> None:
        """Upload a certificate to the daemon app's registration."""
        self.sts.sandbox.directory.apps[self.sts.daemon.client_id].certificates.append(Certificate(pem))


def _merge(body: dict[str, str] | dict[str, str | None], extra: dict[str, str | None]) -> dict[str, str]:
    out: dict[str, str | None] = {**body, **extra}
    return {k: v for k, v in out.items() if v is not None}


@cache
def _client_key() -> tuple[rsa.RSAPrivateKey, bytes, str]:
    """A client certificate: key, DER and PEM of the certificate (made once: about 50 ms)."""
    key, cert = new_key_and_cert("test client assertion")
    return key, cert.public_bytes(Encoding.DER), cert.public_bytes(Encoding.PEM).decode()


# --- the sends, one per case (named for what they get wrong) -------------------------------------------

def _expired_secret(p: Probe) -> requests.Response:
    app = p.sts.sandbox.directory.apps[p.sts.daemon.client_id]
    app.secrets.append(Secret("expired-secret-value", expires_at=p.sts.sandbox.now() - 86400, hint="exp"))
    return p.token(p.daemon(client_secret="expired-secret-value"))


def _assertion_unregistered(p: Probe) -> requests.Response:
    key, der, _ = _client_key()  # never registered on the daemon app
    return p.token(p.assertion(key, der))


def _assertion_expired(p: Probe) -> requests.Response:
    key, der, pem = _client_key()
    p.register_certificate(pem)
    return p.token(p.assertion(key, der, iat=time.time() - 7200, exp=time.time() - 3600))


def _assertion_wrong_audience(p: Probe) -> requests.Response:
    key, der, pem = _client_key()
    p.register_certificate(pem)
    other_tenant = str(uuid.uuid4())
    return p.token(p.assertion(key, der, aud=f"https://login.microsoftonline.com/{other_tenant}/oauth2/v2.0/token"))


def _assertion_iss_not_sub(p: Probe) -> requests.Response:
    key, der, pem = _client_key()
    p.register_certificate(pem)
    return p.token(p.assertion(key, der, iss=str(uuid.uuid4())))


def _assertion_without_type(p: Probe) -> requests.Response:
    key, der, pem = _client_key()
    p.register_certificate(pem)
    body = p.assertion(key, der)
    del body["client_assertion_type"]
    return p.token(body)


def _code_twice(p: Probe) -> requests.Response:
    code = p.issue_code()
    p.setup("POST", f"/{p.sts.tenant_id}/oauth2/v2.0/token", data=p.web_code(code))
    return p.token(p.web_code(code))


def _code_expired(p: Probe) -> requests.Response:
    code = p.issue_code()
    p.sts.advance(601)  # codes live 10 minutes (§2.3)
    return p.token(p.web_code(code))


def _code_wrong_verifier(p: Probe) -> requests.Response:
    code = p.issue_code()
    return p.token(p.web_code(code, code_verifier=secrets.token_urlsafe(32)))


def _code_without_verifier(p: Probe) -> requests.Response:
    code = p.issue_code()
    return p.token(p.web_code(code, code_verifier=None))


def _code_other_client(p: Probe) -> requests.Response:
    code = p.issue_code()
    return p.token(p.web_code(code, client_id=p.sts.api.client_id, client_secret=str(p.sts.api.secret)))


def _rt_revoked(p: Probe) -> requests.Response:
    rt = p.issue_refresh_token()
    p.sts.user("alice@contoso.com").tokens_valid_from = p.sts.sandbox.now() + 60  # revokeSignInSessions
    return p.token({"grant_type": "refresh_token", "client_id": p.public_id, "refresh_token": rt,
                    "scope": USER_SCOPE})


def _rt_inactive(p: Probe) -> requests.Response:
    rt = p.issue_refresh_token()
    p.sts.advance(p.sts.sandbox.settings.refresh_token_lifetime + 1)
    return p.token({"grant_type": "refresh_token", "client_id": p.public_id, "refresh_token": rt,
                    "scope": USER_SCOPE})


def _spa_code_same_origin(p: Probe) -> requests.Response:
    return p.token(p.spa_code(p.issue_spa_code()))  # no Origin: a server redeeming a browser's code


def _spa_code_from_other_origin(p: Probe) -> requests.Response:
    return p.token(p.spa_code(p.issue_spa_code()), headers={"Origin": "https://evil.example.test"})


def _spa_code_without_pkce(p: Probe) -> requests.Response:
    code = p.issue_spa_code(pkce=False)
    return p.token(p.spa_code(code, code_verifier=None), headers={"Origin": SPA_ORIGIN})


def _spa_code_with_secret(p: Probe) -> requests.Response:
    code = p.issue_spa_code()
    return p.token(p.spa_code(code, client_secret=str(p.sts.web.secret)), headers={"Origin": SPA_ORIGIN})


def _web_code_cross_origin(p: Probe) -> requests.Response:
    code = p.issue_code()  # to the web app's (untyped) redirect URI, redeemed as msal-browser would: no secret
    return p.token(p.web_code(code, client_secret=None), headers={"Origin": SPA_ORIGIN})


def _client_credentials_cross_origin(p: Probe) -> requests.Response:
    return p.token(p.daemon(), headers={"Origin": SPA_ORIGIN})


def _spa_rt_expired(p: Probe) -> requests.Response:
    rt = p.issue_spa_refresh_token()
    p.sts.advance(24 * 3600 + 1)  # fixed 24 h, however active the app was
    return p.token(p.spa_refresh(rt), headers={"Origin": SPA_ORIGIN})


def _spa_rt_same_origin(p: Probe) -> requests.Response:
    return p.token(p.spa_refresh(p.issue_spa_refresh_token()))


def _public_rt_cross_origin(p: Probe) -> requests.Response:
    return p.token({"grant_type": "refresh_token", "client_id": p.public_id, "refresh_token": p.issue_refresh_token(),
                    "scope": USER_SCOPE}, headers={"Origin": SPA_ORIGIN})


def _device_pending(p: Probe) -> requests.Response:
    code = p.issue_device_code()
    return p.token({"grant_type": DEVICE_CODE_URN, "client_id": p.public_id, "device_code": code})


def _device_expired(p: Probe) -> requests.Response:
    code = p.issue_device_code()
    p.sts.advance(901)  # device codes live 900 s (§1.8)
    return p.token({"grant_type": DEVICE_CODE_URN, "client_id": p.public_id, "device_code": code})


def _obo(assertion: str) -> Callable[[Probe], requests.Response]:
    def send(p: Probe) -> requests.Response:
        return p.token({"grant_type": JWT_BEARER_URN, "client_id": p.sts.api.client_id,
                        "client_secret": str(p.sts.api.secret), "assertion": assertion,
                        "requested_token_use": "on_behalf_of", "scope": "https://graph.microsoft.com/User.Read"})
    return send


def _authorize(**params: str | None) -> Callable[[Probe], requests.Response]:
    """An authorize request for the web app; ``params`` override (``None`` drops), ``tenant`` too."""
    def send(p: Probe) -> requests.Response:
        base: dict[str, str | None] = {
            "client_id": p.sts.web.client_id, "response_type": "code", "redirect_uri": WEB_REDIRECT,
            "scope": USER_SCOPE, "state": "state-123", "code_challenge": CHALLENGE, "code_challenge_method": "S256"}
        merged = {**base, **params}
        tenant = merged.pop("tenant", None)
        return p.authorize({k: v for k, v in merged.items() if v is not None}, tenant=tenant)
    return send


def _spa_authorize(**params: str | None) -> Callable[[Probe], requests.Response]:
    """An authorize request as msal-browser sends it for the single-page app (fragment, PKCE)."""
    def send(p: Probe) -> requests.Response:
        base: dict[str, str | None] = {
            "client_id": p.sts.spa.client_id, "response_type": "code", "redirect_uri": SPA_REDIRECT,
            "response_mode": "fragment", "scope": USER_SCOPE, "state": "state-123", "code_challenge": CHALLENGE,
            "code_challenge_method": "S256"}
        return p.authorize({k: v for k, v in {**base, **params}.items() if v is not None})
    return send


def _spa_authorize_other_sid(p: Probe) -> requests.Response:
    p.issue_spa_code(session=p.http)  # alice signs in: the probe's browser holds her session cookie
    silent = p.setup("GET", f"/{p.sts.tenant_id}/oauth2/v2.0/authorize?" + urlencode({
        "client_id": p.sts.spa.client_id, "response_type": "code", "redirect_uri": SPA_REDIRECT,
        "response_mode": "fragment", "scope": USER_SCOPE, "prompt": "none", "code_challenge": CHALLENGE,
        "code_challenge_method": "S256"}))
    assert "#code=" in silent.headers["location"]  # the session alone renews silently...
    return _spa_authorize(prompt="none", sid=str(uuid.uuid4()))(p)  # ...but not for another session's sid


# --- the table ----------------------------------------------------------------------------------------

Kind = Literal["json", "page", "redirect"]


@dataclass(frozen=True)
class Case:
    """One bad input and Entra's answer to it."""

    name: str
    send: Callable[[Probe], requests.Response]
    code: int
    status: int
    error: str
    kind: Kind = "json"
    endpoint: str = "token"
    suberror: str | None = None  # None: the body must have no suberror
    journal: Literal["sandbox", "default"] = "sandbox"  # where a request naming no known tenant/client lands


def bad(name: str, send: Callable[[Probe], requests.Response], code: int, status: int, error: str,
        **kw: Any) -> Any:
    """One row of ``CASES``: a ``pytest.param`` whose id is the case's name."""
    return pytest.param(Case(name, send, code, status, error, **kw), id=name)


CASES = [
    # --- request shape (§2.1, §6 900144 / 9002313 / 70003 / 900561) ---------------------------------------
    bad("missing-grant_type", lambda p: p.token(p.daemon(grant_type=None)), 900144, 400, "invalid_request"),
    bad("missing-client_id", lambda p: p.token(p.daemon(client_id=None, client_secret=None)),
        900144, 400, "invalid_request"),
    bad("missing-scope-client_credentials", lambda p: p.token(p.daemon(scope=None)), 900144, 400, "invalid_request"),
    bad("missing-code", lambda p: p.token(p.web_code("x", code=None)), 900144, 400, "invalid_request"),
    bad("missing-refresh_token", lambda p: p.token({"grant_type": "refresh_token", "client_id": p.public_id,
                                                    "scope": USER_SCOPE}), 900144, 400, "invalid_request"),
    bad("missing-username", lambda p: p.token(p.ropc(username=None)), 900144, 400, "invalid_request"),
    bad("missing-password", lambda p: p.token(p.ropc(password=None)), 900144, 400, "invalid_request"),
    bad("json-body-instead-of-form", lambda p: p.token(None, json=p.daemon()), 900144, 400, "invalid_request"),
    bad("empty-body", lambda p: p.token(None), 900144, 400, "invalid_request"),
    bad("unsupported-grant_type", lambda p: p.token(p.daemon(grant_type="client_credential")),
        70003, 400, "unsupported_grant_type"),
    bad("body-invalid-utf8", lambda p: p.token(b"grant_type=client_credentials&scope=\xff\xfe", headers=FORM),
        9002313, 400, "invalid_request"),
    bad("body-percent-encoded-invalid-utf8", lambda p: p.token(b"grant_type=password&username=%ff%fe", headers=FORM),
        9002313, 400, "invalid_request"),
    bad("body-too-many-fields", lambda p: p.token("&".join(f"f{i}=1" for i in range(1001)).encode(), headers=FORM),
        9002313, 400, "invalid_request"),
    bad("body-too-large", lambda p: p.token(b"grant_type=client_credentials&x=" + b"a" * (1 << 20), headers=FORM),
        9002313, 413, "invalid_request"),
    bad("token-GET", lambda p: p.token(None, method="GET", params=p.daemon()), 900561, 400, "invalid_request"),
    bad("token-PUT", lambda p: p.token(p.daemon(), method="PUT"), 900561, 400, "invalid_request"),
    bad("basic-auth-not-base64", lambda p: p.token(p.daemon(client_secret=None),
                                                   headers={"Authorization": "Basic not*base64"}),
        9002313, 400, "invalid_request"),
    # --- tenants (§6 90002) -------------------------------------------------------------------------------
    bad("token-unknown-tenant", lambda p: p.token(p.daemon(), tenant="nosuchtenant.onmicrosoft.com"),
        90002, 400, "invalid_request"),
    bad("token-unknown-tenant-guid", lambda p: p.token(p.daemon(), tenant=str(uuid.uuid4())),
        90002, 400, "invalid_request"),
    bad("discovery-unknown-tenant",
        lambda p: p.send("GET", "/nosuchtenant.onmicrosoft.com/v2.0/.well-known/openid-configuration"),
        90002, 400, "invalid_tenant", endpoint="discovery", journal="default"),
    bad("discovery-v1-unknown-tenant",
        lambda p: p.send("GET", f"/{uuid.uuid4()}/.well-known/openid-configuration"),
        90002, 400, "invalid_tenant", endpoint="discovery", journal="default"),
    bad("jwks-unknown-tenant", lambda p: p.send("GET", "/nosuchtenant.onmicrosoft.com/discovery/v2.0/keys"),
        90002, 400, "invalid_tenant", endpoint="jwks", journal="default"),
    # --- client authentication (§2.1, §2.2, §6) -------------------------------------------------------------
    bad("unknown-client", lambda p: p.token(p.daemon(client_id=str(uuid.uuid4()))), 700016, 400, "unauthorized_client"),
    bad("unknown-client-on-common", lambda p: p.token(p.daemon(client_id=str(uuid.uuid4())), tenant="common"),
        700016, 400, "unauthorized_client", journal="default"),
    bad("client-of-other-tenant", lambda p: p.token(p.daemon(), tenant=p.sts.other_tenant_id),
        700016, 400, "unauthorized_client"),
    bad("wrong-secret", lambda p: p.token(p.daemon(client_secret="not-the-secret")), 7000215, 401, "invalid_client"),
    bad("wrong-secret-v1-endpoint",
        lambda p: p.send("POST", f"/{p.sts.tenant_id}/oauth2/token",
                         data=p.daemon(client_secret="not-the-secret", scope=None,
                                       resource="https://graph.microsoft.com")),
        7000215, 401, "invalid_client"),
    bad("secret-of-another-app", lambda p: p.token(p.daemon(client_secret=str(p.sts.web.secret))),
        7000215, 401, "invalid_client"),
    bad("expired-secret", _expired_secret, 7000222, 401, "invalid_client"),
    bad("confidential-without-credential", lambda p: p.token(p.daemon(client_secret=None)),
        7000218, 401, "invalid_client"),
    bad("confidential-empty-secret", lambda p: p.token(p.daemon(client_secret="")), 7000218, 401, "invalid_client"),
    bad("public-client_credentials", lambda p: p.token(p.daemon(client_id=p.public_id, client_secret=None)),
        7000218, 401, "invalid_client"),
    bad("public-client-sends-secret", lambda p: p.token(p.ropc(client_secret="whatever")),
        700025, 401, "invalid_client"),
    bad("assertion-unregistered-key", _assertion_unregistered, 700027, 401, "invalid_client"),
    bad("assertion-not-a-jwt",
        lambda p: p.token(p.daemon(client_secret=None, client_assertion_type=ASSERTION_TYPE,
                                   client_assertion="garbage")),
        700027, 401, "invalid_client"),
    bad("assertion-expired", _assertion_expired, 700024, 401, "invalid_client"),
    bad("assertion-wrong-audience", _assertion_wrong_audience, 700023, 401, "invalid_client"),
    bad("assertion-iss-not-sub", _assertion_iss_not_sub, 50048, 401, "invalid_client"),
    bad("assertion-without-type", _assertion_without_type, 900144, 400, "invalid_request"),
    # --- scopes (§2.5, §2.9) --------------------------------------------------------------------------------
    bad("scope-not-exposed", lambda p: p.token(p.ropc(scope="openid profile offline_access api://fakests-api/Nope")),
        70011, 400, "invalid_scope"),
    bad("scope-unknown-resource",
        lambda p: p.token(p.daemon(scope="https://unknown.example.test/.default")), 500011, 400, "invalid_resource"),
    bad("scope-two-resources",
        lambda p: p.token(p.ropc(scope="openid https://graph.microsoft.com/User.Read api://fakests-api/Data.Read")),
        700022, 400, "invalid_scope"),
    bad("client_credentials-delegated-scope",
        lambda p: p.token(p.daemon(scope="https://graph.microsoft.com/User.Read")), 1002012, 400, "invalid_scope"),
    bad("client_credentials-app-role-name",
        lambda p: p.token(p.daemon(scope="https://graph.microsoft.com/User.Read.All")), 1002012, 400, "invalid_scope"),
    bad("client_credentials-with-oidc-scopes",
        lambda p: p.token(p.daemon(scope="https://graph.microsoft.com/.default openid profile offline_access")),
        1002012, 400, "invalid_scope"),
    # --- users, ROPC (§2.6, §6) -------------------------------------------------------------------------
    bad("ropc-wrong-password", lambda p: p.token(p.ropc(password="wrong")), 50126, 400, "invalid_grant"),
    bad("ropc-unknown-user", lambda p: p.token(p.ropc("nobody@contoso.com")), 50034, 400, "invalid_grant",
        suberror="bad_token"),
    bad("ropc-user-of-other-tenant", lambda p: p.token(p.ropc("frank@fabrikam.onmicrosoft.com")),
        50034, 400, "invalid_grant", suberror="bad_token"),
    bad("ropc-disabled-user", lambda p: p.token(p.ropc("disabled@contoso.com")), 50057, 400, "invalid_grant"),
    bad("ropc-locked-user", lambda p: p.token(p.ropc("locked@contoso.com")), 50053, 400, "invalid_grant"),
    bad("ropc-password-expired", lambda p: p.token(p.ropc("expired@contoso.com")), 50055, 400, "invalid_grant",
        suberror="user_password_expired"),
    # --- authorization codes (§2.3) ---------------------------------------------------------------------
    bad("code-redeemed-twice", _code_twice, 54005, 400, "invalid_grant"),
    bad("code-expired", _code_expired, 70008, 400, "invalid_grant"),
    bad("code-pkce-wrong-verifier", _code_wrong_verifier, 501481, 400, "invalid_grant"),
    bad("code-pkce-missing-verifier", _code_without_verifier, 501481, 400, "invalid_grant"),
    bad("code-garbage", lambda p: p.token(p.web_code("not-a-code")), 9002313, 400, "invalid_grant"),
    bad("code-of-another-client", _code_other_client, 700005, 400, "invalid_grant"),
    bad("code-with-another-redirect_uri",
        lambda p: p.token(p.web_code(p.issue_code(), redirect_uri=WEB_REDIRECT + "/other")), 500112, 401,
        "invalid_client"),
    # --- refresh tokens (§2.4) --------------------------------------------------------------------------
    bad("refresh_token-garbage",
        lambda p: p.token({"grant_type": "refresh_token", "client_id": p.public_id, "refresh_token": "garbage",
                           "scope": USER_SCOPE}),
        9002313, 400, "invalid_grant", suberror="bad_token"),
    bad("refresh_token-revoked", _rt_revoked, 50173, 400, "invalid_grant", suberror="bad_token"),
    bad("refresh_token-inactive", _rt_inactive, 700082, 400, "invalid_grant", suberror="bad_token"),
    # --- device code (§1.8, §2.7) ----------------------------------------------------------------------
    bad("device-poll-pending", _device_pending, 70016, 400, "authorization_pending"),
    bad("device-poll-expired", _device_expired, 70019, 400, "expired_token"),
    bad("device-poll-unknown-code",
        lambda p: p.token({"grant_type": DEVICE_CODE_URN, "client_id": p.public_id, "device_code": "nope"}),
        70018, 400, "bad_verification_code"),
    bad("devicecode-confidential-client",
        lambda p: p.send("POST", f"/{p.sts.tenant_id}/oauth2/v2.0/devicecode",
                         data={"client_id": p.sts.daemon.client_id, "scope": USER_SCOPE}),
        7000218, 401, "invalid_client", endpoint="devicecode"),
    bad("devicecode-unknown-client",
        lambda p: p.send("POST", f"/{p.sts.tenant_id}/oauth2/v2.0/devicecode",
                         data={"client_id": str(uuid.uuid4()), "scope": USER_SCOPE}),
        700016, 400, "unauthorized_client", endpoint="devicecode"),
    bad("devicecode-missing-scope",
        lambda p: p.send("POST", f"/{p.sts.tenant_id}/oauth2/v2.0/devicecode", data={"client_id": p.public_id}),
        900144, 400, "invalid_request", endpoint="devicecode"),
    bad("devicecode-GET",
        lambda p: p.send("GET", f"/{p.sts.tenant_id}/oauth2/v2.0/devicecode?client_id={p.public_id}"),
        900561, 400, "invalid_request", endpoint="devicecode"),
    # --- on-behalf-of (§2.8) ----------------------------------------------------------------------------
    bad("obo-garbage-assertion", _obo("garbage"), 50013, 400, "invalid_grant"),
    bad("obo-assertion-unknown-key",
        _obo(jwt.encode({"aud": "api://fakests-api", "exp": 4102444800}, "k" * 32, algorithm="HS256",
                        headers={"kid": "nosuchkey"})),
        50013, 400, "invalid_grant"),
    # --- authorize (§1.7, §5.4) -------------------------------------------------------------------------
    bad("authorize-redirect_uri-not-registered", _authorize(redirect_uri="https://evil.example.test/cb"),
        50011, 400, "invalid_request", kind="page", endpoint="authorize"),
    bad("authorize-unknown-client", _authorize(client_id=str(uuid.uuid4())),
        700016, 400, "unauthorized_client", kind="page", endpoint="authorize"),
    bad("authorize-missing-client_id", _authorize(client_id=None),
        900144, 400, "invalid_request", kind="page", endpoint="authorize"),
    bad("authorize-unknown-tenant", _authorize(tenant="nosuchtenant.onmicrosoft.com"),
        90002, 400, "invalid_request", kind="page", endpoint="authorize"),
    bad("authorize-missing-response_type", _authorize(response_type=None),
        900144, 302, "invalid_request", kind="redirect", endpoint="authorize"),
    bad("authorize-response_type-token", _authorize(response_type="token"),
        700054, 302, "unsupported_response_type", kind="redirect", endpoint="authorize"),
    bad("authorize-prompt-none-no-session", _authorize(prompt="none"),
        50058, 302, "login_required", kind="redirect", endpoint="authorize"),
    # --- browsers: single-page apps (clients-2026.md §3; 9002325/9002326/9002327/700084) ------------------
    bad("spa-authorize-prompt-none-no-session", _spa_authorize(prompt="none", sid=str(uuid.uuid4())),
        50058, 302, "login_required", kind="redirect", endpoint="authorize"),
    bad("spa-authorize-prompt-none-other-sid", _spa_authorize_other_sid,
        50058, 302, "login_required", kind="redirect", endpoint="authorize"),
    bad("spa-code-without-origin", _spa_code_same_origin, 9002327, 400, "invalid_request"),
    bad("spa-code-from-unregistered-origin", _spa_code_from_other_origin, 9002326, 400, "invalid_request"),
    bad("spa-code-without-pkce", _spa_code_without_pkce, 9002325, 400, "invalid_request"),
    bad("spa-code-with-secret", _spa_code_with_secret, 9002326, 400, "invalid_request"),
    bad("web-code-cross-origin", _web_code_cross_origin, 9002326, 400, "invalid_request"),
    bad("client-credentials-cross-origin", _client_credentials_cross_origin, 9002326, 400, "invalid_request"),
    bad("spa-refresh-token-after-24h", _spa_rt_expired, 700084, 400, "invalid_grant"),
    bad("spa-refresh-token-without-origin", _spa_rt_same_origin, 9002327, 400, "invalid_request"),
    bad("public-refresh-token-cross-origin", _public_rt_cross_origin, 9002326, 400, "invalid_request"),
]


# --- the test -----------------------------------------------------------------------------------------

def _check_description(description: str, code: int, trace_id: str, correlation_id: str) -> str:
    """``AADSTS{code}: {message}\\r\\nTrace ID: ..\\r\\nCorrelation ID: ..\\r\\nTimestamp: ..`` (§5.1);
    returns the timestamp."""
    assert description.startswith(f"AADSTS{code}: "), description
    head, trace, corr, stamp = description.rsplit("\r\n", 3)
    assert "{" not in head, f"unfilled template field: {head}"
    assert trace == f"Trace ID: {trace_id}"
    assert corr == f"Correlation ID: {correlation_id}"
    assert stamp.startswith("Timestamp: ")
    assert TIMESTAMP.match(stamp.removeprefix("Timestamp: ")), stamp
    return stamp.removeprefix("Timestamp: ")


def _check_json(case: Case, response: requests.Response, probe: Probe) -> None:
    assert response.headers["content-type"].startswith("application/json")
    assert "no-store" in response.headers["cache-control"]
    body = response.json()
    trace_id = response.headers["x-ms-request-id"]
    assert body["error"] == case.error
    assert body["error_codes"] == [case.code]
    assert body["trace_id"] == trace_id
    assert body["correlation_id"] == probe.cid
    stamp = _check_description(body["error_description"], case.code, trace_id, probe.cid)
    assert body["timestamp"] == stamp
    assert body["error_uri"] == f"{probe.sts.url}/error?code={case.code}"  # the request host (§5.1)
    assert body.get("suberror") == case.suberror
    assert "Retry-After" not in response.headers  # never on an OAuth 400/401 (§5.3)


def _check_page(case: Case, response: requests.Response, probe: Probe) -> None:
    assert response.headers["content-type"].startswith("text/html")
    assert "location" not in response.headers  # not redirected to an untrusted target
    text = response.text
    trace_id = response.headers["x-ms-request-id"]
    assert "Sorry, but we're having trouble signing you in." in text
    assert f"AADSTS{case.code}: " in text
    assert re.search(rf"Request Id: <span[^>]*>{trace_id}</span>", text)
    assert re.search(rf"Correlation Id: <span[^>]*>{probe.cid}</span>", text)
    assert re.search(r"Timestamp: <span[^>]*>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z</span>", text)


def _check_redirect(case: Case, response: requests.Response, probe: Probe) -> None:
    location = response.headers["location"]
    # query (the default response_mode) or fragment (msal-browser's): the error is in one of them
    assert location.startswith((WEB_REDIRECT + "?", SPA_REDIRECT + "#")), location
    raw_query = urlsplit(location).query or urlsplit(location).fragment
    assert "%0d%0a" in raw_query and "%3a" in raw_query  # .NET-style encoding (§1.7)
    params = {k: v[0] for k, v in parse_qs(raw_query, keep_blank_values=True).items()}
    assert params["error"] == case.error
    assert params["state"] == "state-123"
    _check_description(params["error_description"], case.code, response.headers["x-ms-request-id"], probe.cid)
    assert params["error_uri"] == f"{probe.sts.url}/error?code={case.code}"
    assert params.get("suberror") == case.suberror
    assert "code" not in params


@pytest.mark.parametrize("case", CASES)
def test_bad_input_gets_entra_error(fake_sts: StsSandbox, case: Case) -> None:
    probe = Probe(fake_sts)
    response = case.send(probe)

    assert "Traceback" not in response.text
    assert response.status_code == case.status, response.text[:800]
    assert response.headers["client-request-id"] == probe.cid
    trace_id = response.headers["x-ms-request-id"]
    uuid.UUID(trace_id)
    {"json": _check_json, "page": _check_page, "redirect": _check_redirect}[case.kind](case, response, probe)
    origin = response.request.headers.get("Origin")
    if origin is not None and case.endpoint in ("token", "devicecode"):
        # A browser hands an error body to the app only with these (else: an opaque network error).
        assert response.headers["access-control-allow-origin"] == origin
        assert "x-ms-request-id" in response.headers["access-control-expose-headers"]

    journal: Journal = fake_sts.journal if case.journal == "sandbox" else fake_sts.default_journal
    entries = journal.entries(case.endpoint, correlation_id=probe.cid)
    assert len(entries) == 1, entries
    entry = entries[0]
    assert (entry.aadsts, entry.status, entry.error) == (case.code, case.status, case.error)
    assert entry.trace_id == trace_id
    assert entry.client_request_id == probe.cid
    assert not fake_sts.internal_errors


def test_unknown_path_is_json_404(fake_sts: StsSandbox) -> None:
    """A mistyped path (``/oauth2/v2.0/tokens``) is a plain JSON 404 with the ids, never a traceback."""
    probe = Probe(fake_sts)
    response = probe.send("POST", f"/{fake_sts.tenant_id}/oauth2/v2.0/tokens", data=probe.daemon())
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("application/json")
    assert "Traceback" not in response.text
    assert response.headers["client-request-id"] == probe.cid
    body = response.json()
    assert body["correlation_id"] == probe.cid
    assert body["trace_id"] == response.headers["x-ms-request-id"]
    assert not fake_sts.journal.entries(correlation_id=probe.cid)  # not an STS endpoint, not journaled


def test_every_case_id_is_unique() -> None:
    ids = [p.id for p in CASES]
    assert len(ids) == len(set(ids))
