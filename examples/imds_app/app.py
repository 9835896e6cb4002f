"""Code on an Azure VM, written the way it is for one: its tokens come from the VM's managed identity.

Nothing here knows fakests, and nothing configures it: no ``AZURE_*`` variable, no endpoint, no CA (IMDS is
plain HTTP). azure-identity's ``ManagedIdentityCredential`` and ``DefaultAzureCredential`` (which probes IMDS
first) and MSAL Python's ``ManagedIdentityClient`` all ask IMDS at its fixed address,
``http://169.254.169.254/metadata/identity/oauth2/token`` (azure-identity ``_credentials/imds.py``
``IMDS_AUTHORITY``; MSAL ``managed_identity.py`` ``_obtain_token_on_azure_vm``). docker-compose.yml's ``imds``
profile gives fakests that address on a network of its own; in pytest, ``fake_sts.intercept()`` answers it
(``tests/test_example_imds_app.py``).
"""

from __future__ import annotations

import logging
import os

import msal
import requests
from azure.identity import DefaultAzureCredential, ManagedIdentityCredential

RESOURCE = "https://management.azure.com"  # Azure Resource Manager, what VM code most often calls
AZURE_VARIABLES = ("AZURE_", "IDENTITY_", "MSI_", "IMDS_")  # what would point clients elsewhere


def managed_identity_token(resource: str = RESOURCE) -> str:
    """The VM's system-assigned identity's token through azure-identity, as most Azure SDK code gets it."""
    return ManagedIdentityCredential().get_token(f"{resource}/.default").token


def default_credential_token(resource: str = RESOURCE) -> str:
    """The same through ``DefaultAzureCredential``: no environment credential, no workload identity, then IMDS
    (after a probe without the ``Metadata`` header, to which any answer means IMDS is there)."""
    return DefaultAzureCredential().get_token(f"{resource}/.default").token


def msal_token(resource: str = RESOURCE) -> str:
    """The same through MSAL Python (it needs an HTTP client of the app's; requests is the usual one)."""
    client = msal.ManagedIdentityClient(msal.SystemAssignedManagedIdentity(), http_client=requests.Session())
    result = client.acquire_token_for_client(resource=resource)
    if "access_token" not in result:
        raise RuntimeError(f"no token from the managed identity: {result.get('error')}: "
                           f"{result.get('error_description')}")
    return str(result["access_token"])


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, format="%(name)s %(message)s")
    print("Azure variables:", sorted(k for k in os.environ if k.startswith(AZURE_VARIABLES)))
    print("ManagedIdentityCredential:", managed_identity_token()[:20], "...")
    print("DefaultAzureCredential:", default_credential_token()[:20], "...")
    print("ManagedIdentityClient:", msal_token()[:20], "...")
