"""The admin route table, mounted at ``/_fakests`` (``openapi.document`` describes each route)."""

from __future__ import annotations

from starlette.routing import BaseRoute, Route

from . import dashboard
from . import scenarios as admin_scenarios
from ._http import admin_endpoint
from .api import (
    app_create,
    ca_pem,
    client_cert_pem,
    clock_advance,
    consent_create,
    health,
    identity_create,
    identity_endpoint,
    journal_clear,
    journal_list,
    keys_rotate,
    role_assignment_create,
    sandbox_create,
    sandbox_delete,
    sandbox_get,
    sandbox_list,
    sandbox_update,
    server_keys_rotate,
    service_account_token,
    user_create,
    user_update,
)


def routes() -> list[BaseRoute]:
    """Every admin endpoint; ``openapi`` checks this table against its document."""
    sb = "/sandboxes/{sandbox_id}"
    return [
        Route("/health", admin_endpoint(health, public=True), methods=["GET"]),
        Route("/ca.pem", admin_endpoint(ca_pem), methods=["GET"]),
        Route("/client-cert.pem", admin_endpoint(client_cert_pem), methods=["GET"]),
        Route("/sandboxes", admin_endpoint(sandbox_list), methods=["GET"]),
        Route("/sandboxes", admin_endpoint(sandbox_create), methods=["POST"]),
        Route(sb, admin_endpoint(sandbox_get), methods=["GET"]),
        Route(sb, admin_endpoint(sandbox_update), methods=["PATCH"]),
        Route(sb, admin_endpoint(sandbox_delete), methods=["DELETE"]),
        Route(f"{sb}/apps", admin_endpoint(app_create), methods=["POST"]),
        Route(f"{sb}/users", admin_endpoint(user_create), methods=["POST"]),
        Route(f"{sb}/users/{{username}}", admin_endpoint(user_update), methods=["PATCH"]),
        Route(f"{sb}/consents", admin_endpoint(consent_create), methods=["POST"]),
        Route(f"{sb}/role-assignments", admin_endpoint(role_assignment_create), methods=["POST"]),
        Route(f"{sb}/managed-identities", admin_endpoint(identity_create), methods=["POST"]),
        Route(f"{sb}/identity-endpoint", admin_endpoint(identity_endpoint), methods=["GET"]),
        Route(f"{sb}/journal", admin_endpoint(journal_list), methods=["GET"]),
        Route(f"{sb}/journal", admin_endpoint(journal_clear), methods=["DELETE"]),
        Route(f"{sb}/clock", admin_endpoint(clock_advance), methods=["POST"]),
        Route(f"{sb}/keys/rotate", admin_endpoint(keys_rotate), methods=["POST"]),
        Route(f"{sb}/kubernetes/token", admin_endpoint(service_account_token), methods=["POST"]),
        Route("/keys/rotate", admin_endpoint(server_keys_rotate), methods=["POST"]),
        *admin_scenarios.routes(),
        Route("/dashboard", admin_endpoint(dashboard.page, public=True), methods=["GET"]),
        *dashboard.routes(),
    ]
