"""The interception tests' app: production-like fixed ids, registered in the test's sandbox."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from fakests import App, StsSandbox
from fakests.state.directory import Secret

APP_TENANT = "3c1c6f3e-1a7b-4b8e-9d6a-2f0e5c8b7a11"
APP_DOMAIN = "contoso-prod.onmicrosoft.com"
APP_CLIENT_ID = "6b0d2f5e-8c44-4f1a-b3a2-7e9c1d0f4a22"
APP_SECRET = "prod-like-secret"
API_SCOPE = "https://graph.microsoft.com/.default"


def _register_app(sandbox: StsSandbox) -> StsSandbox:
    sandbox.add_tenant(APP_TENANT, APP_DOMAIN, display_name="Contoso (production ids)")
    sandbox.add_app(App(client_id=APP_CLIENT_ID, display_name="the app", tenant_id=APP_TENANT,
                        secrets=[Secret(APP_SECRET)]))
    return sandbox


@pytest.fixture
def app_ids(fake_sts: StsSandbox) -> StsSandbox:
    """The sandbox holding the app's production ids (its tenant, domain, client id and secret)."""
    return _register_app(fake_sts)


@pytest.fixture
def other_app_ids(fake_sts_server: Any) -> Iterator[StsSandbox]:
    """A second sandbox on the same server with the same production ids: interception must keep them apart."""
    other = fake_sts_server.sandbox()
    try:
        yield _register_app(other)
    finally:
        other.drop()
