"""Run inside ``tests.serving.run_impersonating``'s namespace: the example SPA, unchanged apart from its
production authority ``https://login.microsoftonline.com/<tenant>``, signs in through Chromium against
``fakests serve --impersonate`` (the namespace's /etc/hosts sends Entra's names to it). Prints the app's
outcome as one JSON line. Usage: ``python tests/spa_impersonated.py STATE_DIR``.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

from playwright.sync_api import sync_playwright

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from examples.spa import serve
from fakests.state import defaults
from tests.chromium import CHROMIUM, CHROMIUM_ARGS, spki_sha256


def main() -> None:
    state = Path(sys.argv[1])
    pin = spki_sha256((state / "tls" / "server.pem").read_bytes())
    config = {"authority": f"https://login.microsoftonline.com/{defaults.TENANT_ID}", "clientId": defaults.SPA_ID}
    server = serve.start(config)
    url = f"http://localhost:{server.server_address[1]}"
    with sync_playwright() as driver, tempfile.TemporaryDirectory() as profile:
        context = driver.chromium.launch_persistent_context(
            profile, executable_path=CHROMIUM, args=[*CHROMIUM_ARGS, f"--ignore-certificate-errors-spki-list={pin}"])
        context.set_default_timeout(15_000)
        page = context.pages[0] if context.pages else context.new_page()
        page.goto(url)
        page.locator("body[data-ready=true]").wait_for()
        page.locator("#login-redirect").click()
        page.get_by_role("heading", name="Pick an account").wait_for()
        print("sign-in page at", page.url, file=sys.stderr)
        page.locator('button.tile[value="alice@contoso.com"]').click()
        page.locator('input[name="passwd"]').fill(defaults.PASSWORD)
        page.locator("#idSIButton9").click()
        page.wait_for_url(f"{url}/**")
        deadline = time.monotonic() + 15
        outcome = None
        while time.monotonic() < deadline and not outcome:
            outcome = page.evaluate("window.lastOutcome || null")
            time.sleep(0.05)
        print(json.dumps(outcome))
        context.close()
    server.shutdown()


if __name__ == "__main__":
    main()
