"""The dashboard (``GET /_fakests/dashboard``): its JSON endpoints in-process, then the page in headless Chromium.

The browser part drives Debian's ``/usr/bin/chromium`` with Playwright exactly as ``test_browser`` does
(same flags, same SPKI pin on the fakests certificate, never ``ignore_https_errors``): real MSAL requests,
a scripted AADSTS70012, filters, arming a library scenario with a click, clearing it. Screenshots go to
``tests/artifacts/dashboard-*.png``.

Escaping is proved with the Content-Security-Policy switched off (``bypass_csp``): a client_id and a
display name of ``<img src=x onerror=alert(1)>`` must show as text, create no element and raise no dialog.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from jsonschema import Draft202012Validator
from msal.exceptions import MsalServiceError
from playwright.sync_api import Browser, BrowserContext, Dialog, Locator, Page, expect

from fakests import FakeSTS
from fakests.admin import dashboard
from fakests.server.app import create_app
from fakests.state import defaults
from fakests.state.settings import Settings
from fakests.testing.sandbox import StsSandbox
from fakests.testing.transport import session_for
from tests.chromium import WAIT_MS, fresh_context, screenshot
from tests.inprocess import ADMIN, ORIGIN

PAYLOAD = "<img src=x onerror=alert(1)>"
SCOPE = [f"{defaults.API_URI}/.default"]


# --- the JSON endpoints, in-process --------------------------------------------------------------------
@pytest.fixture
def two(s: requests.Session) -> Iterator[list[dict[str, Any]]]:
    made = [s.post(f"{ADMIN}/sandboxes").json() for _ in range(2)]
    yield made
    for sb in made:
        s.delete(f"{ADMIN}/sandboxes/{sb['sandbox_id']}")


def daemon_token(s: requests.Session, sb: dict[str, Any], *, cid: str = "") -> requests.Response:
    client_id = next(a["client_id"] for a in sb["directory"]["apps"] if a["display_name"] == "fakests daemon")
    return s.post(f"{ORIGIN}/{sb['tenant_id']}/oauth2/v2.0/token", headers={"client-request-id": cid} if cid else {},
                  data={"grant_type": "client_credentials", "client_id": client_id,
                        "client_secret": defaults.DAEMON_SECRET, "scope": SCOPE[0]})


def journal(s: requests.Session, **params: Any) -> dict[str, Any]:
    r = s.get(f"{ADMIN}/journal", params=params)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def test_journal_across_sandboxes_newest_first_and_filtered(s: requests.Session, two: list[dict[str, Any]]) -> None:
    a, b = two
    cid = "0a0b0c0d-1111-4222-8333-abcdefabcdef"
    assert daemon_token(s, a).status_code == 200
    assert daemon_token(s, b).status_code == 200
    assert s.post(f"{ADMIN}/sandboxes/{b['sandbox_id']}/scenarios", json={"rules": [
        {"id": "down", "match": {"endpoint": "token"}, "response": {"aadsts": 70012}}]}).status_code == 201
    assert daemon_token(s, b, cid=cid).status_code == 500

    everything = journal(s)
    seqs = [e["seq"] for e in everything["entries"]]
    assert seqs == sorted(seqs, reverse=True) and everything["limit"] == dashboard.DEFAULT_LIMIT
    assert {a["sandbox_id"], b["sandbox_id"]} <= {e["sandbox"] for e in everything["entries"]}
    newest = everything["entries"][0]
    assert (newest["sandbox"], newest["status"], newest["aadsts"], newest["rule"], newest["correlation_id"]) == (
        b["sandbox_id"], 500, 70012, "scenario/down", cid)

    only_a = journal(s, sandbox=a["sandbox_id"])
    assert only_a["matching"] == len(only_a["entries"]) == 1 and only_a["entries"][0]["status"] == 200
    assert journal(s, sandbox="no-such-sandbox") == {"entries": [], "matching": 0, "limit": dashboard.DEFAULT_LIMIT}
    for status in ("500", "5xx", "failed", "FAILED"):
        got = journal(s, status=status, sandbox=b["sandbox_id"])["entries"]
        assert [e["correlation_id"] for e in got] == [cid], status
    assert journal(s, status="2xx", sandbox=b["sandbox_id"])["matching"] == 1
    # client_id and correlation_id match a part, case-insensitively; endpoint and grant_type exactly.
    assert [e["seq"] for e in journal(s, correlation_id="ABCDEFABCDEF")["entries"]] == [newest["seq"]]
    assert journal(s, client_id=defaults.DAEMON_ID[:8], sandbox=a["sandbox_id"])["matching"] == 0  # fresh ids
    a_daemon = only_a["entries"][0]["client_id"]
    assert journal(s, client_id=a_daemon[-12:].upper())["matching"] == 1
    assert journal(s, endpoint="toke", sandbox=a["sandbox_id"])["matching"] == 0
    assert journal(s, endpoint="token", grant_type="client_credentials", sandbox=a["sandbox_id"])["matching"] == 1
    limited = journal(s, limit=1)
    assert len(limited["entries"]) == 1 and limited["matching"] >= 3 and limited["entries"][0]["seq"] == newest["seq"]
    assert journal(s, since=newest["seq"]) == {"entries": [], "matching": 0, "limit": dashboard.DEFAULT_LIMIT}


@pytest.mark.parametrize(("params", "reason"), [
    ({"nope": "1"}, "nope: unknown filter"), ({"status": "abc"}, "status: must be"), ({"status": "6xx"}, "status:"),
    ({"status": "٣"}, "status:"), ({"limit": "0"}, "limit: must be"), ({"limit": "1001"}, "limit:"),
    ({"limit": "-1"}, "limit:"), ({"since": "x"}, "since: must be"), ({"since": "9" * 30}, "since:"),
])
def test_journal_rejects_bad_filters(s: requests.Session, params: dict[str, str], reason: str) -> None:
    r = s.get(f"{ADMIN}/journal", params=params)
    assert r.status_code == 400 and r.json()["error"] == "invalid_request"
    assert r.json()["error_description"].startswith(reason)


def test_rules_lists_the_loaded_rules_of_every_sandbox(s: requests.Session, two: list[dict[str, Any]]) -> None:
    a, b = two
    mine = {a["sandbox_id"], b["sandbox_id"]}
    r = s.post(f"{ADMIN}/sandboxes/{a['sandbox_id']}/scenarios", json={"name": "expired-client-secret"})
    assert r.status_code == 201, r.text
    assert daemon_token(s, a).status_code == 401
    groups = [g for g in s.get(f"{ADMIN}/rules").json()["sandboxes"] if g["sandbox_id"] in mine]
    assert [g["sandbox_id"] for g in groups] == [a["sandbox_id"]]  # b has none, so it is not listed
    assert [(r["scenario"], r["rule"], r["matched"], r["fired"]) for r in groups[0]["rules"]] == [
        ("expired-client-secret", "certificates-still-work", 0, 0), ("expired-client-secret", "secret-expired", 1, 1)]
    assert s.delete(f"{ADMIN}/sandboxes/{a['sandbox_id']}/scenarios").status_code == 204
    assert not [g for g in s.get(f"{ADMIN}/rules").json()["sandboxes"] if g["sandbox_id"] in mine]


def test_new_endpoints_match_their_openapi_schemas(s: requests.Session, two: list[dict[str, Any]]) -> None:
    doc = s.get(f"{ADMIN}/openapi.json").json()
    a = two[0]
    daemon_token(s, a)
    s.post(f"{ADMIN}/sandboxes/{a['sandbox_id']}/scenarios", json={"name": "expired-client-secret"})
    Draft202012Validator({**doc, "$ref": "#/components/schemas/JournalPage"}).validate(journal(s))
    rules = s.get(f"{ADMIN}/rules").json()
    assert rules["sandboxes"]
    schema = doc["paths"]["/rules"]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
    Draft202012Validator({**doc, **schema}).validate(rules)
    assert {p["name"] for p in doc["paths"]["/journal"]["get"]["parameters"]} == set(dashboard.JOURNAL_QUERY)
    assert doc["paths"]["/dashboard"]["get"]["security"] == []


def test_the_page_is_public_and_strict_but_its_data_needs_the_token(state_dir: Path) -> None:
    guarded = session_for(create_app(Settings(state_dir=state_dir, tls=False, admin_token="s3cret")), ORIGIN)
    page = guarded.get(f"{ADMIN}/dashboard")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert page.text == dashboard.PAGE and "<title>fakests dashboard</title>" in page.text
    csp = page.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "script-src 'sha256-" in csp and "unsafe" not in csp
    assert page.headers["referrer-policy"] == "no-referrer"  # the ?token= must not leak in a Referer
    assert "innerHTML" not in page.text and "outerHTML" not in page.text and "insertAdjacentHTML" not in page.text
    assert "http://" not in page.text and "https://" not in page.text  # self-contained: nothing from a CDN
    for path in ("/journal", "/rules"):
        assert guarded.get(ADMIN + path).status_code == 401
        assert guarded.get(ADMIN + path, headers={"Authorization": "Bearer s3cret"}).status_code == 200


# --- the page in Chromium ------------------------------------------------------------------------------
@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    # bypass_csp: the page's CSP would stop an injected handler by itself; without it, only escaping does.
    with fresh_context(browser, width=1440, height=900, bypass_csp=True) as ctx:
        yield ctx


@pytest.fixture
def page(context: BrowserContext) -> Iterator[Page]:
    """A page that must neither open a dialog (data rendered as markup) nor throw in its script."""
    page = context.new_page()
    dialogs: list[str] = []
    errors: list[str] = []

    def on_dialog(dialog: Dialog) -> None:
        dialogs.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", on_dialog)
    page.on("pageerror", lambda error: errors.append(str(error)))
    yield page
    assert dialogs == [], f"a dialog opened: data was rendered as markup: {dialogs}"
    assert errors == [], f"the dashboard's script threw: {errors}"


def shot(page: Page, name: str) -> Path:
    return screenshot(page, f"dashboard-{name}")


def rows(page: Page) -> Locator:
    return page.locator("#journal tbody tr[data-seq]")


def row_of(page: Page, correlation_id: str) -> Locator:
    return rows(page).filter(has=page.locator("td.c-correlation_id", has_text=correlation_id))


def test_dashboard_says_when_requests_could_not_be_journaled(fake_sts: StsSandbox, fake_sts_server: FakeSTS,
                                                            page: Page) -> None:
    """A full disk or an unreachable store loses journal rows (``tests/server/test_store_faults.py`` makes
    that happen for real); the dashboard says so, since the journal it shows is then incomplete."""
    page.goto(f"{fake_sts_server.url}/_fakests/dashboard?sandbox={fake_sts.sandbox_id}")
    expect(page.locator("#status")).to_have_class(re.compile(r"\bok\b"))
    expect(page.locator("#journal-lost")).to_have_text("")
    fake_sts.sandbox.journal_lost = 3  # what the request path counts when a row cannot be written
    try:
        expect(page.locator("#journal-lost")).to_have_text("3 request(s) could not be journaled")
        screenshot(page, "dashboard-5-journal-lost")
    finally:
        fake_sts.sandbox.journal_lost = 0  # else the fixture fails this test, as it should a real loss


def test_dashboard_journal_filters_library_and_clear(fake_sts: StsSandbox, fake_sts_server: FakeSTS,
                                                     page: Page) -> None:
    sid = fake_sts.sandbox_id
    ok = fake_sts.msal_confidential("daemon", inprocess=False).acquire_token_for_client(SCOPE)
    assert "access_token" in ok, ok
    rule = fake_sts.fail("token", aadsts=70012, times=1)
    with pytest.raises(MsalServiceError, match="HTTP Error: 500"):  # MSAL raises on a 5xx: AADSTS70012 is one
        fake_sts.msal_confidential("daemon", inprocess=False).acquire_token_for_client(SCOPE)
    [failure] = [e for e in fake_sts.journal.entries("token") if e.aadsts == 70012]
    [success] = [e for e in fake_sts.journal.entries("token") if e.status == 200]
    # Markup where a client_id and a display name go: it must come out as text.
    evil = fake_sts.http_client(inprocess=False).post(f"{fake_sts.authority()}/oauth2/v2.0/token", data={
        "grant_type": "client_credentials", "client_id": PAYLOAD, "client_secret": "x", "scope": SCOPE[0]})
    assert evil.status_code >= 400
    fake_sts.add_user("mallory@contoso.com", display_name=PAYLOAD)
    total = len(fake_sts.journal.entries())

    page.goto(f"{fake_sts_server.url}/_fakests/dashboard?sandbox={sid}")
    expect(page.locator("#status")).to_have_class(re.compile(r"\bok\b"))
    assert "test double of Microsoft Entra ID" in page.locator(".banner").inner_text()
    page.locator("#f-sandbox").select_option(sid)  # other tests' sandboxes share this server
    expect(rows(page)).to_have_count(total)
    expect(page.locator("#journal-count")).to_contain_text(f"{total} of {total} matching")

    row = row_of(page, failure.correlation_id)
    expect(row).to_have_class(re.compile(r"\bfail\b"))
    expect(row.locator(".c-status")).to_have_text("500")
    expect(row.locator(".c-aadsts")).to_have_text("70012")
    expect(row.locator(".c-rule")).to_have_text(rule.name)
    expect(row.locator(".c-sandbox")).to_have_text(sid)
    expect(row.locator(".c-client_id")).to_have_text(fake_sts.daemon.client_id)
    expect(row.locator(".c-grant_type")).to_have_text("client_credentials")
    good = row_of(page, success.correlation_id)
    expect(good.locator(".c-status")).to_have_text("200")
    expect(good).not_to_have_class(re.compile(r"\bfail\b"))
    # Newest first: the journal's last entry is the top row.
    expect(rows(page).first).to_have_attribute("data-seq", str(fake_sts.journal.entries()[-1].seq))

    # Escaping: the payload is the text of its cells and made no element (the fixture checks no dialog).
    evil_cell = page.locator("#journal td.c-client_id", has_text="onerror")
    expect(evil_cell).to_have_text(PAYLOAD)
    mallory = page.locator("#directory table.users tr", has_text="mallory@contoso.com")
    expect(mallory).to_contain_text(PAYLOAD)
    assert page.locator("img").count() == 0
    page.wait_for_timeout(300)  # an onerror would have fired by now
    # The directory: the sandbox's own ids and credentials, ready to copy.
    expect(page.locator("#dir-sandbox")).to_have_text(f"sandbox {sid}")
    daemon_row = page.locator("#directory table.apps tr", has_text=fake_sts.daemon.client_id)
    expect(daemon_row).to_contain_text(defaults.DAEMON_SECRET)
    alice = page.locator("#directory table.users tr", has_text="alice@contoso.com")
    expect(alice).to_contain_text(fake_sts.password)
    expect(alice).to_contain_text("active")
    expect(page.locator("#directory table.tenants")).to_contain_text(fake_sts.tenant_id)
    expect(page.locator("#rules .group[data-sandbox='" + sid + "'] .c-fired")).to_have_text("1")
    shot(page, "1-journal")

    # Filters narrow the rows: by correlation id (a part of it is enough), then by status.
    page.locator("#f-correlation").fill(failure.correlation_id[-12:])
    expect(rows(page)).to_have_count(1)
    expect(rows(page).locator(".c-correlation_id")).to_have_text(failure.correlation_id)
    shot(page, "2-filtered-by-correlation-id")
    page.locator("#f-correlation").fill("")
    page.locator("#f-status").fill("500")
    expect(rows(page)).to_have_count(1)
    expect(rows(page).locator(".c-status")).to_have_text("500")
    page.locator("#f-status").fill("failed")
    expect(rows(page)).to_have_count(len([e for e in fake_sts.journal.entries() if e.status >= 400]))
    page.get_by_role("button", name="Clear filters").click()
    expect(page.locator("#f-status")).to_have_value("")
    expect(page.locator("#f-sandbox")).to_have_value("")  # all sandboxes again
    page.locator("#f-sandbox").select_option(sid)
    expect(rows(page)).to_have_count(total)

    # Arm a library scenario with a click: the engine has it, and the next request fails as it says.
    page.locator("#library button[data-name='expired-client-secret']").click()
    expect(page.locator("#notice")).to_have_text(f"Armed expired-client-secret in sandbox {sid}: 2 rule(s).")
    assert {(r["scenario"], r["rule"]) for r in fake_sts.scenarios} >= {
        ("expired-client-secret", "certificates-still-work"), ("expired-client-secret", "secret-expired")}
    expired = fake_sts.msal_confidential("daemon", inprocess=False).acquire_token_for_client(SCOPE)
    assert expired.get("error_codes") == [7000222], expired
    [denied] = [e for e in fake_sts.journal.entries("token") if e.aadsts == 7000222]
    expect(row_of(page, denied.correlation_id).locator(".c-rule")).to_have_text("expired-client-secret/secret-expired")
    group = page.locator(f"#rules .group[data-sandbox='{sid}']")
    expect(group.locator("tr", has_text="secret-expired").locator(".c-fired")).to_have_text("1")
    shot(page, "3-armed")

    # Clear: the rules are gone from the engine and the page, and the daemon gets tokens again.
    group.get_by_role("button", name="Clear").click()
    expect(group).to_have_count(0)
    expect(page.locator("#notice")).to_have_text(f"Cleared the scenarios of sandbox {sid}.")
    assert fake_sts.scenarios == []
    again = fake_sts.msal_confidential("daemon", inprocess=False).acquire_token_for_client(SCOPE)
    assert "access_token" in again, again
    shot(page, "4-cleared")


def test_dashboard_sends_the_admin_token_it_was_given(browser: Browser, state_dir: Path) -> None:
    """With admin_token set the page loads without it but says what is missing; ``?token=`` makes it work,
    sent as a Bearer header and never in a data call's URL."""
    settings = Settings(host="127.0.0.1", port=0, state_dir=state_dir, tls=False, admin_token="s3cret",
                        log_requests=False)
    with FakeSTS(settings) as server:
        context = browser.new_context(viewport={"width": 1440, "height": 900})
        context.set_default_timeout(WAIT_MS)
        try:
            page = context.new_page()
            calls: list[tuple[str, str | None]] = []
            page.on("request", lambda r: calls.append((r.url, r.headers.get("authorization"))))
            page.goto(f"{server.url}/_fakests/dashboard")
            expect(page.locator("#status")).to_contain_text("needs the admin token")
            page.goto(f"{server.url}/_fakests/dashboard?token=s3cret")
            expect(page.locator("#status")).to_have_class(re.compile(r"\bok\b"))
            expect(page.locator("#directory table.apps")).to_contain_text(defaults.DAEMON_SECRET)
            data = [(url, auth) for url, auth in calls if "/_fakests/" in url and "/dashboard" not in url]
            authorized = [url for url, auth in data if auth == "Bearer s3cret"]
            assert authorized and all("s3cret" not in url for url, _ in data)
        finally:
            context.close()
