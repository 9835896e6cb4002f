"""JSON Schema (2020-12) of config files, for editors: derived from the dataclasses the loader reads.

``config.load_config`` stays the judge (it also checks references, GUIDs and duplicates, which a
schema cannot); this schema is generated from the same ``Tenant``/``App``/``User`` fields and
``Settings`` fields, so an editor's view of a file cannot drift from what fakests accepts.
"""

from __future__ import annotations

import types
from dataclasses import MISSING, fields
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

from .directory import App, FederatedCredential, ManagedIdentity, Tenant, User
from .settings import Settings

_SIMPLE: dict[Any, dict[str, Any]] = {str: {"type": "string"}, bool: {"type": "boolean"},
                                      int: {"type": "integer"}, float: {"type": "number"}}


def _type(kind: Any) -> dict[str, Any]:
    origin = get_origin(kind)
    if origin is Literal:
        return {"enum": list(get_args(kind))}
    if origin in (Union, types.UnionType):
        options = [_type(a) for a in get_args(kind) if a is not type(None)]
        nullable = type(None) in get_args(kind)
        schema = options[0] if len(options) == 1 else {"anyOf": options}
        return {"anyOf": [schema, {"type": "null"}]} if nullable else schema
    if origin is list:
        return {"type": "array", "items": _type(get_args(kind)[0])}
    if origin is tuple:  # Settings' comma lists: a list, or one comma-separated string
        return {"anyOf": [{"type": "array", "items": {"type": "string"}}, {"type": "string"}]}
    if getattr(kind, "__name__", "") == "Path":
        return {"type": "string"}
    return dict(_SIMPLE.get(kind, {}))


def _object(cls: type, special: dict[str, dict[str, Any]] | None = None, skip: tuple[str, ...] = ()) -> dict[str, Any]:
    hints = get_type_hints(cls)
    props: dict[str, Any] = {}
    required = []
    for f in fields(cls):
        if f.name in skip:
            continue
        props[f.name] = (special or {}).get(f.name) or _type(hints[f.name])
        help_text = f.metadata.get("help") if f.metadata else None
        if f.metadata and "choices" in f.metadata:
            props[f.name] = {**props[f.name], "enum": list(f.metadata["choices"])}
        if help_text:
            props[f.name]["description"] = help_text
        if f.default is MISSING and f.default_factory is MISSING:
            required.append(f.name)
    return {"type": "object", "additionalProperties": False, "properties": props, "required": required}


_SECRET = {"anyOf": [{"type": "string", "minLength": 1}, {
    "type": "object", "additionalProperties": False, "required": ["value"],
    "properties": {"value": {"type": "string", "minLength": 1},
                   "expires_at": {"description": "Epoch seconds or an ISO 8601 date-time.",
                                  "anyOf": [{"type": "number"}, {"type": "string"}, {"type": "null"}]},
                   "hint": {"type": "string"}}}]}
_APP_SPECIAL = {
    "secrets": {"type": "array", "items": _SECRET, "description": "Secret values, optionally with expiry."},
    "certificates": {"type": "array", "items": {"type": "string"},
                     "description": "PEM files (relative to the config file) or 'default'."},
    "federated_credentials": {"type": "array", "maxItems": 20, "items": _object(FederatedCredential, {
        "audiences": {"type": "array", "minItems": 1, "maxItems": 1, "items": {"type": "string", "minLength": 1}},
        "issuer": {"type": "string", "minLength": 1,
                   "description": "An https URL, or a path on fakests itself: /kubernetes/{cluster}."}})},
}
_GRANT = {"type": "object", "additionalProperties": False, "required": ["client_id", "resource", "scopes"],
          "properties": {"client_id": {"type": "string"}, "resource": {"type": "string"},
                         "scopes": {"type": "array", "items": {"type": "string"}}}}
_ROLES = {"type": "object", "additionalProperties": False, "required": ["principal", "resource", "roles"],
          "properties": {"principal": {"type": "string", "description": "A client_id, a user's oid or username."},
                         "resource": {"type": "string"}, "roles": {"type": "array", "items": {"type": "string"}}}}

SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": "https://fakests.test/schema/config.json",
    "title": "fakests config file",
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "settings": {**_object(Settings), "required": []},
        "include_defaults": {"type": "boolean", "description": "Start from the built-in default directory."},
        "tenants": {"type": "array", "items": _object(Tenant)},
        "apps": {"type": "array", "items": _object(App, _APP_SPECIAL)},
        "users": {"type": "array", "items": _object(User)},
        "managed_identities": {"type": "array", "items": _object(
            ManagedIdentity, {"federated_credentials": dict(_APP_SPECIAL["federated_credentials"])})},
        "consents": {"type": "array", "items": _GRANT},
        "role_assignments": {"type": "array", "items": _ROLES},
    },
}
