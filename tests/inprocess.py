"""An in-process fakests (TLS off) for the admin-API tests: one app per test module, so keys are made once.

Registered as a plugin by ``tests/conftest.py``: ``state_dir`` (the module's state directory), ``s``
(a ``requests.Session`` answered by the app in-process) and ``sandbox`` (a fresh sandbox as
``POST /_fakests/sandboxes`` describes it, dropped afterwards).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from fakests.server.app import create_app
from fakests.state.settings import Settings
from fakests.testing.transport import session_for

ORIGIN = "https://fakests.test"
ADMIN = f"{ORIGIN}/_fakests"


@pytest.fixture(scope="module")
def state_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("inprocess-state")


@pytest.fixture(scope="module")
def s(state_dir: Path) -> requests.Session:
    """One app (and one runtime: keys are made once) for the whole module."""
    return session_for(create_app(Settings(state_dir=state_dir, tls=False)), ORIGIN)


@pytest.fixture
def sandbox(s: requests.Session) -> Iterator[dict[str, Any]]:
    """A fresh sandbox, as ``POST /sandboxes`` describes it; dropped afterwards."""
    r = s.post(f"{ADMIN}/sandboxes")
    assert r.status_code == 201, r.text
    body = r.json()
    yield body
    s.delete(f"{ADMIN}/sandboxes/{body['sandbox_id']}")
