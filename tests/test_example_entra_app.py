"""``examples/entra_app``: an app written like production code, proven unmodified in both ways fakests offers.

In pytest the test adds the app's own ids to its sandbox and intercepts (``fake_sts.intercept()``); against
a server, ``fakests serve --impersonate`` answers as ``login.microsoftonline.com`` inside a private
network and mount namespace (``unshare``) whose ``/etc/hosts`` sends Entra's names to it, for the Python
app and the Node one. Each time AADSTS70012 is armed, the app's retries and the correlation id it shows
are checked against fakests' journal.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import textwrap
from pathlib import Path

import jwt
import pytest

from examples.entra_app import app as entra_app
from fakests import App, StsSandbox
from fakests.state.directory import Secret
from tests.serving import run_impersonating

EXAMPLE = Path(entra_app.__file__).resolve().parent
NODE_DIR = Path(__file__).resolve().parent / "node"


@pytest.fixture
def sandbox(fake_sts: StsSandbox, monkeypatch: pytest.MonkeyPatch) -> StsSandbox:
    """This test's sandbox with the app's production ids, and its environment as production sets it."""
    fake_sts.add_tenant(entra_app.TENANT_ID, entra_app.TENANT_DOMAIN)
    fake_sts.add_app(App(client_id=entra_app.CLIENT_ID, display_name="Entra example app",
                         tenant_id=entra_app.TENANT_ID, secrets=[Secret(entra_app.CLIENT_SECRET)]))
    for name, value in (("AZURE_TENANT_ID", entra_app.TENANT_ID), ("AZURE_CLIENT_ID", entra_app.CLIENT_ID),
                        ("AZURE_CLIENT_SECRET", entra_app.CLIENT_SECRET)):
        monkeypatch.setenv(name, value)
    return fake_sts


def test_the_msal_app_retries_70012_and_gets_its_token(sandbox: StsSandbox, caplog: pytest.LogCaptureFixture,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(entra_app.time, "sleep", lambda seconds: None)  # the backoff, not waited in a test
    sandbox.fail("token", aadsts=70012, times=2)
    with caplog.at_level(logging.WARNING, logger="entra_app"), sandbox.intercept():
        token = entra_app.graph_token()
    claims = jwt.decode(token, options={"verify_signature": False})
    assert (claims["tid"], claims["appid"]) == (entra_app.TENANT_ID, entra_app.CLIENT_ID)
    assert [e.status for e in sandbox.journal.entries("token")] == [500, 500, 200]
    assert [r.getMessage() for r in caplog.records] == [
        "sign-in attempt 1 of 3 failed: HTTP Error: 500", "sign-in attempt 2 of 3 failed: HTTP Error: 500"]


def test_the_azure_identity_app_shows_the_correlation_id_when_entra_keeps_failing(sandbox: StsSandbox) -> None:
    sandbox.fail("token", aadsts=70012, times=1)
    with sandbox.intercept():
        assert entra_app.graph_token_azure()  # azure-identity retried the 500 itself
    assert [e.status for e in sandbox.journal.entries("token")] == [500, 200]
    sandbox.journal.clear()
    sandbox.fail("token", aadsts=7000222)  # the secret expired: no retry helps
    with sandbox.intercept(), pytest.raises(entra_app.SignInFailed) as failed:
        entra_app.graph_token_azure()
    last = sandbox.journal.entries("token")[-1]
    assert failed.value.correlation_id == last.correlation_id and last.status == 401
    assert "AADSTS7000222" in str(failed.value) and last.correlation_id in str(failed.value)


def test_the_python_and_node_apps_against_fakests_serve_impersonate(tmp_path: Path) -> None:
    scenario = tmp_path / "twice-70012.yaml"
    scenario.write_text(textwrap.dedent(f"""\
        name: twice-70012
        rules:
          - id: msa-server-error
            match: {{endpoint: token, client_id: {entra_app.CLIENT_ID}}}
            response: {{aadsts: 70012}}
            schedule: {{times: 2}}
        """))
    node = shutil.which("node") if (NODE_DIR / "node_modules" / "@azure" / "identity").is_dir() else None
    if node is None and os.environ.get("CI"):
        pytest.fail("node and tests/node's packages are needed (npm ci --prefix tests/node)", pytrace=False)
    then = f"cd {EXAMPLE.parents[1]} && {sys.executable} -m examples.entra_app.app\n"
    if node:
        for script in ("token.mjs", "identity.mjs"):  # run where tests/node's packages resolve
            copy = NODE_DIR / f"entra-app-{script}"
            then += f"cp {EXAMPLE / script} {copy} && (cd {NODE_DIR} && {node} {copy.name})\n"
    env = {**os.environ, "AZURE_TENANT_ID": entra_app.TENANT_ID, "AZURE_CLIENT_ID": entra_app.CLIENT_ID,
           "AZURE_CLIENT_SECRET": entra_app.CLIENT_SECRET}
    try:
        done, log = run_impersonating(tmp_path, ["--config", str(EXAMPLE / "fakests.yaml"), "--scenarios",
                                                 str(scenario)], then, env)
    finally:
        for script in ("token.mjs", "identity.mjs"):
            (NODE_DIR / f"entra-app-{script}").unlink(missing_ok=True)
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}\n--- fakests:\n{log}"
    # The scripted 70012 twice: the MSAL app's first two attempts failed and it retried; then each client got in.
    assert done.stderr.count("sign-in attempt") == 2, done.stderr
    assert "msal: eyJ" in done.stdout and "azure-identity: eyJ" in done.stdout, done.stdout
    if node:
        issuer = f"https://sts.windows.net/{entra_app.TENANT_ID}/"  # Graph tokens are v1, as Entra's
        assert f"msal-node token for {entra_app.CLIENT_ID} from {issuer}" in done.stdout, done.stdout
        assert f"@azure/identity token for {entra_app.CLIENT_ID} from {issuer}" in done.stdout, done.stdout
