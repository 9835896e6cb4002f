"""The built-in default directory: fixed, documented ids and credentials.

``fakests serve`` with no config serves this directory, and every per-test sandbox is a fresh-id
copy of it. The README's table lists the same values; ``tests/test_defaults.py`` keeps them in step.
"""

from __future__ import annotations

from .directory import (
    MSA_TENANT_ID,
    App,
    Certificate,
    Directory,
    FederatedCredential,
    ManagedIdentity,
    Secret,
    Tenant,
    User,
    azure_resource_apps,
    graph_app,
)

TENANT_ID = "fa7e0000-0000-4000-8000-000000000001"
TENANT_DOMAIN = "contoso.onmicrosoft.com"
OTHER_TENANT_ID = "fa7e0000-0000-4000-8000-000000000002"

DAEMON_ID = "fa7e0000-0000-4000-8000-00000000a001"
WEB_ID = "fa7e0000-0000-4000-8000-00000000a002"
API_ID = "fa7e0000-0000-4000-8000-00000000a003"
PUBLIC_ID = "fa7e0000-0000-4000-8000-00000000a004"
SPA_ID = "fa7e0000-0000-4000-8000-00000000a005"
# Where browser dev servers listen (Create React App / Express 3000, Vite 5173, Angular 4200, many 8080);
# loopback URIs match on any port, so a test's static server on a free port signs in too.
SPA_REDIRECT_URIS = ["http://localhost:3000", "http://localhost:5173", "http://localhost:4200",
                     "http://localhost:8080", "http://localhost:3000/redirect.html"]

DAEMON_SECRET = "daemon-secret-value"
WEB_SECRET = "web-secret-value"
API_SECRET = "api-secret-value"
PASSWORD = "P@ssw0rd-fakests"

API_URI = "api://fakests-api"

# Workload identity: the daemon app trusts the fake cluster's service account ``default/workload``
# (``state/kubernetes.py``: the issuer fakests publishes at /kubernetes/fakests on whatever origin it serves).
WORKLOAD_NAMESPACE = "default"
WORKLOAD_SERVICE_ACCOUNT = "workload"
WORKLOAD_CREDENTIAL = FederatedCredential(
    "fakests-cluster", "/kubernetes/fakests", f"system:serviceaccount:{WORKLOAD_NAMESPACE}:{WORKLOAD_SERVICE_ACCOUNT}",
    description="The fake Kubernetes cluster's service account default/workload.")

# Managed identities: the VM the managed-identity endpoints run on (its system-assigned identity) and one
# user-assigned identity, under a subscription and resource group of their own.
SUBSCRIPTION_ID = "fa7e0000-0000-4000-8000-0000000050b1"
RESOURCE_GROUP_ID = f"/subscriptions/{SUBSCRIPTION_ID}/resourceGroups/fakests"
VM_RESOURCE_ID = f"{RESOURCE_GROUP_ID}/providers/Microsoft.Compute/virtualMachines/fakests-vm"
USER_IDENTITY_RESOURCE_ID = (f"{RESOURCE_GROUP_ID}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/"
                             "fakests-identity")
SYSTEM_IDENTITY_CLIENT_ID = "fa7e0000-0000-4000-8000-00000000e001"
SYSTEM_IDENTITY_OBJECT_ID = "fa7e0000-0000-4000-8000-00000000e101"
USER_IDENTITY_CLIENT_ID = "fa7e0000-0000-4000-8000-00000000e002"
USER_IDENTITY_OBJECT_ID = "fa7e0000-0000-4000-8000-00000000e102"


def default_directory(client_certificate: Certificate | None = None) -> Directory:
    """Contoso with five apps, seven users and two managed identities (a VM's, a user-assigned one);
    Fabrikam as a second tenant; the MSA tenant.

    ``client_certificate`` (the public half of the default client certificate kept in the state
    directory) is registered on the daemon and web apps when given.
    """
    d = Directory()
    d.add_tenant(Tenant(TENANT_ID, "Contoso", [TENANT_DOMAIN, "contoso.com"], "WW"))
    d.add_tenant(Tenant(OTHER_TENANT_ID, "Fabrikam", ["fabrikam.onmicrosoft.com"], "WW"))
    d.add_tenant(Tenant(MSA_TENANT_ID, "Microsoft Account", ["outlook.com", "live.com", "hotmail.com"], "WW"))
    certs = [client_certificate] if client_certificate else []

    d.add_app(graph_app())
    for resource in azure_resource_apps():
        d.add_app(resource)
    d.add_app(App(
        DAEMON_ID, "fakests daemon", TENANT_ID, secrets=[Secret(DAEMON_SECRET, hint="dae")],
        certificates=list(certs), federated_credentials=[WORKLOAD_CREDENTIAL],
        object_id="fa7e0000-0000-4000-8000-00000000d001",
    ))
    d.add_app(App(
        WEB_ID, "fakests web app", TENANT_ID, secrets=[Secret(WEB_SECRET, hint="web")],
        certificates=list(certs),
        redirect_uris=["http://localhost:5000/getAToken", "http://localhost/callback",
                       "https://localhost/callback", "https://app.example.test/callback"],
        sign_in_audience="AzureADandPersonalMicrosoftAccount",
        object_id="fa7e0000-0000-4000-8000-00000000d002",
    ))
    d.add_app(App(
        API_ID, "fakests api", TENANT_ID, secrets=[Secret(API_SECRET, hint="api")],
        identifier_uris=[API_URI], scopes=["access_as_user", "Data.Read"],
        app_roles=["Data.Read", "Data.Write"], access_token_version=2,
        sign_in_audience="AzureADMultipleOrgs",
        object_id="fa7e0000-0000-4000-8000-00000000d003",
    ))
    d.add_app(App(
        PUBLIC_ID, "fakests desktop", TENANT_ID, public_client=True,
        redirect_uris=["http://localhost", "https://login.microsoftonline.com/common/oauth2/nativeclient"],
        sign_in_audience="AzureADandPersonalMicrosoftAccount",
        object_id="fa7e0000-0000-4000-8000-00000000d004",
    ))
    d.add_app(App(
        SPA_ID, "fakests spa", TENANT_ID, spa_redirect_uris=list(SPA_REDIRECT_URIS),
        sign_in_audience="AzureADandPersonalMicrosoftAccount",
        object_id="fa7e0000-0000-4000-8000-00000000d005",
    ))

    for user in (
        User("alice@contoso.com", "Alice Smith", PASSWORD, TENANT_ID,
             "fa7e0000-0000-4000-8000-00000000b001", given_name="Alice", family_name="Smith"),
        User("bob@contoso.com", "Bob Jones", PASSWORD, TENANT_ID,
             "fa7e0000-0000-4000-8000-00000000b002", given_name="Bob", family_name="Jones"),
        User("disabled@contoso.com", "Dana Disabled", PASSWORD, TENANT_ID,
             "fa7e0000-0000-4000-8000-00000000b003", disabled=True),
        User("locked@contoso.com", "Lee Locked", PASSWORD, TENANT_ID,
             "fa7e0000-0000-4000-8000-00000000b004", locked=True),
        User("expired@contoso.com", "Eve Expired", PASSWORD, TENANT_ID,
             "fa7e0000-0000-4000-8000-00000000b005", password_expired=True),
        User("frank@fabrikam.onmicrosoft.com", "Frank Fabrikam", PASSWORD, OTHER_TENANT_ID,
             "fa7e0000-0000-4000-8000-00000000b006"),
        User("carol@outlook.com", "Carol Consumer", PASSWORD, MSA_TENANT_ID,
             "00000000-0000-0000-c4a0-00000000c001", account_type="msa"),
    ):
        d.add_user(user)

    for client in (WEB_ID, PUBLIC_ID, SPA_ID):
        d.grant(client, "https://graph.microsoft.com", ["User.Read", "openid", "profile", "email",
                                                        "offline_access"])
        d.grant(client, API_ID, ["access_as_user", "Data.Read"])
    d.grant(API_ID, "https://graph.microsoft.com", ["User.Read", "openid", "profile", "offline_access"])
    d.assign_roles(DAEMON_ID, API_ID, ["Data.Read"])
    d.assign_roles(DAEMON_ID, "https://graph.microsoft.com", ["User.Read.All"])

    d.add_identity(ManagedIdentity(SYSTEM_IDENTITY_CLIENT_ID, SYSTEM_IDENTITY_OBJECT_ID, VM_RESOURCE_ID, TENANT_ID))
    d.add_identity(ManagedIdentity(USER_IDENTITY_CLIENT_ID, USER_IDENTITY_OBJECT_ID, USER_IDENTITY_RESOURCE_ID,
                                   TENANT_ID, kind="user", federated_credentials=[WORKLOAD_CREDENTIAL]))
    d.hosted_on = VM_RESOURCE_ID
    d.assign_roles(SYSTEM_IDENTITY_CLIENT_ID, API_ID, ["Data.Read"])
    d.assign_roles(USER_IDENTITY_CLIENT_ID, API_ID, ["Data.Read", "Data.Write"])
    return d
