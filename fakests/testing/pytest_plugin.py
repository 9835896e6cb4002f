"""pytest fixtures (registered through the ``pytest11`` entry point): ``fake_sts`` and friends.

One fakests server per test session (over TLS, on 127.0.0.1 and a free port); every test gets its
own sandbox on it (``fake_sts``), dropped at the end of the test. Sandboxes are isolated by tenant
and client ids, so pytest-xdist workers and parallel tests never see each other's state. At teardown
the test fails if fakests hit an internal error while serving it (pytest-httpserver leaves that to a
manual ``check()``; here it is automatic).

Override points (session scope): ``fake_sts_settings``.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from ..state.settings import Settings
from .fakests import FakeSTS
from .sandbox import StsSandbox


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
    try:
        yield sandbox
    finally:
        errors = list(sandbox.internal_errors)
        lost = sandbox.journal_lost
        sandbox.drop()
    if errors:
        pytest.fail("fakests hit an internal error while serving this test:\n" + "\n".join(errors), pytrace=False)
    if lost:
        pytest.fail(f"fakests answered {lost} of this test's requests but could not journal them (a full disk or an "
                    "unreachable store): the journal this test read is incomplete", pytrace=False)
