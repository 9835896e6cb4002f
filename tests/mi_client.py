"""Run in a child process (``tests/arc.py`` puts it in a mount namespace): one managed-identity token from an
unmodified Python client configured only by the environment, printed as one JSON line.

Usage: ``python tests/mi_client.py LIBRARY RESOURCE [CLIENT_ID]`` with LIBRARY one of ``azure-identity``
(``ManagedIdentityCredential``), ``azure-identity-async`` (its ``aio`` twin), ``default``
(``DefaultAzureCredential``) or ``msal`` (MSAL Python's ``ManagedIdentityClient``, its own session).
Prints ``{"ok": true, "token", "expires_on"}`` or ``{"ok": false, "type", "message"}``.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any


def _get(library: str, resource: str, client_id: str | None) -> dict[str, Any]:
    scope = f"{resource}/.default"
    if library == "msal":
        import msal
        import requests

        identity = (msal.UserAssignedManagedIdentity(client_id=client_id) if client_id
                    else msal.SystemAssignedManagedIdentity())
        result = msal.ManagedIdentityClient(identity, http_client=requests.Session()).acquire_token_for_client(
            resource=resource)
        if "access_token" not in result:
            return {"ok": False, "type": "error", "message": json.dumps(result)}
        return {"ok": True, "token": result["access_token"], "expires_in": result.get("expires_in")}
    if library == "azure-identity-async":
        from azure.identity.aio import ManagedIdentityCredential as Async

        async def main() -> Any:
            async with Async(client_id=client_id) as credential:
                return await credential.get_token(scope)

        token = asyncio.run(main())
    elif library == "default":
        from azure.identity import DefaultAzureCredential

        token = DefaultAzureCredential(exclude_cli_credential=True, exclude_developer_cli_credential=True,
                                       exclude_powershell_credential=True).get_token(scope)
    else:
        from azure.identity import ManagedIdentityCredential

        token = ManagedIdentityCredential(client_id=client_id).get_token(scope)
    return {"ok": True, "token": token.token, "expires_on": token.expires_on}


def main() -> None:
    library, resource, *rest = sys.argv[1:]
    try:
        out = _get(library, resource, rest[0] if rest else None)
    except Exception as exc:  # what the client raised is the result
        out = {"ok": False, "type": type(exc).__name__, "message": str(exc).splitlines()[0] if str(exc) else ""}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
