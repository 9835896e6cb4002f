"""pytest fixtures (registered through the ``pytest11`` entry point): ``fake_sts`` and friends.

One fakests server per test session (over TLS, on 127.0.0.1 and a free port); every test gets its
own sandbox on it (``fake_sts``), dropped at the end of the test. Sandboxes are isolated by tenant
and client ids, so pytest-xdist workers and parallel tests never see each other's state. At teardown
the test fails if fakests hit an internal error while serving it (pytest-httpserver leaves that to a
manual ``check()``; here it is automatic) or could not journal its requests, and it warns
(``FakeStsWarning``; ``filterwarnings = error::fakests.FakeStsWarning`` makes it an error) when its
requests reached the shared default sandbox instead of its own, or a rule it armed never matched: the
two ways a test silently tests nothing.

Override points (session scope): ``fake_sts_settings``.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
import warnings
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from ..state.directory import FIRST_PARTY_APP_IDS, MSA_TENANT_ID
from ..state.journal import JournalEntry
from ..state.sandbox import Sandbox
from ..state.settings import Settings
from .fakests import FakeSTS
from .sandbox import FakeStsWarning, StsSandbox


@pytest.fixture(scope="session")
def fake_sts_settings() -> Settings:
    """Settings of the session's fakests: ``FAKESTS_*`` environment variables over the defaults,
    always on 127.0.0.1 and a free port. The state directory (keys, CA) is a per-session temporary
    directory unless ``FAKESTS_STATE_DIR`` names one."""
    base = Settings(port=0, state_dir=Path(tempfile.mkdtemp(prefix="fakests-")))
    settings = Settings.from_env(base=base)
    if "FAKESTS_STATE_DIR" not in os.environ:
        settings = dataclasses.replace(settings, state_dir=base.state_dir)
    return dataclasses.replace(settings, host="127.0.0.1", port=0, log_requests=False)


@pytest.fixture(scope="session")
def fake_sts_server(fake_sts_settings: Settings) -> Iterator[FakeSTS | None]:
    """The session's fakests server over TLS; None when ``FAKESTS_URL`` names a running one."""
    if os.environ.get("FAKESTS_URL"):
        yield None
        return
    server = FakeSTS(fake_sts_settings).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def fake_sts(fake_sts_server: FakeSTS | None) -> Iterator[StsSandbox]:
    """A fresh, isolated sandbox for this test: its own tenants, apps, users, clock and journal.

    With ``FAKESTS_URL`` set (e.g. ``https://fakests:8443`` in docker-compose) the sandbox is made on
    that server through its admin API (``FAKESTS_ADMIN_TOKEN``; ``FAKESTS_CA`` names the CA file,
    else it is fetched from the server)."""
    if fake_sts_server is None:
        from .remote import RemoteSandbox

        sandbox: StsSandbox = RemoteSandbox.create(os.environ["FAKESTS_URL"],
                                                   admin_token=os.environ.get("FAKESTS_ADMIN_TOKEN"),
                                                   ca_path=os.environ.get("FAKESTS_CA"))
    else:
        sandbox = fake_sts_server.sandbox()
    # This process's server: what reached its default sandbox during the test came from the test.
    default = fake_sts_server.runtime.sandboxes.default if fake_sts_server is not None else None
    before = default.journal.last_seq() if default is not None else 0
    try:
        yield sandbox
    finally:
        errors = list(sandbox.internal_errors)
        lost = sandbox.journal_lost
        stray = _default_ids_used(default, before) if default is not None else []
        idle = _rules_that_never_matched(sandbox)
        sandbox.drop()
    if errors:
        pytest.fail("fakests hit an internal error while serving this test:\n" + "\n".join(errors), pytrace=False)
    if lost:
        pytest.fail(f"fakests answered {lost} of this test's requests but could not journal them (a full disk or an "
                    "unreachable store): the journal this test read is incomplete", pytrace=False)
    if stray:
        seen = Counter(f"{e.endpoint} {e.client_id or e.path}" for e in stray)
        warnings.warn(FakeStsWarning(
            f"{len(stray)} request(s) during this test reached fakests' default sandbox, not this test's "
            f"({', '.join(f'{n}x {k}' for k, n in seen.most_common(3))}): they used the default directory's "
            "fixed ids or authority, so this test's rules and journal never saw them. Take URLs and ids from "
            "the handle: fake_sts.authority(), fake_sts.tenant_id, fake_sts.daemon.client_id..."), stacklevel=1)
    for name in idle:
        warnings.warn(FakeStsWarning(
            f"{name} was armed in this test but never matched a request: check its endpoint and match "
            "(client_id, tenant...), and that the client used this test's authority"), stacklevel=1)


@pytest.fixture
def fake_sts_intercepted(fake_sts: StsSandbox) -> Iterator[StsSandbox]:
    """``fake_sts`` with ``fake_sts.intercept()`` active for the whole test: calls to Entra's own hosts are
    answered by this test's sandbox in-process (add the app's fixed ids with ``add_tenant``/``add_app``)."""
    with fake_sts.intercept():
        yield fake_sts


def _default_ids_used(default: Sandbox, since: int) -> list[JournalEntry]:
    """Requests since ``since`` that named the default sandbox's own tenants or apps (the README's fixed
    ids). Requests that name neither (the user-realm lookup, ``/common`` discovery, the device login
    page) reach the default sandbox by design and are not counted."""
    journal = default.journal
    if journal.last_seq() == since:
        return []
    directory = default.directory
    tenants = {t.lower() for t in directory.tenants if t != MSA_TENANT_ID}
    tenants |= {d.lower() for t, tenant in directory.tenants.items() if t != MSA_TENANT_ID for d in tenant.domains}
    apps = {a for a in directory.apps if a not in FIRST_PARTY_APP_IDS} | set(directory.identities)
    return [e for e in journal.entries(since=since)
            if e.client_id in apps or e.path.split("/")[1].lower() in tenants]


def _rules_that_never_matched(sandbox: StsSandbox) -> list[str]:
    """One-line rules (``fail``, ``delay``, ``throttle``) that matched nothing, and scenarios none of whose
    rules matched (a scenario may cover endpoints a test does not use)."""
    engine = getattr(getattr(sandbox, "sandbox", None), "_engine", None)
    if engine is None:  # no rule armed, or a remote sandbox
        return []
    matched: dict[str, bool] = {}
    for state in engine.states:
        key = f"rule {state.scenario!r}" if state.scenario.startswith("fake_sts.") else f"scenario {state.scenario!r}"
        matched[key] = matched.get(key, False) or state.matched > 0
    return [key for key, hit in matched.items() if not hit]
