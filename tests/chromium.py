"""Real headless Chromium for the browser tests: Debian's binary, driven by Playwright.

Playwright's own browser download does not work on these machines, so tests point it at
``/usr/bin/chromium`` (``FAKESTS_CHROMIUM`` to override; CI installs it in ``.ci/run``). Chromium
trusts exactly the fakests server's key (an SPKI pin), never "ignore certificate errors".
``tests/conftest.py`` registers this module as a plugin, so its fixtures need no import.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from playwright.sync_api import Browser, BrowserContext, Page, Playwright, sync_playwright

from fakests import FakeSTS

CHROMIUM = os.environ.get("FAKESTS_CHROMIUM", "/usr/bin/chromium")
# Without the background-networking flags Chromium dials out (component updates, sync...), which a
# closed network refuses; --headless etc. keep it quiet and deterministic.
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ARTIFACTS = Path(__file__).parent / "artifacts"
WAIT_MS = 15_000


def spki_sha256(cert_pem: bytes) -> str:
    """Base64 SHA-256 of a certificate's SubjectPublicKeyInfo: Chromium's SPKI pin format."""
    cert = x509.load_pem_x509_certificate(cert_pem)
    spki = cert.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(hashlib.sha256(spki).digest()).decode()


def screenshot(page: Page, name: str) -> Path:
    """A full-page screenshot in ``tests/artifacts/{name}.png`` (kept for people to look at)."""
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


@contextlib.contextmanager
def fresh_context(browser: Browser, *, width: int = 1000, height: int = 760,
                  **options: Any) -> Iterator[BrowserContext]:
    """A fresh profile (no cookies) with the tests' timeouts; it never ignores certificate errors."""
    context = browser.new_context(ignore_https_errors=False, viewport={"width": width, "height": height},
                                  locale="en-US", **options)
    context.set_default_timeout(WAIT_MS)
    context.set_default_navigation_timeout(WAIT_MS)
    try:
        yield context
    finally:
        context.close()


@pytest.fixture(scope="module")
def playwright_driver() -> Iterator[Playwright]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"Chromium is not installed at {CHROMIUM}: run `apt-get install chromium` (CI installs it "
                    "in .ci/run), or set FAKESTS_CHROMIUM to a Chromium binary", pytrace=False)
    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="module")
def browser(playwright_driver: Playwright, fake_sts_server: FakeSTS | None) -> Iterator[Browser]:
    """Chromium trusting exactly the fakests server certificate (by its public key)."""
    assert fake_sts_server is not None and fake_sts_server.runtime.tls is not None, \
        "the browser tests need fakests in this process, over TLS (not FAKESTS_URL)"
    pin = spki_sha256(fake_sts_server.runtime.tls.cert.read_bytes())
    browser = playwright_driver.chromium.launch(
        executable_path=CHROMIUM, args=[*CHROMIUM_ARGS, f"--ignore-certificate-errors-spki-list={pin}"],
        timeout=30_000)
    try:
        yield browser
    finally:
        browser.close()
