"""Settings, declared once.

``Settings`` is inert (uvicorn's Config/Server split): it only holds values. Every field is also a
``FAKESTS_*`` environment variable and a ``fakests serve`` flag (the CLI is generated from
``FIELDS``); precedence is flag > environment > config file > default. ``from_env`` is the only
reader of ``os.environ`` in the package.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from .errors import ConfigError


def default_state_dir() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "fakests"


EXPIRES_ON_FORMATS = ("epoch", "date")  # ``identity_expires_on``


@dataclass(frozen=True)
class Settings:
    """How one fakests server runs. Lifetimes are seconds."""

    host: str = field(default="127.0.0.1", metadata={"help": "Address to listen on."})
    port: int = field(default=8443, metadata={"help": "Port to listen on; 0 picks a free one."})
    state_dir: Path = field(default_factory=default_state_dir,
                            metadata={"help": "Where keys and TLS material are kept across restarts."})
    config: Path | None = field(default=None, metadata={"help": "YAML file with the directory and settings."})
    public_url: str | None = field(
        default=None, metadata={"help": "Origin clients use (e.g. https://fakests:8443); default: the request's."})
    tls: bool = field(default=True, metadata={"help": "Serve https (clients require it)."})
    tls_names: tuple[str, ...] = field(
        default=(), metadata={"help": "Extra DNS names/IPs for the server certificate (comma-separated)."})
    impersonate: tuple[str, ...] = field(default=(), metadata={
        "flag_value": "public",
        "help": "Answer as Entra's own hosts: 'public' (login.microsoftonline.com, login.windows.net, "
                "login.microsoft.com) or host names (comma-separated). Puts them in the certificate, makes the "
                "first the public URL (the issuer) and listens on 443 unless a port is given. Route the names "
                "to fakests yourself (hosts file, compose network aliases)."})
    export_ca: Path | None = field(
        default=None, metadata={"help": "Also write the CA certificate here at start (a volume shared with clients)."})
    signing_key: Path | None = field(default=None, metadata={"help": "PEM with an RSA key and certificate."})
    access_token_lifetime: int = field(default=3599, metadata={"help": "expires_in of access tokens."})
    id_token_lifetime: int = field(default=3600, metadata={"help": "Lifetime of id_tokens."})
    managed_identity_token_lifetime: int = field(
        default=86399, metadata={"help": "expires_in of managed-identity tokens (Azure's last about 24 hours)."})
    refresh_token_lifetime: int = field(default=90 * 86400, metadata={"help": "Lifetime of refresh tokens."})
    code_lifetime: int = field(default=600, metadata={"help": "Lifetime of authorization codes."})
    device_code_lifetime: int = field(default=900, metadata={"help": "expires_in of device codes."})
    device_code_interval: int = field(default=5, metadata={"help": "interval of device code polling."})
    auto_sign_in: bool = field(
        default=False, metadata={"help": "Sign the login_hint user in without a page (for HTTP-only tests)."})
    journal_size: int = field(default=10_000, metadata={"help": "Requests kept per sandbox journal."})
    max_rules: int = field(default=1_000, metadata={"help": "Scenario rules loaded at once per sandbox."})
    max_sandboxes: int = field(default=10_000, metadata={"help": "Sandboxes alive at once."})
    sandbox_idle_ttl: int = field(default=3600, metadata={"help": "Seconds before an idle sandbox is dropped."})
    max_body: int = field(default=1 << 20, metadata={"help": "Largest request body accepted, in bytes."})
    scenario_dir: Path = field(default=Path("scenarios"),
                               metadata={"help": "Where scenario files are looked up by name."})
    scenarios: tuple[str, ...] = field(
        default=(), metadata={"help": "Scenarios (names or paths, comma-separated) armed in the default sandbox."})
    admin_token: str | None = field(
        default=None, metadata={"help": "Bearer token for /_fakests/ (required off loopback; generated if unset). "
                                        "Visible in the process list: prefer --admin-token-file."})
    admin_token_file: Path | None = field(
        default=None, metadata={"help": "File holding the admin token (read at start; not in the process list)."})
    identity_expires_on: str = field(default="epoch", metadata={
        "choices": EXPIRES_ON_FORMATS,
        "help": "How App Service and Azure ML answers carry expires_on: 'epoch' (seconds, as a string) or 'date' "
                "('12/07/2026 15:04:05 +00:00', as Azure ML's 2017-09-01 and older App Service hosts send it)."})
    arc_key_dir: Path = field(default=Path("/var/opt/azcmagent/tokens"), metadata={
        "help": "Where the Azure Arc endpoint writes its challenge key files. Clients read them at "
                "/var/opt/azcmagent/tokens (the challenge names that path), so this must be that directory as "
                "the client sees it: the same directory, a bind mount, a shared volume. fakests never creates it."})
    arc_user_assigned: bool = field(default=True, metadata={
        "help": "The Arc agent honours user-assigned selectors and echoes the identity it used (current agents); "
                "false: a legacy agent that ignores them and answers for the system-assigned identity."})
    identity_port: int = field(default=8480, metadata={
        "help": "Plain-HTTP port of the managed-identity endpoints (IMDS, App Service, Azure ML, Cloud Shell, Arc); "
                "0 picks a free one, -1 turns them off. They listen on --host."})
    log_requests: bool = field(default=True, metadata={"help": "One log line per request."})
    journal_commit_turns: int = field(default=3, metadata={
        "help": "With --workers and the SQLite store: turns of a worker's event loop a journal commit waits so "
                "that the rows of requests read meanwhile share it (0: commit at the next turn)."})
    workers: int = field(default=1, metadata={
        "help": "Worker processes; >1 shares state through {state_dir}/shared.sqlite (or --store)."})
    store: str = field(default="", metadata={
        "help": "Shared state for several replicas: redis://host:port/db (or rediss://, unix:///path.sock; "
                "?prefix=NAME namespaces the keys, default fakests:). Empty: in memory, or "
                "{state_dir}/shared.sqlite with --workers >1."})

    def __post_init__(self) -> None:
        if self.identity_expires_on not in EXPIRES_ON_FORMATS:
            raise ConfigError("identity_expires_on", "", f"{self.identity_expires_on!r} is not one of "
                              f"{', '.join(EXPIRES_ON_FORMATS)}")
        if self.journal_commit_turns < 0:
            raise ConfigError("journal_commit_turns", "", f"must be 0 or more, got {self.journal_commit_turns}")
        # An unset compose or CI variable gives '': taken as "no token", it would open the admin API (secrets,
        # the private key, minting) to the network with no warning. Say so at start-up instead.
        if self.admin_token is not None and not self.admin_token.strip():
            raise ConfigError("admin_token", "", "is empty (an unset variable?): give a token, point "
                              "admin_token_file at one, or leave it out (an open admin API on loopback only)")

    def impersonating(self, *, port_given: bool) -> Settings:
        """These settings with ``impersonate`` applied: the hosts in the certificate, the first as the public
        URL (unless one is set), port 443 (unless one was given). The same settings without it."""
        if not self.impersonate:
            return self
        hosts = impersonated_hosts(self.impersonate)
        return replace(self, impersonate=hosts, tls_names=tuple(dict.fromkeys((*self.tls_names, *hosts))),
                       public_url=self.public_url or f"https://{hosts[0]}", port=self.port if port_given else 443)

    def with_admin_token_file(self) -> Settings:
        """These settings with ``admin_token`` read from ``admin_token_file`` (if one is named)."""
        path = self.admin_token_file
        if path is None:
            return self
        if self.admin_token is not None:
            raise ConfigError("admin_token_file", "", "admin_token is set too: give one of them")
        try:
            token = path.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            reason = getattr(exc, "strerror", None) or str(exc)
            raise ConfigError(str(path), "", f"cannot read the admin token file: {reason}") from None
        if not token:
            raise ConfigError(str(path), "", "the admin token file is empty")
        return replace(self, admin_token=token)

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any], source: str) -> Settings:
        """Settings from a config file's ``settings:`` block; unknown keys and bad types stop here."""
        known = {f.name: f for f in fields(cls)}
        out: dict[str, Any] = {}
        for key, raw in values.items():
            if key not in known:
                raise ConfigError(source, f"settings.{key}", f"unknown setting; known: {', '.join(known)}")
            out[key] = _cast(known[key].type, raw, source, f"settings.{key}")
            choices = known[key].metadata.get("choices")
            if choices is not None and out[key] not in choices:
                raise ConfigError(source, f"settings.{key}", f"{out[key]!r} is not one of {', '.join(choices)}")
        return cls(**out)

    def to_json(self) -> str:
        """These settings as JSON that ``from_mapping`` reads back: how ``serve --workers N`` hands the
        settings it resolved (flags, environment, config file) to its worker processes."""
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        return json.dumps({k: str(v) if isinstance(v, Path) else v for k, v in values.items()})

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, base: Settings | None = None) -> Settings:
        """``base`` overridden by every ``FAKESTS_<FIELD>`` variable that is set."""
        environ = os.environ if environ is None else environ
        out: dict[str, Any] = {}
        for f in fields(cls):
            var = f"FAKESTS_{f.name.upper()}"
            if var in environ:
                out[f.name] = _cast(f.type, environ[var], "environment", var)
        return replace(base or cls(), **out)


# Entra's public-cloud authority hosts, as MSAL and azure-identity know them (MSAL Python's
# WELL_KNOWN_AUTHORITY_HOSTS; azure-identity's AzureAuthorityHosts.AZURE_PUBLIC_CLOUD), the first the one
# issuers name. sts.windows.net only appears in v1 issuers; clients never connect to it.
PUBLIC_CLOUD_HOSTS = ("login.microsoftonline.com", "login.windows.net", "login.microsoft.com")


def impersonated_hosts(names: tuple[str, ...]) -> tuple[str, ...]:
    """``impersonate`` with ``public`` expanded to the public cloud's hosts, lower-case, in order, once each."""
    out: list[str] = []
    for name in names:
        public = name.lower() in ("public", "1", "true", "yes", "on")  # FAKESTS_IMPERSONATE=1 means the same
        out += PUBLIC_CLOUD_HOSTS if public else [name.lower()]
    return tuple(dict.fromkeys(out))


def _cast(kind: Any, raw: Any, source: str, key: str) -> Any:
    kind = str(kind)
    try:
        if raw is None and "None" in kind:
            return None
        if kind.startswith("bool"):
            if isinstance(raw, bool):
                return raw
            if str(raw).lower() in ("1", "true", "yes", "on"):
                return True
            if str(raw).lower() in ("0", "false", "no", "off", ""):
                return False
            raise ValueError(f"expected true or false, got {raw!r}")
        if kind.startswith("int"):
            if isinstance(raw, bool):
                raise ValueError(f"expected a whole number, got {raw!r}")
            return int(raw)
        if kind.startswith("Path"):
            return Path(str(raw)).expanduser()
        if kind.startswith("tuple"):
            items = raw if isinstance(raw, list | tuple) else str(raw).split(",")
            return tuple(str(i).strip() for i in items if str(i).strip())
        if not isinstance(raw, str | int | float):
            raise ValueError(f"expected a string, got {type(raw).__name__}")
        return str(raw)
    except ValueError as exc:
        raise ConfigError(source, key, str(exc)) from None
