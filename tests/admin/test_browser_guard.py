"""Safe beside a developer's browser: a web page from another origin can neither change nor read fakests.

On loopback the admin API is open by default, so the guard (``fakests/admin/_http.py``) refuses what only
a browser page would send: a foreign ``Origin`` or ``Sec-Fetch-Site``, a body of a type a page can send
cross-origin without a preflight, and, while no admin token is set, a ``Host`` that is not one of
fakests' names (DNS rebinding). The last test runs the attacks from a real page in headless Chromium.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests
from playwright.sync_api import Browser

from fakests import FakeSTS, StsSandbox
from fakests.server.app import create_app
from fakests.state.errors import ConfigError
from fakests.state.settings import Settings
from fakests.testing.transport import session_for
from tests.chromium import WAIT_MS, fresh_context
from tests.inprocess import ADMIN, ORIGIN

YAML_RULE = (b"name: guard-yaml\nrules:\n  - id: r1\n    match: {endpoint: token, client_id: nobody}\n"
             b"    response: {aadsts: 70012}\n")
WEB_REDIRECT = "http://localhost:5000/getAToken"  # the default web app's (README)
USER = {"username": "mallory@contoso.onmicrosoft.com", "password": "pw", "display_name": "Mallory"}


@pytest.fixture
def s(tmp_path: Path) -> requests.Session:
    return session_for(create_app(Settings(state_dir=tmp_path, tls=False)), ORIGIN)


def _users(s: requests.Session, base: str = ADMIN) -> list[str]:
    return sorted(u["username"] for u in s.get(f"{base}/sandboxes/default").json()["directory"]["users"])


def test_a_foreign_origin_is_refused_and_fakests_own_is_served(s: requests.Session) -> None:
    before = _users(s)
    for origin in ("http://localhost:3000", "https://evil.example", "null"):
        r = s.post(f"{ADMIN}/sandboxes/default/users", json=USER, headers={"Origin": origin})
        assert r.status_code == 403 and r.json()["error"] == "forbidden", origin
        assert origin in r.json()["error_description"]
    r = s.post(f"{ADMIN}/sandboxes", json={}, headers={"Sec-Fetch-Site": "same-site"})  # another port, same site
    assert r.status_code == 403
    assert s.get(f"{ADMIN}/sandboxes/default", headers={"Origin": "https://evil.example"}).status_code == 403
    assert _users(s) == before
    # The dashboard's own calls: same origin (Origin equal to scheme://Host), or no Origin at all.
    r = s.post(f"{ADMIN}/sandboxes/default/users", json=USER,
                headers={"Origin": ORIGIN, "Sec-Fetch-Site": "same-origin"})
    assert r.status_code == 201, r.text
    assert USER["username"] in _users(s)


def test_bodies_a_page_can_send_without_a_preflight_are_refused(s: requests.Session) -> None:
    url = f"{ADMIN}/sandboxes/default/users"
    for content_type in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x",
                         "TEXT/PLAIN;charset=UTF-8", None):
        headers = {"Content-Type": content_type} if content_type else {}
        r = s.post(url, data=json.dumps(USER).encode(), headers=headers)
        if content_type is None:
            r = requests.Request("POST", url, data=json.dumps(USER).encode()).prepare()
            r.headers.pop("Content-Type", None)
            r = s.send(r)
        assert r.status_code == 415 and r.json()["error"] == "invalid_request", (content_type, r.text)
        assert "application/json" in r.json()["error_description"]
    assert USER["username"] not in _users(s)
    # What tools send: JSON, YAML for scenarios, and bodiless POSTs without an Origin (curl -X POST).
    assert s.post(url, json=USER).status_code == 201
    assert s.post(f"{ADMIN}/sandboxes/default/scenarios", data=YAML_RULE,
                  headers={"Content-Type": "application/yaml"}).status_code in (200, 201)
    assert s.post(f"{ADMIN}/sandboxes").status_code == 201


@pytest.fixture(scope="module")
def open_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakeSTS]:
    """A real server over TLS with no admin token (the loopback default), named 'fakests' in its certificate."""
    settings = Settings(port=0, state_dir=tmp_path_factory.mktemp("guard"), log_requests=False,
                        tls_names=("localhost", "fakests"))
    server = FakeSTS(settings).start()
    try:
        yield server
    finally:
        server.stop()


def test_dns_rebinding_host_is_refused_while_the_admin_api_is_open(open_server: FakeSTS) -> None:
    http = open_server.session()
    port = open_server.port
    default = f"{open_server.url}/_fakests/sandboxes/default"
    for host in (f"rebind.evil.example:{port}", "rebind.evil.example", f"10.0.0.7:{port}", f"fakests.evil:{port}"):
        r = http.get(default, headers={"Host": host})
        assert r.status_code == 403 and r.json()["error"] == "forbidden", host
        assert "secrets" not in r.text and "PRIVATE KEY" not in r.text
    for host in (f"localhost:{port}", f"127.0.0.1:{port}", f"[::1]:{port}", f"fakests:{port}", "app.localhost"):
        assert http.get(default, headers={"Host": host}).status_code == 200, host
    # STS endpoints answer whatever name reaches them (clients use many); only the admin API is guarded.
    discovery = f"{open_server.url}/common/v2.0/.well-known/openid-configuration"
    assert http.get(discovery, headers={"Host": f"rebind.evil.example:{port}"}).status_code == 200


def test_with_an_admin_token_any_host_may_call_with_the_token(tmp_path: Path) -> None:
    server = FakeSTS(Settings(port=0, state_dir=tmp_path, log_requests=False, admin_token="t0ken")).start()
    try:
        http = server.session()
        url = f"{server.url}/_fakests/sandboxes/default"
        host = {"Host": f"fakests-in-a-container:{server.port}"}
        assert http.get(url, headers=host).status_code == 401
        assert http.get(url, headers={**host, "Authorization": "Bearer t0ken"}).status_code == 200
        refused = http.get(url, headers={**host, "Authorization": "Bearer t0ken", "Origin": "https://evil.example"})
        assert refused.status_code == 403
    finally:
        server.stop()


def test_an_empty_admin_token_stops_start_up_and_a_token_file_is_read(tmp_path: Path) -> None:
    from fakests.cli import resolve_settings

    with pytest.raises(ConfigError, match="admin_token: is empty"):
        Settings(admin_token="")
    with pytest.raises(ConfigError, match="admin_token: is empty"):
        resolve_settings({}, environ={"FAKESTS_ADMIN_TOKEN": "  "})
    token_file = tmp_path / "token"
    token_file.write_text("s3cret\n")
    settings, _ = resolve_settings({}, environ={"FAKESTS_ADMIN_TOKEN_FILE": str(token_file)})
    assert settings.admin_token == "s3cret"
    settings, _ = resolve_settings({"admin_token_file": token_file}, environ={})
    assert settings.admin_token == "s3cret"
    token_file.write_text("\n")
    with pytest.raises(ConfigError, match=f"{token_file}: the admin token file is empty"):
        resolve_settings({"admin_token_file": token_file}, environ={})
    with pytest.raises(ConfigError, match="cannot read the admin token file"):
        resolve_settings({"admin_token_file": tmp_path / "missing"}, environ={})
    with pytest.raises(ConfigError, match="admin_token is set too"):
        resolve_settings({"admin_token_file": token_file, "admin_token": "x"}, environ={})


def test_sign_in_and_error_pages_refuse_framing(fake_sts: StsSandbox) -> None:
    http = fake_sts.http_client()
    authorize = f"{fake_sts.authority()}/oauth2/v2.0/authorize"
    page = http.get(authorize, params={"client_id": fake_sts.web.client_id, "response_type": "code",
                                       "redirect_uri": WEB_REDIRECT, "scope": "openid"})
    assert page.status_code == 200 and "<form" in page.text
    assert page.headers["X-Frame-Options"] == "DENY"
    error = http.get(authorize, params={"client_id": "00000000-0000-0000-0000-000000000000",
                                        "response_type": "code", "redirect_uri": "https://evil.example/"})
    assert error.status_code >= 400 and error.headers["X-Frame-Options"] == "DENY"
    assert http.get(f"{fake_sts.url}/error", params={"code": "70012"}).headers["X-Frame-Options"] == "DENY"


ATTACK = """<!DOCTYPE html><html><body><iframe name="sink"></iframe><script>
const admin = ADMIN_URL;
window.results = {};
async function attempt(name, url, init) {
  try { const r = await fetch(url, init); window.results[name] = "status " + r.status; }
  catch (e) { window.results[name] = "blocked"; }
}
(async () => {
  const user = JSON.stringify({username: "mallory@contoso.onmicrosoft.com", password: "pw", display_name: "M"});
  await attempt("user_text_plain", admin + "/sandboxes/default/users",
                {method: "POST", mode: "no-cors", headers: {"Content-Type": "text/plain"}, body: user});
  await attempt("rotate_no_body", admin + "/keys/rotate", {method: "POST", mode: "no-cors"});
  await attempt("outage_text_plain", admin + "/sandboxes/default/scenarios", {method: "POST", mode: "no-cors",
                headers: {"Content-Type": "text/plain"}, body: '{"name": "entra-outage"}'});
  await attempt("sandbox_json", admin + "/sandboxes",
                {method: "POST", headers: {"Content-Type": "application/json"}, body: "{}"});
  await attempt("read_secrets", admin + "/sandboxes/default", {});
  // The page reaches fakests (discovery allows any origin): the refusals above are fakests', not the network's.
  await attempt("discovery", DISCOVERY_URL, {});
  const form = document.createElement("form");
  form.method = "POST"; form.action = admin + "/sandboxes"; form.enctype = "text/plain"; form.target = "sink";
  const field = document.createElement("input"); field.name = '{"a":"'; field.value = '"}'; form.appendChild(field);
  document.body.appendChild(form); form.submit();
  window.done = true;
})();
</script></body></html>"""


def test_a_page_from_another_origin_cannot_drive_the_admin_api(browser: Browser, fake_sts_server: FakeSTS,
                                                               fake_sts: StsSandbox) -> None:
    """In real Chromium: a page on another local origin tries what a malicious site would; nothing changes."""
    admin = f"{fake_sts_server.url}/_fakests"
    client = fake_sts_server.session()
    before = {"users": _users(client, admin), "kid": client.get(f"{fake_sts.authority()}/discovery/v2.0/keys").json(),
              "sandboxes": len(client.get(f"{admin}/sandboxes").json()["sandboxes"]),
              "rules": client.get(f"{admin}/sandboxes/default/scenarios").json()}
    page_html = ATTACK.replace("ADMIN_URL", json.dumps(admin)).replace(
        "DISCOVERY_URL", json.dumps(f"{fake_sts.authority()}/v2.0/.well-known/openid-configuration"))

    class Evil(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = page_html.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    evil = ThreadingHTTPServer(("127.0.0.1", 0), Evil)
    threading.Thread(target=evil.serve_forever, daemon=True).start()
    answered: dict[str, int] = {}
    try:
        with fresh_context(browser) as context:
            page = context.new_page()
            page.on("response", lambda r: answered.__setitem__(f"{r.request.method} {r.url}", r.status)
                    if r.url.startswith(admin) else None)
            page.goto(f"http://127.0.0.1:{evil.server_address[1]}/")
            page.wait_for_function("window.done === true", timeout=WAIT_MS)
            page.wait_for_timeout(500)  # the form's navigation
            results = page.evaluate("window.results")
    finally:
        evil.shutdown()
        evil.server_close()
    assert results["discovery"] == "status 200", results
    assert results["sandbox_json"] == "blocked" and results["read_secrets"] == "blocked", results
    # Every request that reached fakests was refused by fakests itself (Playwright sees the real status).
    assert answered, "no admin request reached fakests"
    assert all(status in (403, 415) for status in answered.values()), answered
    assert answered.get(f"POST {admin}/sandboxes/default/users") == 403
    assert answered.get(f"POST {admin}/keys/rotate") == 403
    after = {"users": _users(client, admin), "kid": client.get(f"{fake_sts.authority()}/discovery/v2.0/keys").json(),
             "sandboxes": len(client.get(f"{admin}/sandboxes").json()["sandboxes"]),
             "rules": client.get(f"{admin}/sandboxes/default/scenarios").json()}
    assert after == before
