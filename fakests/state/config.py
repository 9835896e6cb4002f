"""The config file: YAML with settings and a directory (tenants, apps, users, managed identities, consents,
role assignments).

``load_config`` is strict: an unknown key, a wrong type, a missing required field, a duplicate id, a
reference to a tenant, app, user or permission that does not exist, bad YAML or a missing file raise
``ConfigError(file, dotted key, reason)`` and nothing is half-loaded. ``DirectoryReader`` is the part
that turns plain mappings into directory objects; the admin API uses it too, so a YAML file and a JSON
request body accept the same fields (the field names of ``fakests.state.directory``'s dataclasses).

Microsoft Graph, Azure's own resources (Resource Manager, Key Vault, Storage) and the Microsoft Account
(MSA) tenant are always present. The first system-assigned managed identity is the one the
managed-identity endpoints answer for (``Directory.hosted_on``) unless the defaults' VM is there.
``include_defaults: true`` starts from the built-in default directory (``fakests.state.defaults``) and adds to it.
"""

from __future__ import annotations

import datetime as dt
import math
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import MISSING, dataclass, fields
from pathlib import Path
from types import NoneType, UnionType
from typing import Any, Literal, NoReturn, Union, get_args, get_origin, get_type_hints

from .config_schema import SCHEMA as SCHEMA  # the JSON Schema editors use (fakests schema config)
from .defaults import default_directory
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
    uri_origin,
)
from .errors import ConfigError
from .settings import Settings
from .yamlfile import read_yaml

TOP_KEYS = ("settings", "include_defaults", "tenants", "apps", "users", "managed_identities", "consents",
            "role_assignments")
# Entra's ids are GUIDs, and clients (and the tid/oid claims' consumers) treat them as such.
GUID_FIELDS = frozenset({"tenant_id", "client_id", "oid", "object_id"})
# An app's redirect URI lists: untyped (today's meaning) and one per Entra platform.
PLATFORM_FIELDS = ("redirect_uris", "web_redirect_uris", "spa_redirect_uris", "public_client_redirect_uris")

CertificateLoader = Callable[[str, str], Certificate]


@dataclass(frozen=True)
class LoadedConfig:
    """What a config file holds: the raw ``settings:`` block (already validated) and the directory."""

    settings_values: dict[str, Any]
    directory: Directory


def _join(prefix: str, name: str | int) -> str:
    if isinstance(name, int):
        return f"{prefix}[{name}]"
    return f"{prefix}.{name}" if prefix else name


class DirectoryReader:
    """Builds directory objects from plain mappings, checked against the directory they will join.

    Each method validates one entry and returns it without changing ``directory``; the caller adds
    it, so a failed entry leaves nothing behind. ``certificate`` turns a ``certificates`` item
    (``"default"``, a path, or PEM text: the caller decides) into a ``Certificate``.
    """

    def __init__(self, directory: Directory, source: str, certificate: CertificateLoader) -> None:
        self.directory = directory
        self.source = source
        self.certificate = certificate

    def fail(self, key: str, reason: str) -> NoReturn:
        raise ConfigError(self.source, key, reason)

    # --- generic checks -----------------------------------------------------------------------------
    def mapping(self, raw: Any, key: str, cls: type, special: Iterable[str] = ()) -> dict[str, Any]:
        """The fields of dataclass ``cls`` from ``raw``: unknown keys, missing required fields and
        wrong types fail. Names in ``special`` are only checked for presence (the caller parses them)."""
        if not isinstance(raw, Mapping):
            self.fail(key, f"must be a mapping, got {_kind(raw)}")
        hints = get_type_hints(cls)
        known = {f.name: f for f in fields(cls)}
        for name in raw:
            if name not in known:
                self.fail(_join(key, str(name)), f"unknown field; known: {', '.join(known)}")
        out: dict[str, Any] = {}
        for name, f in known.items():
            if name not in raw:
                if f.default is MISSING and f.default_factory is MISSING:
                    self.fail(_join(key, name), "required field is missing")
                continue
            out[name] = raw[name] if name in special else self.value(hints[name], raw[name], _join(key, name))
            if name in GUID_FIELDS:
                out[name] = self.guid(out[name], _join(key, name))
        return out

    def value(self, kind: Any, raw: Any, key: str) -> Any:
        """``raw`` checked against the type annotation ``kind`` (str, bool, int, float, list, Literal, | None)."""
        origin = get_origin(kind)
        if origin is Literal:
            if raw not in get_args(kind):
                self.fail(key, f"must be one of {', '.join(map(str, get_args(kind)))}; got {raw!r}")
            return raw
        if origin in (Union, UnionType):
            if raw is None and NoneType in get_args(kind):
                return None
            kind = next(a for a in get_args(kind) if a is not NoneType)
            origin = get_origin(kind)
        if origin is list:
            if not isinstance(raw, list):
                self.fail(key, f"must be a list, got {_kind(raw)}")
            return [self.value(get_args(kind)[0], item, _join(key, i)) for i, item in enumerate(raw)]
        if kind is bool and isinstance(raw, bool):
            return raw
        if kind is int and isinstance(raw, int) and not isinstance(raw, bool):
            return raw
        if kind is float and isinstance(raw, int | float) and not isinstance(raw, bool) and math.isfinite(raw):
            return float(raw)
        if kind is str and isinstance(raw, str):
            return raw
        self.fail(key, f"must be {_NAMES.get(kind, str(kind))}, got {_kind(raw)}")

    def guid(self, raw: str, key: str) -> str:
        try:
            return str(uuid.UUID(raw))  # canonical lower case: tenant lookups are case-insensitive
        except ValueError:
            self.fail(key, f"must be a GUID like 00000000-0000-0000-0000-000000000000, got {raw!r}")

    def nonempty(self, values: Mapping[str, Any], key: str, *names: str) -> None:
        for name in names:
            if name in values and not values[name].strip():
                self.fail(_join(key, name), "must not be empty")

    def known_tenant(self, tenant_id: str, key: str) -> None:
        if tenant_id not in self.directory.tenants:
            self.fail(key, f"unknown tenant {tenant_id!r}; tenants: {', '.join(self.directory.tenants)}")

    # --- entries ------------------------------------------------------------------------------------
    def tenant(self, raw: Any, key: str) -> Tenant:
        values = self.mapping(raw, key, Tenant)
        self.nonempty(values, key, "display_name")
        if values["tenant_id"] in self.directory.tenants:
            self.fail(_join(key, "tenant_id"), f"duplicate tenant_id {values['tenant_id']!r}")
        used = {d.lower(): t.tenant_id for t in self.directory.tenants.values() for d in t.domains}
        for i, domain in enumerate(values.get("domains", [])):
            if not domain.strip():
                self.fail(_join(_join(key, "domains"), i), "must not be empty")
            if domain.lower() in used:  # a domain routes requests to one tenant (Directory.tenant_by_segment)
                self.fail(_join(_join(key, "domains"), i), f"domain {domain!r} is already used by tenant "
                                                           f"{used[domain.lower()]}")
            used[domain.lower()] = values["tenant_id"]
        return Tenant(**values)

    def app(self, raw: Any, key: str) -> App:
        values = self.mapping(raw, key, App, special=("secrets", "certificates", "federated_credentials"))
        self.nonempty(values, key, "display_name")
        if values["client_id"] in self.directory.apps:
            self.fail(_join(key, "client_id"), f"duplicate client_id {values['client_id']!r}")
        self.known_tenant(values["tenant_id"], _join(key, "tenant_id"))
        if values.get("access_token_version", 2) not in (1, 2):
            self.fail(_join(key, "access_token_version"), "must be 1 or 2")
        values["secrets"] = self.secrets(values.get("secrets", []), _join(key, "secrets"))
        certs = values.get("certificates", [])
        if not isinstance(certs, list):
            self.fail(_join(key, "certificates"), f"must be a list, got {_kind(certs)}")
        keys = [_join(_join(key, "certificates"), i) for i in range(len(certs))]
        values["certificates"] = [self.certificate(self.value(str, c, k), k) for c, k in zip(certs, keys, strict=True)]
        self.redirect_platforms(values, key)
        values["federated_credentials"] = self.federated_credentials(values.get("federated_credentials", []),
                                                                     _join(key, "federated_credentials"))
        return App(**values)

    def federated_credentials(self, raw: Any, key: str) -> list[FederatedCredential]:
        """``[{name, issuer, subject, audiences?, description?}]``: Graph's rules (learn.microsoft.com/graph/api/
        resources/federatedidentitycredential): at most 20 per app, names unique, exactly one audience; the
        issuer an https URL, or a ``/path`` on fakests itself (``/kubernetes/{cluster}``)."""
        if not isinstance(raw, list):
            self.fail(key, f"must be a list, got {_kind(raw)}")
        if len(raw) > 20:
            self.fail(key, f"an app has at most 20 federated identity credentials, got {len(raw)}")
        out: list[FederatedCredential] = []
        for i, item in enumerate(raw):
            k = _join(key, i)
            values = self.mapping(item, k, FederatedCredential)
            self.nonempty(values, k, "name", "issuer", "subject")
            if any(c.name == values["name"] for c in out):
                self.fail(_join(k, "name"), f"duplicate name {values['name']!r}")
            issuer = values["issuer"]
            if not (issuer.startswith("/") or (issuer.lower().startswith("https://") and uri_origin(issuer))):
                self.fail(_join(k, "issuer"), f"must be an https URL, or a path on fakests such as "
                                              f"/kubernetes/fakests; got {issuer!r}")
            audiences = values.get("audiences")
            if audiences is not None and (len(audiences) != 1 or not audiences[0].strip()):
                self.fail(_join(k, "audiences"), "must hold exactly one audience (usually api://AzureADTokenExchange)")
            out.append(FederatedCredential(**values))
        return out

    def redirect_platforms(self, values: Mapping[str, Any], key: str) -> None:
        """Each redirect URI is on one platform (the platform decides how its codes may be redeemed),
        and a ``spa`` URI is an http(s) URL, whose origin is where the app's token requests come from."""
        seen: dict[str, str] = {}
        for name in PLATFORM_FIELDS:
            for i, uri in enumerate(values.get(name, [])):
                where = _join(_join(key, name), i)
                if not uri.strip():
                    self.fail(where, "must not be empty")
                if name == "spa_redirect_uris" and uri_origin(uri) is None:
                    self.fail(where, f"a spa redirect URI must be an http or https URL, got {uri!r}")
                if uri in seen and seen[uri] != name:
                    self.fail(where, f"{uri!r} is also in {seen[uri]}: a redirect URI belongs to one platform")
                seen[uri] = name

    def secrets(self, raw: Any, key: str) -> list[Secret]:
        """``["value", ...]`` or ``[{value, expires_at, hint}, ...]``; ``expires_at`` is epoch seconds,
        an ISO 8601 time or a YAML timestamp (naive times are UTC)."""
        if not isinstance(raw, list):
            self.fail(key, f"must be a list, got {_kind(raw)}")
        out = []
        for i, item in enumerate(raw):
            k = _join(key, i)
            if isinstance(item, str):
                item = {"value": item}
            if isinstance(item, Mapping) and "expires_at" in item:
                item = {**item, "expires_at": self.timestamp(item["expires_at"], _join(k, "expires_at"))}
            values = self.mapping(item, k, Secret)
            self.nonempty(values, k, "value")
            out.append(Secret(**{"hint": values["value"][:3], **values}))
        return out

    def timestamp(self, raw: Any, key: str) -> float | None:
        if raw is None or (isinstance(raw, int | float) and not isinstance(raw, bool)):
            return raw
        if isinstance(raw, str):
            try:
                raw = dt.datetime.fromisoformat(raw)
            except ValueError:
                self.fail(key, f"must be epoch seconds or an ISO 8601 time, got {raw!r}")
        if isinstance(raw, dt.date) and not isinstance(raw, dt.datetime):
            raw = dt.datetime(raw.year, raw.month, raw.day)
        if isinstance(raw, dt.datetime):
            return (raw if raw.tzinfo else raw.replace(tzinfo=dt.UTC)).timestamp()
        self.fail(key, f"must be epoch seconds or an ISO 8601 time, got {_kind(raw)}")

    def user(self, raw: Any, key: str) -> User:
        values = self.mapping(raw, key, User)
        self.nonempty(values, key, "username", "display_name", "password")
        if values["username"].lower() in self.directory.users:
            self.fail(_join(key, "username"), f"duplicate username {values['username']!r}")
        self.known_tenant(values["tenant_id"], _join(key, "tenant_id"))
        # Personal accounts live in the MSA tenant and work accounts never do (what grants.check_user assumes).
        if (values.get("account_type") == "msa") != (values["tenant_id"] == MSA_TENANT_ID):
            self.fail(_join(key, "tenant_id"), f"account_type 'msa' users, and only they, belong to {MSA_TENANT_ID}")
        if values.get("oid") is not None and self.directory.user_by_oid(values["oid"]) is not None:
            self.fail(_join(key, "oid"), f"duplicate oid {values['oid']!r}")
        return User(**values)

    def identity(self, raw: Any, key: str) -> ManagedIdentity:
        """A managed identity: ``client_id``, ``object_id`` (principal id), ``resource_id`` (an ARM id: the
        Azure resource's for ``kind: system``, the identity's own for ``kind: user``), ``tenant_id``."""
        values = self.mapping(raw, key, ManagedIdentity, special=("federated_credentials",))
        if "federated_credentials" in values:
            values["federated_credentials"] = self.federated_credentials(values["federated_credentials"],
                                                                         _join(key, "federated_credentials"))
            if values["federated_credentials"] and values.get("kind", "system") != "user":
                self.fail(_join(key, "federated_credentials"), "only user-assigned identities (kind: user) have "
                                                               "federated identity credentials, as in Azure")
        if values["client_id"] in self.directory.identities or values["client_id"] in self.directory.apps:
            self.fail(_join(key, "client_id"), f"duplicate client_id {values['client_id']!r}")
        if any(i.object_id == values["object_id"] for i in self.directory.identities.values()):
            self.fail(_join(key, "object_id"), f"duplicate object_id {values['object_id']!r}")
        self.known_tenant(values["tenant_id"], _join(key, "tenant_id"))
        if not values["resource_id"].startswith("/subscriptions/"):
            self.fail(_join(key, "resource_id"), "must be an Azure resource id (/subscriptions/.../providers/...), "
                                                 f"got {values['resource_id']!r}")
        taken = self.directory.identity(resource_id=values["resource_id"])
        if taken is not None and (taken.kind == "user" or values.get("kind", "system") == "user"):
            self.fail(_join(key, "resource_id"), f"resource {values['resource_id']!r} already has an identity")
        return ManagedIdentity(**values)

    def resource(self, raw: Any, key: str) -> App:
        name = self.value(str, raw, key)
        try:
            return self.directory.resource(name)
        except KeyError:
            self.fail(key, f"no app has the client id or identifier URI {name!r}")

    def consent(self, raw: Any, key: str) -> tuple[str, App, list[str]]:
        """``{client_id, resource, scopes}``: admin consent to delegated permissions the resource exposes."""
        values = self.plain(raw, key, {"client_id": str, "resource": str, "scopes": list[str]})
        client_id = self.guid(values["client_id"], _join(key, "client_id"))
        if client_id not in self.directory.apps:
            self.fail(_join(key, "client_id"), f"unknown client_id {client_id!r}")
        resource = self.resource(values["resource"], _join(key, "resource"))
        self.offered(values["scopes"], resource.scopes, _join(key, "scopes"), resource, "a delegated permission")
        return client_id, resource, values["scopes"]

    def role_assignment(self, raw: Any, key: str) -> tuple[str, App, list[str]]:
        """``{principal, resource, roles}``; principal is a client_id, a user's oid or a username."""
        values = self.plain(raw, key, {"principal": str, "resource": str, "roles": list[str]})
        principal = values["principal"]
        user = self.directory.user(principal)
        if user is not None:
            principal = user.oid
        elif (principal not in self.directory.apps and principal not in self.directory.identities
              and self.directory.user_by_oid(principal) is None):
            self.fail(_join(key, "principal"), f"no app or managed identity client_id, user oid or username "
                                               f"{principal!r}")
        resource = self.resource(values["resource"], _join(key, "resource"))
        self.offered(values["roles"], resource.app_roles, _join(key, "roles"), resource, "an app role")
        return principal, resource, values["roles"]

    def plain(self, raw: Any, key: str, spec: Mapping[str, Any]) -> dict[str, Any]:
        """A mapping with exactly the keys of ``spec`` (name -> type), all required."""
        if not isinstance(raw, Mapping):
            self.fail(key, f"must be a mapping, got {_kind(raw)}")
        for name in raw:
            if name not in spec:
                self.fail(_join(key, str(name)), f"unknown field; known: {', '.join(spec)}")
        missing = [n for n in spec if n not in raw]
        if missing:
            self.fail(_join(key, missing[0]), "required field is missing")
        return {n: self.value(kind, raw[n], _join(key, n)) for n, kind in spec.items()}

    def offered(self, wanted: list[str], offered: list[str], key: str, resource: App, what: str) -> None:
        for i, name in enumerate(wanted):
            if name not in offered:
                self.fail(_join(key, i), f"{name!r} is not {what} of {resource.display_name!r}; "
                                         f"it has: {', '.join(offered) or 'none'}")


_NAMES = {str: "a string", bool: "true or false", int: "a whole number", float: "a number"}


def _kind(raw: Any) -> str:
    if isinstance(raw, float) and not math.isfinite(raw):
        return f"{raw} (not a finite number)"
    return {NoneType: "null", dict: "a mapping", list: "a list", str: "a string", bool: "a boolean",
            int: "a number", float: "a number"}.get(type(raw), type(raw).__name__)


def _file_certificates(base: Path, default: Certificate | None, source: str) -> CertificateLoader:
    def load(item: str, key: str) -> Certificate:
        if item == "default":
            if default is None:
                raise ConfigError(source, key, "'default' names the default client certificate, which is not available")
            return default
        path = base / item
        try:
            cert = Certificate(path.read_text(encoding="utf-8"))
            cert.x5t  # noqa: B018 - parse now, so a bad file fails here and not on the first request
        except FileNotFoundError:
            raise ConfigError(source, key, f"certificate file not found: {path}") from None
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise ConfigError(source, key, f"{path} is not a PEM certificate ({type(exc).__name__})") from None
        return cert

    return load


def _items(data: Mapping[str, Any], name: str, source: str) -> list[tuple[str, Any]]:
    raw = data.get(name)
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise ConfigError(source, name, f"must be a list, got {_kind(raw)}")
    return [(f"{name}[{i}]", item) for i, item in enumerate(raw)]


def load_config(path: Path, client_certificate: Certificate | None) -> LoadedConfig:
    """Read and validate the YAML config at ``path``; ``client_certificate`` is what ``default``
    means in an app's ``certificates``."""
    source = str(path)
    data = read_yaml(path, source)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(source, "", f"the file must be a mapping of {', '.join(TOP_KEYS)}; got {_kind(data)}")
    for name in data:
        if name not in TOP_KEYS:
            raise ConfigError(source, str(name), f"unknown key; known: {', '.join(TOP_KEYS)}")
    settings = {} if data.get("settings") is None else data["settings"]
    if not isinstance(settings, dict):
        raise ConfigError(source, "settings", f"must be a mapping, got {_kind(settings)}")
    Settings.from_mapping(settings, source=source)  # validates; the caller applies precedence
    include = data.get("include_defaults", False)
    if not isinstance(include, bool):
        raise ConfigError(source, "include_defaults", f"must be true or false, got {_kind(include)}")

    base = default_directory(client_certificate)
    directory = base if include else Directory(tenants={MSA_TENANT_ID: base.tenants[MSA_TENANT_ID]},
                                               apps={a.client_id: a
                                                     for a in (graph_app(), *azure_resource_apps())})
    reader = DirectoryReader(directory, source, _file_certificates(path.parent, client_certificate, source))
    for key, item in _items(data, "tenants", source):
        directory.add_tenant(reader.tenant(item, key))
    if not include:
        if len(directory.tenants) == 1:
            raise ConfigError(source, "tenants", "at least one tenant is needed unless include_defaults is true")
        # The first tenant is the home tenant (Sandbox.home_tenant, clone_fresh): the MSA tenant goes last.
        directory.tenants[MSA_TENANT_ID] = directory.tenants.pop(MSA_TENANT_ID)
    for key, item in _items(data, "apps", source):
        directory.add_app(reader.app(item, key))
    for key, item in _items(data, "users", source):
        directory.add_user(reader.user(item, key))
    for key, item in _items(data, "managed_identities", source):
        identity = directory.add_identity(reader.identity(item, key))
        if identity.kind == "system" and not directory.hosted_on:
            directory.hosted_on = identity.resource_id
    for key, item in _items(data, "consents", source):
        client_id, resource, scopes = reader.consent(item, key)
        directory.grant(client_id, resource.client_id, scopes)
    for key, item in _items(data, "role_assignments", source):
        principal, resource, roles = reader.role_assignment(item, key)
        directory.assign_roles(principal, resource.client_id, roles)
    return LoadedConfig(dict(settings), directory)
