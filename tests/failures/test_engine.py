"""Scenario semantics: matching, schedules, throttling, rendering, strict loading, exact counts."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import pytest
import requests

from fakests.failures.scenarios import load_file, parse
from fakests.state.errors import ConfigError
from fakests.testing.sandbox import StsSandbox


def _token(fake_sts: StsSandbox, session: requests.Session | None = None, **extra: str) -> requests.Response:
    """A client-credentials request, as a plain HTTP client sends it (no MSAL caching in the way)."""
    data = {"grant_type": "client_credentials", "client_id": fake_sts.daemon.client_id,
            "client_secret": fake_sts.daemon.secret or "", "scope": "api://fakests-api/.default", **extra}
    return (session or fake_sts.http_client()).post(f"{fake_sts.authority()}/oauth2/v2.0/token", data=data)


def _statuses(fake_sts: StsSandbox, n: int) -> list[int]:
    session = fake_sts.http_client()
    return [_token(fake_sts, session).status_code for _ in range(n)]


def test_times_is_exact_under_64_concurrent_clients(fake_sts: StsSandbox) -> None:
    rule = fake_sts.fail("token", aadsts=70012, times=5)
    with ThreadPoolExecutor(max_workers=64) as pool:
        statuses = list(pool.map(lambda _: _token(fake_sts).status_code, range(64)))
    assert statuses.count(500) == 5 and statuses.count(200) == 59
    assert (rule.matched, rule.fired) == (64, 5)
    journaled = fake_sts.journal.entries("token")
    assert len(journaled) == 64 and sum(e.aadsts == 70012 for e in journaled) == 5


def test_sequence_every_and_after(fake_sts: StsSandbox) -> None:
    seq = fake_sts.fail("token", aadsts=70012, sequence=["fail", "pass", "fail"])
    assert _statuses(fake_sts, 5) == [500, 200, 500, 200, 200]
    seq.remove()
    fake_sts.fail("token", status=503, body="", every=3)
    assert _statuses(fake_sts, 6) == [200, 200, 503, 200, 200, 503]
    fake_sts.clear_scenarios()
    fake_sts.fail("token", aadsts=90033, after=2, times=1)
    assert _statuses(fake_sts, 4) == [200, 200, 503, 200]


def test_probability_with_a_seed_repeats_exactly(fake_sts: StsSandbox) -> None:
    fake_sts.fail("token", aadsts=70012, probability=0.5, seed=7)
    first = _statuses(fake_sts, 20)
    fake_sts.clear_scenarios()
    fake_sts.fail("token", aadsts=70012, probability=0.5, seed=7)
    assert _statuses(fake_sts, 20) == first and 500 in first and 200 in first


# Rules for other clients are armed to be skipped: that they never match is the point.
@pytest.mark.filterwarnings("ignore::fakests.FakeStsWarning")
def test_rules_for_other_clients_are_skipped_and_load_order_holds(fake_sts: StsSandbox) -> None:
    """The engine tries only the rules that can match the client (indexed by client_id); among those,
    rules naming no client and rules naming this one still answer in load order."""
    daemon = fake_sts.daemon.client_id
    others = [fake_sts.fail("token", client_id=str(uuid.uuid4()), aadsts=70012) for _ in range(50)]
    mine = fake_sts.fail("token", client_id=daemon, status=503, body="", times=1)
    anyone = fake_sts.fail("token", aadsts=70012, times=1)
    also_mine = fake_sts.fail("token", client_id=[str(uuid.uuid4()), daemon], status=502, body="", times=1)
    assert _statuses(fake_sts, 4) == [503, 500, 502, 200]
    assert all(r.matched == 0 for r in others)
    assert [(r.matched, r.fired) for r in (mine, anyone, also_mine)] == [(4, 1), (3, 1), (2, 1)]
    for rule in (mine, anyone, also_mine):
        rule.remove()
    first = fake_sts.fail("token", status=504, body="", times=1)
    fake_sts.fail("token", client_id=daemon, status=503, body="", times=1)
    assert _statuses(fake_sts, 3) == [504, 503, 200] and first.fired == 1


def test_window_on_the_sandbox_clock(fake_sts: StsSandbox) -> None:
    fake_sts.fail("token", aadsts=90033, shape="temporarily_unavailable", window={"start": 10, "duration": 30})
    assert _statuses(fake_sts, 1) == [200]  # not started yet
    fake_sts.advance(15)
    assert _statuses(fake_sts, 2) == [503, 503]
    fake_sts.advance(30)
    assert _statuses(fake_sts, 1) == [200]


def test_outage_context_manager_ends_with_the_block(fake_sts: StsSandbox) -> None:
    with fake_sts.outage("token") as rule:
        response = _token(fake_sts)
        assert response.status_code == 503 and response.json()["error"] == "temporarily_unavailable"
    assert rule.fired == 1 and fake_sts.scenarios == [] and _statuses(fake_sts, 1) == [200]


def test_matching_by_account_type_user_grant_and_header(fake_sts: StsSandbox) -> None:
    fake_sts.fail("token", aadsts=70012, account_type="msa")
    fake_sts.fail("token", aadsts=50076, user="bob@contoso.com", grant_type="password")
    fake_sts.fail("token", aadsts=53003, request_headers={"x-test": "ca"})
    session = fake_sts.http_client()

    def ropc(user: str, **headers: str) -> requests.Response:
        data = {"grant_type": "password", "client_id": fake_sts.public.client_id, "username": user,
                "password": fake_sts.password, "scope": "openid User.Read"}
        return session.post(f"{fake_sts.authority('organizations')}/oauth2/v2.0/token", data=data, headers=headers)

    assert ropc("alice@contoso.com").status_code == 200
    assert ropc("carol@outlook.com").json()["error_codes"] == [70012]  # an MSA user
    mfa = ropc("bob@contoso.com").json()
    assert mfa["error_codes"] == [50076] and mfa["suberror"] == "basic_action"
    assert ropc("alice@contoso.com", **{"x-test": "ca"}).json()["error_codes"] == [53003]
    assert _token(fake_sts).status_code == 200  # client credentials: no user, no match


def test_throttle_then_retry_after_and_early_retries(fake_sts: StsSandbox) -> None:
    rule = fake_sts.throttle("token", limit=2, per=60, retry_after=5)
    session = fake_sts.http_client()
    assert [_token(fake_sts, session).status_code for _ in range(2)] == [200, 200]
    throttled = _token(fake_sts, session)
    assert throttled.status_code == 429 and throttled.headers["retry-after"] == "5"
    assert throttled.text == "Too Many Requests"  # Entra's gateway answer is plain text (entra-wire.md §9)
    assert _token(fake_sts, session).status_code == 429  # came back at once: early
    fake_sts.advance(61)
    assert _token(fake_sts, session).status_code == 200
    early = fake_sts.journal.early_retries("token")
    assert len(early) == 1 and early[0].status == 429 and (rule.matched, rule.fired) == (5, 2)
    assert [e.rule for e in fake_sts.journal.entries("token", status=429)] == [rule.name, rule.name]


def test_throttle_json_body_and_per_client_keys(fake_sts: StsSandbox) -> None:
    fake_sts.throttle("token", limit=1, per=60, body="json")
    assert _token(fake_sts).status_code == 200
    body = _token(fake_sts).json()
    assert body["error_codes"] == [90055]
    other = _token(fake_sts, client_id=fake_sts.web.client_id, client_secret=fake_sts.web.secret or "")
    assert other.status_code == 200  # counted separately per client


def test_retry_after_as_an_http_date_and_headers(fake_sts: StsSandbox) -> None:
    fake_sts.fail("token", status=503, body="<html>Service Unavailable</html>", content_type="text/html",
                  retry_after="Wed, 21 Oct 2037 07:28:00 GMT", headers={"x-ms-ests-server": "fake"}, times=1)
    response = _token(fake_sts)
    assert response.status_code == 503 and response.headers["content-type"].startswith("text/html")
    assert response.headers["retry-after"] == "Wed, 21 Oct 2037 07:28:00 GMT"
    assert response.headers["x-ms-ests-server"] == "fake" and response.headers["x-ms-request-id"]


def test_transient_code_in_both_shapes_and_status_override(fake_sts: StsSandbox) -> None:
    fake_sts.fail("token", aadsts=70012, shape="temporarily_unavailable", times=1)
    fake_sts.fail("token", aadsts=70012, status=400, times=1)
    first, second = _token(fake_sts), _token(fake_sts)
    assert (first.status_code, first.json()["error"]) == (503, "temporarily_unavailable")
    assert (second.status_code, second.json()["error"]) == (400, "server_error")
    description = second.json()["error_description"]
    assert description.startswith("AADSTS70012: A server error occurred while authenticating an MSA")


def test_authorize_errors_go_to_a_trusted_redirect_or_the_error_page(fake_sts: StsSandbox) -> None:
    fake_sts.fail("authorize", aadsts=53003, times=2)
    params = {"client_id": fake_sts.web.client_id, "response_type": "code", "scope": "openid",
              "redirect_uri": "http://localhost:5000/getAToken", "state": "st"}
    url = f"{fake_sts.authority()}/oauth2/v2.0/authorize"
    redirected = fake_sts.http_client().get(f"{url}?{urlencode(params)}", allow_redirects=False)
    error = dict(parse_qsl(urlsplit(redirected.headers["location"]).query))
    assert error["error"] == "invalid_grant" and error["state"] == "st"
    assert error["error_description"].startswith("AADSTS53003:") and error["suberror"] == "message_only"
    page = fake_sts.http_client().get(f"{url}?{urlencode({**params, 'redirect_uri': 'https://evil.test/'})}")
    assert page.status_code == 400 and "AADSTS53003" in page.text and "Correlation Id:" in page.text


def test_delay_then_normal_answer(fake_sts: StsSandbox) -> None:
    fake_sts.delay("token", seconds=0.2, times=1)
    [slow, fast] = [(_token(fake_sts), e) for e in range(2)]
    assert slow[0].status_code == 200 and fast[0].status_code == 200
    first, second = fake_sts.journal.entries("token")
    assert first.duration_ms >= 190 and second.duration_ms < 150 and first.rule is not None


@pytest.mark.parametrize(("document", "key", "reason"), [
    ({"rules": [{"response": {"aadsts": 1}}]}, "rules[0].response.aadsts", "AADSTS1 is not in the catalog"),
    ({"rules": [{"response": {"aadsts": 70012}, "bogus": 1}]}, "rules[0]", "'bogus' was unexpected"),
    ({"rules": [{"response": {"aadsts": 70012}, "schedule": {"times": 0}}]}, "rules[0].schedule.times",
     "less than the minimum"),
    ({"rules": [{"match": {"endpoint": "tokn"}, "response": {"status": 500}}]}, "rules[0].match.endpoint",
     "unknown endpoint 'tokn'"),
    ({"rules": [{"response": {"status": 500}, "throttle": {"limit": 1, "per": 1}}]}, "rules[0]",
     "a rule has 'response' or 'throttle', not both"),
    ({"rules": [{"response": {"fault": "reset", "status": 500}}]}, "rules[0].response.fault", "no status or body"),
    ({"rules": [{"response": {"headers": {}}}]}, "rules[0].response", "needs one of"),
    ({"rules": [{"id": "a", "response": {"status": 500}}, {"id": "a", "response": {"status": 500}}]},
     "rules[1].id", "duplicate rule id 'a'"),
    ({"rules": []}, "rules", "should be non-empty"),
])
def test_strict_loading_names_key_and_reason(document: dict[str, Any], key: str, reason: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse(document, "test.yaml")
    assert (caught.value.source, caught.value.key) == ("test.yaml", key)
    assert reason in caught.value.reason


def test_bad_files_name_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("rules:\n  - response: {aadsts: 70012\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: line 3, column 1: not valid YAML"):
        load_file(bad)
    with pytest.raises(ConfigError, match="file not found"):
        load_file(tmp_path / "missing.yaml")


def test_fail_rejects_unknown_arguments_like_files_do(fake_sts: StsSandbox) -> None:
    with pytest.raises(ConfigError, match="tims: unknown argument"):
        fake_sts.fail("token", aadsts=70012, tims=2)
    with pytest.raises(ConfigError, match="AADSTS12345 is not in the catalog"):
        fake_sts.fail("token", aadsts=12345)
    with pytest.raises(ConfigError, match=r"needs what to answer with: .*e\.g\. aadsts=70012"):
        fake_sts.fail("token")  # what it should answer is missing: say so, not "not both"
    with pytest.raises(ConfigError, match="AADSTS50126 is not transient"):
        fake_sts.fail("token", aadsts=50126, shape="temporarily_unavailable")
    assert fake_sts.scenarios == []  # nothing half-loaded


def test_a_key_given_twice_in_a_scenario_file_is_an_error(tmp_path: Path) -> None:
    twice = tmp_path / "twice.yaml"
    twice.write_text("rules:\n  - response: {aadsts: 70012}\n    response: {aadsts: 90033}\n")
    with pytest.raises(ConfigError, match=r"twice.yaml: line 3, column 5: not valid YAML: duplicate key 'response'"):
        load_file(twice)


def test_journal_entry_holds_each_field_of_the_request(fake_sts: StsSandbox) -> None:
    """The journal keeps each request as a row of ``JournalEntry``'s fields, in order; a field out of
    place would put one value under another's name."""
    import os

    fake_sts.fail("token", aadsts=90055, status=429, headers={"Retry-After": "7"}, times=1, id="slow-down")
    sent = str(uuid.uuid4())
    session = fake_sts.http_client()
    session.headers.update({"User-Agent": "journal-probe/1.0", "client-request-id": sent})
    before = fake_sts.journal.entries()
    response = _token(fake_sts, session)
    assert response.status_code == 429
    (entry,) = fake_sts.journal.entries(since=before[-1].seq if before else 0)
    assert entry.sandbox == fake_sts.sandbox.sandbox_id and entry.endpoint == "token" and entry.method == "POST"
    assert entry.path == f"/{fake_sts.tenant_id}/oauth2/v2.0/token"
    assert entry.params["client_secret"] == "***" and entry.params["scope"] == "api://fakests-api/.default"
    assert (entry.client_id, entry.grant_type) == (fake_sts.daemon.client_id, "client_credentials")
    assert (entry.client_request_id, entry.correlation_id) == (sent, sent)
    assert entry.trace_id == response.headers["x-ms-request-id"] != sent
    assert (entry.status, entry.aadsts, entry.error) == (429, 90055, response.json()["error"])
    assert entry.rule is not None and entry.rule.endswith("/slow-down")
    assert (entry.retry_after, entry.fault) == ("7", None)
    assert isinstance(entry.duration_ms, float) and entry.duration_ms >= 0
    assert entry.user_agent == "journal-probe/1.0" and entry.early_retry is False
    assert entry.worker == os.getpid() and isinstance(entry.at, float) and entry.seq > 0


def test_stored_journal_rows_read_back_as_entries_in_both_formats() -> None:
    """The shared stores keep rows (``entry_row``); a Redis store may still hold dicts an earlier fakests
    wrote. Both read back as the same entry, numbered by the store."""
    from dataclasses import asdict, replace

    from fakests.state.journal import JournalEntry, entry_from_row, entry_row

    entry = JournalEntry(7, "sb", "token", "POST", "/t/oauth2/v2.0/token", 1.5, {"scope": "x"}, "cid", "password",
                         "crid", "trace", "corr", 400, 50126, "invalid_grant", "s/r", "3", None, 1.25, "ua", True, 42)
    assert entry_from_row(entry_row(entry), 99) == replace(entry, seq=99)
    assert entry_from_row(asdict(entry), 99) == replace(entry, seq=99)
