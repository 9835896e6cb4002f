"""A service that calls Microsoft Graph as itself, written the way production apps are.

Nothing here knows fakests: the authority is ``https://login.microsoftonline.com/<its tenant>``, the ids
are its own, MSAL gets no ``http_client`` and keeps instance discovery, and azure-identity is configured
by ``AZURE_*`` variables alone. Its retry policy and its error message are what a test proves against
fakests (``tests/test_example_entra_app.py``): in pytest with ``fake_sts.intercept()``, and against
``fakests serve --impersonate`` (this folder's ``fakests.yaml`` registers its ids).
"""

from __future__ import annotations

import logging
import os
import re
import time

import msal
from azure.core.exceptions import ClientAuthenticationError
from azure.identity import DefaultAzureCredential

# The app's production configuration (a config file or a vault would hold it).
TENANT_ID = os.environ.get("ENTRA_APP_TENANT_ID", "3c1c6f3e-1a7b-4b8e-9d6a-2f0e5c8b7a11")
TENANT_DOMAIN = "contoso-prod.onmicrosoft.com"
CLIENT_ID = os.environ.get("ENTRA_APP_CLIENT_ID", "6b0d2f5e-8c44-4f1a-b3a2-7e9c1d0f4a22")
CLIENT_SECRET = os.environ.get("ENTRA_APP_CLIENT_SECRET", "entra-app-secret")
AUTHORITY = f"https://login.microsoftonline.com/{TENANT_ID}"
SCOPE = "https://graph.microsoft.com/.default"

log = logging.getLogger("entra_app")
_CORRELATION = re.compile(r"Correlation ID: ([0-9a-fA-F-]{36})")
_AADSTS = re.compile(r"AADSTS\d+: [^\r\n]*")


class SignInFailed(Exception):
    """What the app shows when it cannot get a token: the reason and, when Entra gave one, the correlation
    id to quote to support."""

    def __init__(self, reason: str, correlation_id: str | None) -> None:
        super().__init__(f"{reason} (correlation id: {correlation_id or 'none given'})")
        self.correlation_id = correlation_id


def graph_token(attempts: int = 3, backoff: float = 0.5) -> str:
    """A Graph token through MSAL Python, retrying server errors. MSAL raises ``MsalServiceError`` for a 5xx
    (with no body) and replays it from the application's cache for a few seconds, so each retry builds a
    new application object."""
    for attempt in range(1, attempts + 1):
        app = msal.ConfidentialClientApplication(CLIENT_ID, client_credential=CLIENT_SECRET, authority=AUTHORITY)
        try:
            result = app.acquire_token_for_client(scopes=[SCOPE])
        except msal.exceptions.MsalServiceError as exc:  # Entra had a server error: try again
            log.warning("sign-in attempt %d of %d failed: %s", attempt, attempts, exc)
            time.sleep(backoff * attempt)
            continue
        if "access_token" in result:
            return str(result["access_token"])
        raise SignInFailed(str(result.get("error_description", result.get("error"))).splitlines()[0],
                           result.get("correlation_id"))
    raise SignInFailed(f"Entra kept failing ({attempts} attempts)", None)


def graph_token_azure() -> str:
    """A Graph token through ``DefaultAzureCredential`` (configured by ``AZURE_*`` variables); azure-identity
    retries server errors itself."""
    try:
        return DefaultAzureCredential().get_token(SCOPE).token
    except ClientAuthenticationError as exc:
        text = str(exc)
        found, reason = _CORRELATION.search(text), _AADSTS.search(text)
        raise SignInFailed(reason.group(0) if reason else text.splitlines()[0],
                           found.group(1) if found else None) from exc


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(name)s %(message)s")
    print("msal:", graph_token()[:20], "...")
    print("azure-identity:", graph_token_azure()[:20], "...")
