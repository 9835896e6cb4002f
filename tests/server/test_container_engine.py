"""The image and docker-compose.yml in a real container engine (rootful podman), as a user runs them.

``.ci/containers.sh`` builds the unmodified Dockerfile on a local stand-in for ``python:3.11-slim`` (no
image registry is reachable here), runs the image alone until its healthcheck passes, then runs the
compose file: ``fakests`` healthy first (the healthcheck gates the client), then the ``app-tests``
service's own pytest run against ``https://fakests:8443`` by service name. Then the ``impersonate`` profile:
the same image as ``entra``, answering on 443 as ``login.microsoftonline.com`` (network aliases), and the
unmodified ``examples/entra_app/app.py`` in ``entra-app``, trusting only the CA bundle from the shared
volume: AADSTS70012 armed twice, the app's retries, its tokens, and a token verified from the real
metadata URL with PyJWT's ``PyJWKClient``. Then the ``imds`` profile: the same image as ``imds`` at IMDS's
own address, 169.254.169.254, serving the managed-identity endpoints on port 80, and the unmodified
``examples/imds_app/app.py`` in ``imds-app`` with no Azure variable at all: azure-identity's
``ManagedIdentityCredential`` (riding out a 429 armed once through the admin API) and ``DefaultAzureCredential``
(its probe included) and MSAL Python's ``ManagedIdentityClient`` get tokens, one is verified against the
served JWKS and the pinned issuer, a ``RemoteSandbox`` of its own gets its managed-identity endpoint from the
admin API, and the default sandbox's journal shows each of the app's requests. It rewrites the machine's
``/etc/containers/containers.conf`` and installs Debian packages, so it runs under CI (where a missing
engine is a failure) or when ``FAKESTS_CONTAINER_TESTS=1`` asks for it; elsewhere it skips.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / ".ci" / "containers.sh"


def test_the_image_and_compose_file_pass_in_a_real_container_engine() -> None:
    asked = os.environ.get("FAKESTS_CONTAINER_TESTS") == "1" or bool(os.environ.get("CI"))
    if not asked:
        pytest.skip("set FAKESTS_CONTAINER_TESTS=1 to build and run the image with podman (it configures "
                    "the machine's container engine); CI always does")
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        pytest.fail("the container test needs root and apt-get (rootful podman, installed by .ci/containers.sh)",
                    pytrace=False)
    done = subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True, timeout=1500)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-6000:]
    assert "image HEALTHCHECK: fakests health" in output
    assert "discovery through the published port: https://" in output
    app_tests = [line for line in output.splitlines() if line.startswith("app-tests: ")]
    assert app_tests and " passed" in app_tests[-1] and "failed" not in app_tests[-1], output[-3000:]
    # The impersonate profile: the unmodified app, production authority, reached fakests by Entra's name.
    tokens = [line for line in output.splitlines() if line.startswith("entra-app: ")]
    assert [t.split(":")[1].strip() for t in tokens] == ["msal", "azure-identity"], output[-3000:]
    assert all(": eyJ" in t for t in tokens), tokens
    assert "entra-app retries: 2" in output, output[-3000:]  # the two scripted 70012s, retried by the app
    tenant = "3c1c6f3e-1a7b-4b8e-9d6a-2f0e5c8b7a11"
    assert (f"entra-app verified: https://login.microsoftonline.com/{tenant}/v2.0 https://sts.windows.net/{tenant}/ "
            "6b0d2f5e-8c44-4f1a-b3a2-7e9c1d0f4a22") in output, output[-3000:]
    # Both 70012s, then MSAL's token, azure-identity's and the verifying run's, all for the app's own client.
    assert "entra journal: [500, 500, 200, 200, 200]" in output, output[-3000:]
    # The imds profile: no variable points the app anywhere; IMDS's own address reached fakests.
    lines = output.splitlines()
    assert "imds-app Azure variables: []" in lines, output[-3000:]
    tokens = [line for line in lines if line.startswith("imds-app ") and ": eyJ" in line]
    assert [t.split(":")[0].removeprefix("imds-app ") for t in tokens] == [
        "ManagedIdentityCredential", "DefaultAzureCredential", "ManagedIdentityClient"], output[-3000:]
    # A v2 API's token: iss is the pinned STS origin the resource validated against, for the VM's identity.
    assert ("imds-app verified: https://imds:8443/fa7e0000-0000-4000-8000-000000000001/v2.0 "
            "fa7e0000-0000-4000-8000-00000000e001 fakests-vm Data.Read") in lines, output[-3000:]
    # The 429 and azure-identity's retry, DefaultAzureCredential's probe (400: no Metadata header) and its
    # token, MSAL's, the verifying run's: all on IMDS's bare path, so all in the default sandbox.
    assert "imds journal: [429, 200, 400, 200, 200, 200] ['/metadata/identity/oauth2/token']" in lines, output[-3000:]
    # A test's own sandbox (RemoteSandbox, as the fake_sts fixture makes it with FAKESTS_URL) in that container:
    # the admin API named its endpoints as http://imds:80/<its tenant>, and its journal has only its request.
    assert "imds-app remote sandbox: True [(200, True)]" in lines, output[-3000:]
    [waited] = [line for line in lines if line.startswith("imds retry after the 429 (Retry-After 1): ")]
    assert float(waited.rsplit(" ", 2)[1]) >= 1.0, waited  # it waited what IMDS asked
    assert "=== all checks passed" in output
