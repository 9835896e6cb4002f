"""The fixture's warnings for the two ways a test silently tests nothing (run as a user's session).

A test that talks to the README's fixed ids reaches the shared default sandbox: its armed rule never
fires and its journal stays empty. A rule whose match never fits is the same trap. ``fake_sts`` warns at
teardown (``FakeStsWarning``); ``filterwarnings = error`` (common, and this project's own) makes it an
error. Requests that name no tenant or app (MSAL's user-realm lookup, ``/common`` discovery) are fine.
"""

from __future__ import annotations

import pytest

USER_TESTS = '''
from fakests.state import defaults as d


def _token(http, authority, client_id, secret):
    return http.post(f"{authority}/oauth2/v2.0/token", data={
        "grant_type": "client_credentials", "client_id": client_id, "client_secret": secret,
        "scope": f"{d.API_URI}/.default"})


def test_uses_the_readme_ids(fake_sts, fake_sts_server):
    rule = fake_sts.fail("token", aadsts=70012)
    http = fake_sts.http_client()
    assert _token(http, fake_sts_server.authority(), d.DAEMON_ID, d.DAEMON_SECRET).status_code == 200
    assert rule.fired == 0  # the trap: it looks like the client shrugged off AADSTS70012


def test_rule_for_a_client_that_never_calls(fake_sts):
    fake_sts.fail("token", aadsts=70012, client_id="00000000-0000-0000-0000-000000000000")
    http = fake_sts.http_client()
    assert _token(http, fake_sts.authority(), fake_sts.daemon.client_id, fake_sts.daemon.secret).status_code == 200


def test_done_right(fake_sts):
    rule = fake_sts.fail("token", aadsts=70012, times=1)
    http = fake_sts.http_client()
    assert http.get(f"{fake_sts.url}/common/userrealm/alice@contoso.com?api-version=1.0").status_code == 200
    assert http.get(f"{fake_sts.url}/common/v2.0/.well-known/openid-configuration").status_code == 200
    first = _token(http, fake_sts.authority(), fake_sts.daemon.client_id, fake_sts.daemon.secret)
    second = _token(http, fake_sts.authority(), fake_sts.daemon.client_id, fake_sts.daemon.secret)
    assert (first.status_code, second.status_code, rule.fired) == (500, 200, 1)
'''


@pytest.mark.parametrize("strict", [False, True], ids=["warn", "filterwarnings-error"])
def test_the_fixture_warns_when_a_test_tests_nothing(pytester: pytest.Pytester, strict: bool) -> None:
    pytester.makepyfile(test_user=USER_TESTS)
    if strict:
        pytester.makeini("[pytest]\nfilterwarnings =\n    error\n")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-rA")  # its own warning filters
    if strict:  # each trapped test errors at teardown; the one done right passes
        result.assert_outcomes(passed=3, errors=2)
    else:
        result.assert_outcomes(passed=3, warnings=3)  # the first test trips both
    result.stdout.fnmatch_lines([
        "*1 request(s) during this test reached fakests' default sandbox, not this test's (1x token "
        "fa7e0000-0000-4000-8000-00000000a001)*",
        "*rule 'fake_sts.fail-*' was armed in this test but never matched a request*",
    ])
    assert "test_done_right" not in "\n".join(line for line in result.outlines if "FakeStsWarning" in line)
