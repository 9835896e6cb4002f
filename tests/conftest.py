"""Shared test settings. The ``fake_sts`` fixture itself comes from the installed plugin."""

from __future__ import annotations

import dataclasses
import os

import pytest

from fakests.state.settings import Settings

# fakests serve's managed-identity endpoints listen on 8480 by default: tests that serve (in-process or in a
# subprocess that inherits this) take a free port instead, so parallel workers never collide.
os.environ.setdefault("FAKESTS_IDENTITY_PORT", "0")

# Real Chromium for the browser tests (playwright_driver, browser); an in-process app for the admin tests;
# pytester, to run a test session inside a test (what the fixture does at teardown).
pytest_plugins = ["tests.chromium", "tests.inprocess", "pytester"]


@pytest.fixture(scope="session")
def fake_sts_settings(fake_sts_settings: Settings) -> Settings:  # type: ignore[override]
    """The plugin's settings with a 1 s device-code polling interval, so device-flow tests poll fast."""
    return dataclasses.replace(fake_sts_settings, device_code_interval=1)
