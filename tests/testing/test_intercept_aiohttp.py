"""``fake_sts.intercept()`` with aiohttp: azure-identity's async credentials, unmodified, in-process.

``azure.identity.aio`` sends through azure-core's ``AioHttpTransport`` (an ``aiohttp.ClientSession``). The
credentials below get no ``transport=`` and keep the production authority; the interception hands their
requests to this test's sandbox over an in-memory connection, so aiohttp itself writes each request and
parses each answer. Hosts the interception does not take (here a local aiohttp server) still go over a
socket.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import jwt
import pytest
import requests
from aiohttp import web
from azure.core.exceptions import ClientAuthenticationError
from azure.identity.aio import ClientSecretCredential, DefaultAzureCredential

from fakests import StsSandbox
from tests.jwks import verify

from .conftest import API_SCOPE, APP_CLIENT_ID, APP_SECRET, APP_TENANT

AUTHORITY = f"https://login.microsoftonline.com/{APP_TENANT}"
TOKEN_URL = f"{AUTHORITY}/oauth2/v2.0/token"
FORM = {"grant_type": "client_credentials", "client_id": APP_CLIENT_ID, "client_secret": APP_SECRET,
        "scope": API_SCOPE}


def _token_with_async_credential() -> str:
    """The app under test: azure-identity's async credential as production code builds it."""
    async def get() -> str:
        async with ClientSecretCredential(APP_TENANT, APP_CLIENT_ID, APP_SECRET) as credential:
            return (await credential.get_token(API_SCOPE)).token
    return asyncio.run(get())


def _graph_claims(token: str) -> dict[str, Any]:
    """Verified as a resource server would, against the JWKS the sandbox serves (v1: Graph tokens are v1)."""
    with requests.Session() as session:
        return verify(token, session, AUTHORITY, "https://graph.microsoft.com")


def test_an_unmodified_async_credential_gets_a_token_that_verifies(app_ids: StsSandbox) -> None:
    with app_ids.intercept() as active:
        token = _token_with_async_credential()
        claims = _graph_claims(token)  # requests, intercepted too: discovery and keys from the same sandbox
    assert claims["tid"] == APP_TENANT and claims["appid"] == APP_CLIENT_ID
    assert claims["iss"] == f"https://sts.windows.net/{APP_TENANT}/"
    token_requests = app_ids.journal.entries("token")
    assert [(e.client_id, e.status) for e in token_requests] == [(APP_CLIENT_ID, 200)]
    assert active.requests >= 3  # the token over aiohttp, then discovery and keys over requests


def test_default_azure_credential_from_the_environment_alone(app_ids: StsSandbox,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in (("AZURE_TENANT_ID", APP_TENANT), ("AZURE_CLIENT_ID", APP_CLIENT_ID),
                        ("AZURE_CLIENT_SECRET", APP_SECRET)):
        monkeypatch.setenv(name, value)

    async def get() -> str:
        async with DefaultAzureCredential() as credential:
            return (await credential.get_token(API_SCOPE)).token

    with app_ids.intercept():
        token = asyncio.run(get())
        assert _graph_claims(token)["appid"] == APP_CLIENT_ID
    assert [e.status for e in app_ids.journal.entries("token")] == [200]


def test_the_async_credential_retries_a_503_as_told_and_the_journal_shows_it(app_ids: StsSandbox) -> None:
    app_ids.fail("token", aadsts=90033, shape="temporarily_unavailable", retry_after=1, times=2)
    with app_ids.intercept():
        token = _token_with_async_credential()
    assert jwt.decode(token, options={"verify_signature": False})["appid"] == APP_CLIENT_ID
    journal = app_ids.journal
    assert [(e.status, e.aadsts) for e in journal.entries("token")] == [(503, 90033), (503, 90033), (200, None)]
    waits = journal.waited("token")
    assert [asked for asked, _ in waits] == [1.0, 1.0]
    assert all(waited >= asked for asked, waited in waits), waits  # azure-core honoured Retry-After
    assert journal.early_retries() == []


def test_a_scripted_aadsts_error_reaches_the_async_app_with_its_correlation_id(app_ids: StsSandbox) -> None:
    app_ids.fail("token", aadsts=7000222, times=1)  # the client secret expired
    with app_ids.intercept(), pytest.raises(ClientAuthenticationError) as raised:
        _token_with_async_credential()
    [entry] = app_ids.journal.entries("token")
    assert (entry.status, entry.aadsts) == (401, 7000222)
    assert "AADSTS7000222" in str(raised.value) and entry.correlation_id in str(raised.value)


async def _post_each_body_kind(session: aiohttp.ClientSession) -> list[tuple[int, str, dict[str, Any]]]:
    """POST the same client-credentials form as bytes, str, dict and FormData; read each answer another way."""
    encoded = "&".join(f"{k}={v}" for k, v in FORM.items()).replace(":", "%3A").replace("/", "%2F")
    form = aiohttp.FormData()
    for key, value in FORM.items():
        form.add_field(key, value)
    form_header = {"Content-Type": "application/x-www-form-urlencoded"}
    bodies: list[tuple[Any, dict[str, str]]] = [(encoded.encode(), form_header), (encoded, form_header),
                                                (dict(FORM), {}), (form, {})]
    answers = []
    for index, (body, headers) in enumerate(bodies):
        request_id = str(uuid.UUID(int=index + 1))
        async with session.post(TOKEN_URL, data=body, headers={"client-request-id": request_id, **headers}) as resp:
            if index == 0:
                payload = await resp.json()
            elif index == 1:
                payload = json.loads(await resp.text())
            else:
                payload = json.loads(await resp.read())
            assert resp.headers["client-request-id"] == request_id  # echoed, as Entra does
            assert resp.content_type == "application/json"
            answers.append((resp.status, request_id, payload))
    return answers


def test_aiohttp_bodies_headers_and_every_way_to_read_the_answer(app_ids: StsSandbox) -> None:
    async def run() -> list[tuple[int, str, dict[str, Any]]]:
        async with aiohttp.ClientSession() as session:
            return await _post_each_body_kind(session)

    with app_ids.intercept() as active:
        answers = asyncio.run(run())
    assert [status for status, _, _ in answers] == [200] * 4
    assert all(payload["token_type"] == "Bearer" and payload["access_token"] for _, _, payload in answers)
    entries = app_ids.journal.entries("token")
    assert [(e.client_id, e.status) for e in entries] == [(APP_CLIENT_ID, 200)] * 4
    # The client's request id reached the sandbox and became the correlation id of each request.
    assert [(e.client_request_id, e.correlation_id) for e in entries] == [(rid, rid) for _, rid, _ in answers]
    assert all(e.params["client_secret"] == "***" for e in entries)  # the secret arrived (and was redacted)
    assert active.requests == 4


def _run_one(coroutine_factory: Callable[[aiohttp.ClientSession], Awaitable[Any]],
             timeout: aiohttp.ClientTimeout | None = None) -> Any:
    async def run() -> Any:
        async with aiohttp.ClientSession(timeout=timeout or aiohttp.ClientTimeout(total=30)) as session:
            return await coroutine_factory(session)
    return asyncio.run(run())


async def _token_json(session: aiohttp.ClientSession) -> Any:
    async with session.post(TOKEN_URL, data=FORM) as resp:
        return await resp.json()


def test_transport_faults_raise_what_aiohttp_raises_over_a_socket(app_ids: StsSandbox) -> None:
    app_ids.fail("token", fault="reset", times=1)
    with app_ids.intercept():
        with pytest.raises(aiohttp.ClientOSError) as reset:
            _run_one(_token_json)
        assert reset.value.errno == 104  # ECONNRESET, as a real RST gives
        assert "access_token" in _run_one(_token_json)  # the rule is spent: the next request is answered

        app_ids.fail("token", fault="close_mid_body", times=1)
        with pytest.raises(aiohttp.ClientPayloadError):  # the head arrived; the body ends short
            _run_one(_token_json)

        app_ids.fail("token", fault="hang", hang_seconds=30, times=1)
        with pytest.raises(asyncio.TimeoutError):  # aiohttp's own read timeout ends the hang
            _run_one(_token_json, aiohttp.ClientTimeout(sock_read=0.3))

        app_ids.fail("token", fault="hang", hang_seconds=0.1, times=1)
        with pytest.raises(aiohttp.ServerDisconnectedError):  # then the server hangs up, with no answer
            _run_one(_token_json)
    faults = [(e.fault, e.status) for e in app_ids.journal.entries("token")]
    assert faults == [("reset", 0), (None, 200), ("close_mid_body", 200), ("hang", 0), ("hang", 0)]
    assert isinstance(reset.value, aiohttp.ClientConnectionError)


def test_other_hosts_go_over_the_socket_untouched(app_ids: StsSandbox) -> None:
    seen: list[tuple[str, str, str | None]] = []

    async def echo(request: web.Request) -> web.Response:
        seen.append((request.host, request.path, request.headers.get("client-request-id")))
        return web.json_response({"form": dict(await request.post())})

    async def run() -> tuple[Any, Any]:
        server = web.Application()
        server.router.add_post("/echo", echo)
        runner = web.AppRunner(server)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        try:
            async with aiohttp.ClientSession() as session:
                async with session.post(f"http://127.0.0.1:{port}/echo", data={"a": "1"},
                                        headers={"client-request-id": "local"}) as resp:
                    local = await resp.json()
                token = await _token_json(session)  # the same session: Entra's host is still taken
                return local, token
        finally:
            await runner.cleanup()

    with app_ids.intercept() as active:
        local, token = asyncio.run(run())
    assert local == {"form": {"a": "1"}} and seen[0][1:] == ("/echo", "local")
    assert "access_token" in token
    assert active.requests == 1  # only the token request; the local one never reached the sandbox
    assert len(app_ids.journal.entries()) == 1


def test_one_session_across_two_interceptions_reaches_each_sandbox(app_ids: StsSandbox,
                                                                    other_app_ids: StsSandbox) -> None:
    """Interceptions route by test, and no pooled connection carries one sandbox's answers into the next."""
    other = other_app_ids
    app_ids.fail("token", aadsts=7000222, times=5)

    async def run() -> list[int]:
        statuses = []
        async with aiohttp.ClientSession() as session:
            for sandbox in (other, app_ids, other):
                with sandbox.intercept():
                    async with session.post(TOKEN_URL, data=FORM) as resp:
                        statuses.append(resp.status)
        return statuses

    assert asyncio.run(run()) == [200, 401, 200]
    assert [e.status for e in other.journal.entries("token")] == [200, 200]
    assert [e.status for e in app_ids.journal.entries("token")] == [401]


def test_intercept_works_without_aiohttp_installed() -> None:
    """aiohttp is optional: with it unimportable, fakests imports and ``requests`` is still intercepted."""
    script = textwrap.dedent("""
        import sys
        sys.modules["aiohttp"] = None  # as if it were not installed: importing it raises ImportError
        import requests
        import fakests
        from fakests.testing.intercept import intercept

        async def app(scope, receive, send):
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"content-type", b"text/plain")]})
            await send({"type": "http.response.body", "body": b"answered in process"})

        with intercept(app, "any-sandbox") as active:
            print(requests.get("https://login.microsoftonline.com/x", timeout=5).text, active.requests)
        print("aiohttp" in sys.modules and sys.modules["aiohttp"] is None)
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[:2] == ["answered in process 1", "True"]
