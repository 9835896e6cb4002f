"""``fakests serve --impersonate``: unmodified apps keep their production authority and reach fakests.

The app under test builds its client the way production code does: authority
``https://login.microsoftonline.com/<tenant>``, no ``http_client``, default instance discovery; or
``DefaultAzureCredential`` configured by ``AZURE_*`` variables alone; or msal-node with its defaults.
Only the CA bundle is set (``fakests ca --bundle``: the public CAs plus fakests', so other HTTPS calls
keep working). The host names reach fakests through a hosts file, as on a developer's machine, but in a
private network and mount namespace that the test makes (``unshare``): the machine's own ``/etc/hosts``
and network are untouched. A resource server validates the token the way real ones do, from the real
discovery URL (PyJWT's ``PyJWKClient`` on the ``jwks_uri`` it names).
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from fakests.state import defaults as d
from tests.serving import run_impersonating

NODE_DIR = Path(__file__).resolve().parents[1] / "node"

CLIENT = f"""
import jwt, msal, requests
from azure.identity import DefaultAzureCredential

authority = "https://login.microsoftonline.com/{d.TENANT_ID}"
scope = "{d.API_URI}/.default"


def validated(token):
    # A resource server: the real metadata URL, then the keys it names, then the claims.
    meta = requests.get(f"{{authority}}/v2.0/.well-known/openid-configuration", timeout=10).json()
    assert meta["issuer"] == "https://login.microsoftonline.com/{d.TENANT_ID}/v2.0", meta["issuer"]
    key = jwt.PyJWKClient(meta["jwks_uri"]).get_signing_key_from_jwt(token)
    return jwt.decode(token, key.key, algorithms=["RS256"], issuer=meta["issuer"], audience="{d.API_URI}",
                      options={{"verify_aud": False}})


app = msal.ConfidentialClientApplication("{d.DAEMON_ID}", client_credential="{d.DAEMON_SECRET}", authority=authority)
result = app.acquire_token_for_client(scopes=[scope])
assert "access_token" in result, result
print("msal", validated(result["access_token"])["azp"])
token = DefaultAzureCredential().get_token(scope)  # EnvironmentCredential: AZURE_* variables only
print("azure-identity", validated(token.token)["azp"])
"""

NODE_CLIENT = f"""
import {{ ConfidentialClientApplication }} from "@azure/msal-node";
const app = new ConfidentialClientApplication({{ auth: {{
  clientId: "{d.DAEMON_ID}", clientSecret: "{d.DAEMON_SECRET}",
  authority: "https://login.microsoftonline.com/{d.TENANT_ID}" }} }});
const result = await app.acquireTokenByClientCredential({{ scopes: ["{d.API_URI}/.default"] }});
const claims = JSON.parse(Buffer.from(result.accessToken.split(".")[1], "base64url"));
console.log("msal-node", claims.iss);
"""


def test_unmodified_clients_get_tokens_from_fakests_as_login_microsoftonline_com(tmp_path: Path) -> None:
    (tmp_path / "client.py").write_text(CLIENT)
    node = shutil.which("node") if (NODE_DIR / "node_modules" / "@azure" / "msal-node").is_dir() else None
    if node:
        (NODE_DIR / "impersonation-check.mjs").write_text(NODE_CLIENT)
    then = (f"export AZURE_TENANT_ID={d.TENANT_ID} AZURE_CLIENT_ID={d.DAEMON_ID} "
            f"AZURE_CLIENT_SECRET={d.DAEMON_SECRET}\n{sys.executable} {tmp_path}/client.py\n"
            + (f"cd {NODE_DIR} && {node} impersonation-check.mjs\n" if node else "echo no-node\n"))
    try:
        done, log = run_impersonating(tmp_path, [], then, {k: v for k, v in os.environ.items()
                                                           if not k.startswith("AZURE_")})
    finally:
        (NODE_DIR / "impersonation-check.mjs").unlink(missing_ok=True)
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}\n--- fakests:\n{log}"
    assert f"msal {d.DAEMON_ID}" in done.stdout and f"azure-identity {d.DAEMON_ID}" in done.stdout, done.stdout
    if node:
        assert f"msal-node https://login.microsoftonline.com/{d.TENANT_ID}/v2.0" in done.stdout, done.stdout


def test_instance_discovery_answers_for_the_impersonated_hosts_as_entra_does(tmp_path: Path) -> None:
    """entra-wire.md §1.5: the public cloud's alias group, preferred_cache login.windows.net."""
    from fakests.server.app import create_app
    from fakests.state.settings import Settings
    from fakests.testing.transport import session_for

    settings = Settings(state_dir=tmp_path, tls=False, impersonate=("public",)).impersonating(port_given=False)
    http = session_for(create_app(settings), "https://login.microsoftonline.com")
    answer = http.get("https://login.microsoftonline.com/common/discovery/instance", params={
        "api-version": "1.1",
        "authorization_endpoint": f"https://login.microsoftonline.com/{d.TENANT_ID}/oauth2/v2.0/authorize"}).json()
    assert answer["tenant_discovery_endpoint"] == \
        f"https://login.microsoftonline.com/{d.TENANT_ID}/v2.0/.well-known/openid-configuration"
    assert answer["metadata"] == [{
        "preferred_network": "login.microsoftonline.com", "preferred_cache": "login.windows.net",
        "aliases": ["login.microsoftonline.com", "login.windows.net", "login.microsoft.com", "sts.windows.net"]}]
    v1 = http.get(f"https://login.microsoftonline.com/{d.TENANT_ID}/.well-known/openid-configuration").json()
    assert v1["issuer"] == f"https://sts.windows.net/{d.TENANT_ID}/"
