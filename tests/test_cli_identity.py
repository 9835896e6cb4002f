"""``fakests serve`` serves the managed-identity endpoints by default, and ``fakests env --managed-identity``
prints what a client on the machine needs: both proven with unmodified azure-identity in a real process."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import requests

from fakests.state import defaults as d
from tests.jwks import verify
from tests.serving import serve

SNIPPET = """
from azure.identity import ManagedIdentityCredential
print(ManagedIdentityCredential().get_token("https://management.azure.com/.default").token)
"""


def _clean() -> dict[str, str]:
    drop = ("FAKESTS_", "IDENTITY_", "MSI_", "AZURE_POD_IDENTITY", "IMDS_")
    return {k: v for k, v in os.environ.items() if not k.startswith(drop)}


def _token_with(env: dict[str, str]) -> str:
    done = subprocess.run([sys.executable, "-c", SNIPPET], env=env, capture_output=True, text=True, timeout=120,
                          check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_serve_prints_and_serves_the_managed_identity_endpoints(tmp_path: Path) -> None:
    with serve(["--port", "0", "--identity-port", "0", "--state-dir", str(tmp_path), "--no-log-requests"],
               _clean()) as server:
        line = next(x for x in server.banner.splitlines() if "AZURE_POD_IDENTITY_AUTHORITY_HOST=" in x)
        imds = re.search(r"AZURE_POD_IDENTITY_AUTHORITY_HOST=(\S+)", line)
        assert imds and imds.group(1).startswith("http://localhost:")
        app_service = next(x for x in server.banner.splitlines() if "IDENTITY_ENDPOINT=" in x)
        assert "/msi/token" in app_service and "IDENTITY_HEADER=" in app_service
        token = _token_with({**_clean(), "AZURE_POD_IDENTITY_AUTHORITY_HOST": imds.group(1)})
        session = requests.Session()
        session.verify, session.trust_env = str(tmp_path / "tls" / "ca.pem"), False
        claims = verify(token, session, f"{server.url}/{d.TENANT_ID}", "https://management.azure.com")
        assert claims["appid"] == d.SYSTEM_IDENTITY_CLIENT_ID and claims["xms_mirid"] == d.VM_RESOURCE_ID

        # fakests env --managed-identity app_service: the lines work as printed, in a shell.
        port = imds.group(1).rsplit(":", 1)[1]
        printed = subprocess.run([sys.executable, "-m", "fakests", "env", "--managed-identity", "app_service",
                                  "--identity-port", port, "--state-dir", str(tmp_path)],
                                 env=_clean(), capture_output=True, text=True, timeout=60, check=True).stdout
        assert "export IDENTITY_ENDPOINT=" in printed and "unset AZURE_POD_IDENTITY_AUTHORITY_HOST" in printed
        shell = subprocess.run(["bash", "-c", f"{printed}\nexec {sys.executable} -c '{SNIPPET}'"],
                               env={**_clean(), "AZURE_POD_IDENTITY_AUTHORITY_HOST": "http://127.0.0.1:9"},
                               capture_output=True, text=True, timeout=120, check=False)
        assert shell.returncode == 0, shell.stderr
        verify(shell.stdout.strip(), session, f"{server.url}/{d.TENANT_ID}", "https://management.azure.com")


def test_identity_port_in_use_stops_start_up_with_one_line(tmp_path: Path) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run([sys.executable, "-m", "fakests", "serve", "--port", "0", "--identity-port", str(port),
                               "--state-dir", str(tmp_path)], env=_clean(), capture_output=True, text=True,
                              timeout=60, check=False)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert f"identity_port: cannot listen on 127.0.0.1:{port}" in done.stderr


WORKLOAD_SNIPPET = """
from azure.identity import WorkloadIdentityCredential
print(WorkloadIdentityCredential(disable_instance_discovery=True).get_token("https://graph.microsoft.com/.default").token)
"""


def test_env_workload_identity_prints_a_pods_variables(tmp_path: Path) -> None:
    """``fakests env --workload-identity``: a token file of the fake cluster and the four variables, which
    azure-identity's WorkloadIdentityCredential takes as printed (the CA from ``fakests env``)."""
    with serve(["--port", "0", "--identity-port", "-1", "--state-dir", str(tmp_path), "--no-log-requests"],
               _clean()) as server:
        port = server.url.rsplit(":", 1)[1]
        printed = subprocess.run([sys.executable, "-m", "fakests", "env", "--workload-identity", "--port", port,
                                  "--state-dir", str(tmp_path)],
                                 env=_clean(), capture_output=True, text=True, timeout=60, check=True).stdout
        assert f"export AZURE_AUTHORITY_HOST={server.url}\n" in printed and "unset AZURE_CLIENT_SECRET" in printed
        assert f"export AZURE_CLIENT_ID={d.DAEMON_ID}\n" in printed
        ca = tmp_path / "tls" / "ca.pem"
        shell = subprocess.run(["bash", "-c", f"{printed}\nexec {sys.executable} -c '{WORKLOAD_SNIPPET}'"],
                               env={**_clean(), "AZURE_CLIENT_SECRET": "would-win", "REQUESTS_CA_BUNDLE": str(ca)},
                               capture_output=True, text=True, timeout=120, check=False)
        assert shell.returncode == 0, shell.stderr
        session = requests.Session()
        session.verify, session.trust_env = str(ca), False
        claims = verify(shell.stdout.strip(), session, f"{server.url}/{d.TENANT_ID}", "https://graph.microsoft.com")
        assert claims["appid"] == d.DAEMON_ID and claims["appidacr"] == "2"


def test_serve_and_env_for_arc_and_service_fabric(tmp_path: Path) -> None:
    """The banner names Arc and Service Fabric; ``fakests env --managed-identity`` lines work as printed with
    unmodified azure-identity: Service Fabric over the STS's TLS port, pinned; Arc in a mount namespace where
    /var/opt/azcmagent/tokens is the server's ``--arc-key-dir``."""
    import shlex

    from tests.arc import python_client, run_as_arc_client

    keys = tmp_path / "keys"
    keys.mkdir()
    state = tmp_path / "state"
    with serve(["--port", "0", "--identity-port", "0", "--state-dir", str(state), "--arc-key-dir", str(keys),
                "--no-log-requests"], _clean()) as server:
        banner = server.banner.splitlines()
        arc_line = next(x for x in banner if "IMDS_ENDPOINT=" in x)
        fabric_line = next(x for x in banner if "IDENTITY_SERVER_THUMBPRINT=" in x)
        assert "/arc/metadata/identity/oauth2/token" in arc_line and f"{server.url}/servicefabric/" in fabric_line
        assert any(str(keys) in x and "/var/opt/azcmagent/tokens" in x for x in banner)
        identity_port = re.search(r"IMDS_ENDPOINT=http://localhost:(\d+)", arc_line)
        assert identity_port is not None
        session = requests.Session()
        session.verify, session.trust_env = str(state / "tls" / "ca.pem"), False

        def printed(source: str) -> str:
            return subprocess.run([sys.executable, "-m", "fakests", "env", "--managed-identity", source,
                                   "--port", server.url.rsplit(":", 1)[1], "--identity-port", identity_port.group(1),
                                   "--state-dir", str(state), "--arc-key-dir", str(keys)],
                                  env=_clean(), capture_output=True, text=True, timeout=60, check=True).stdout

        fabric = subprocess.run(["bash", "-c", f"{printed('service_fabric')}\nexec {sys.executable} -c '{SNIPPET}'"],
                                env=_clean(), capture_output=True, text=True, timeout=120, check=False)
        assert fabric.returncode == 0, fabric.stderr
        verify(fabric.stdout.strip(), session, f"{server.url}/{d.TENANT_ID}", "https://management.azure.com")

        # Azure ML's bare path is not App Service's /{tenant}/msi/token for a tenant named "azureml".
        ml = subprocess.run(["bash", "-c", f"{printed('azure_ml')}\nexec {sys.executable} -c '{SNIPPET}'"],
                            env=_clean(), capture_output=True, text=True, timeout=120, check=False)
        assert ml.returncode == 0, ml.stderr
        verify(ml.stdout.strip(), session, f"{server.url}/{d.TENANT_ID}", "https://management.azure.com")

        argv = " ".join(map(shlex.quote, python_client("default", "https://management.azure.com")))
        arc = run_as_arc_client(["bash", "-c", f"{printed('arc')}\nexec {argv}"], keys, _clean())
        assert arc["ok"], arc
        claims = verify(arc["token"], session, f"{server.url}/{d.TENANT_ID}", "https://management.azure.com")
        assert claims["appid"] == d.SYSTEM_IDENTITY_CLIENT_ID
