"""The ``fakests`` command: ``serve`` (foreground uvicorn over TLS), ``ca``, ``env``, ``validate``, ``schema``
and ``token``.

``serve``'s options are generated from the ``Settings`` fields, so a setting is declared once (uvicorn
writes each of its ~47 settings three times). Precedence: flag > ``FAKESTS_<FIELD>`` > the config
file's ``settings:`` block > default. A bad value is a ``ConfigError``: its ``file: key: reason`` goes
to stderr and the exit status is 2, without a traceback. ``validate`` prints ``file: OK`` or
``file: key: reason`` for each file and exits 1 if any is bad.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import logging
import multiprocessing
import os
import secrets
import shlex
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import Field, fields, replace
from pathlib import Path
from typing import Any, TypeVar

import click
import uvicorn
from click.core import ParameterSource

from .admin import mint
from .failures import scenarios
from .failures.faults import protocol_class
from .server.app import SETTINGS_ENV, create_app, create_identity_app, identity_config
from .server.runtime import (
    CLUSTER_KEYS,
    Runtime,
    ensure_client_certificate,
    load_cluster_keys,
    open_store,
    seed_shared_store,
)
from .server.uvicorn import Server, configure_logging, run_in_thread, stop_thread
from .state import defaults as d
from .state.directory import FIRST_PARTY_APP_IDS, MSA_TENANT_ID, Certificate, Directory
from .state.errors import ConfigError
from .state.files import write_atomic
from .state.keys import new_key_and_cert
from .state.settings import Settings
from .state.tls import ensure_tls, thumbprint
from .state.yamlfile import read_yaml
from .sts import identity as mi
from .sts.pages import BANNER

F = TypeVar("F", bound=Callable[..., Any])
_LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")


class ConfigFailure(click.ClickException):
    """A ``ConfigError`` on its way out of the CLI: the message on stderr, exit status 2."""

    exit_code = 2


# --- settings: options generated from the dataclass, and precedence ---------------------------------
def _option(f: Field[Any]) -> Callable[[F], F]:
    kind, flag = str(f.type), "--" + f.name.replace("_", "-")
    extra: dict[str, Any] = {}
    if kind.startswith("bool"):
        decls = [f"{flag}/--no-{flag[2:]}"]
    elif kind.startswith("int"):
        decls, extra["type"] = [flag], click.INT
    elif kind.startswith("Path"):
        decls, extra["type"] = [flag], click.Path(dir_okay=f.name.endswith("_dir"), path_type=Path)
    else:
        decls, extra["type"] = [flag], str
    if "flag_value" in f.metadata:  # ``--impersonate`` alone means its flag value; ``--impersonate X`` means X
        extra.update(is_flag=False, flag_value=f.metadata["flag_value"])
    default = f.default_factory() if callable(f.default_factory) else f.default
    default = ",".join(default) or None if isinstance(default, tuple) else default  # shown by --help only
    return click.option(*decls, f.name, default=default, show_default=default is not None,
                        help=f"{f.metadata['help']} [env: FAKESTS_{f.name.upper()}]", **extra)


def settings_options(names: Iterable[str] | None = None) -> Callable[[F], F]:
    """One click option per ``Settings`` field (or per field in ``names``), help from its metadata."""
    chosen = [f for f in fields(Settings) if names is None or f.name in set(names)]

    def decorate(fn: F) -> F:
        for f in reversed(chosen):
            fn = _option(f)(fn)
        return fn

    return decorate


def given_flags(ctx: click.Context, values: Mapping[str, Any]) -> dict[str, Any]:
    """The settings the user typed on the command line (click's defaults are only for ``--help``)."""
    out: dict[str, Any] = {}
    for name, value in values.items():
        if ctx.get_parameter_source(name) is ParameterSource.COMMANDLINE:
            is_tuple = str(Settings.__dataclass_fields__[name].type).startswith("tuple")
            out[name] = tuple(p.strip() for p in value.split(",") if p.strip()) if is_tuple else value
    return out


def resolve_settings(flags: Mapping[str, Any], environ: Mapping[str, str] | None = None,
                     ) -> tuple[Settings, Directory | None]:
    """Settings from flag > environment > config file > default, and the config's directory if read."""
    environ = os.environ if environ is None else environ
    settings, directory = _resolve(flags, environ)
    # --impersonate listens where Entra does, 443, unless a port was given somewhere.
    port_given = "port" in flags or "FAKESTS_PORT" in environ or settings.port != Settings().port
    return settings.impersonating(port_given=port_given), directory


def _resolve(flags: Mapping[str, Any], environ: Mapping[str, str]) -> tuple[Settings, Directory | None]:
    first = replace(Settings.from_env(environ), **flags)
    if first.config is None:
        return first.with_admin_token_file(), None
    path = first.config
    from .state.config import load_config

    cert = Certificate(ensure_client_certificate(first.state_dir / "client" / "client-cert.pem").read_text())
    loaded = load_config(path, cert)
    from_file = Settings.from_mapping(loaded.settings_values or {}, source=str(path))
    settings = replace(Settings.from_env(environ, base=from_file), **{**flags, "config": path})
    # The directory holds the client certificate of the state dir it was read with: when the file
    # moves the state dir, let Runtime.start read it again with the right one.
    return settings.with_admin_token_file(), loaded.directory if settings.state_dir == first.state_dir else None


def is_loopback(host: str) -> bool:
    """True for localhost and loopback addresses (where /_fakests/ needs no admin token)."""
    try:
        return host.lower() in _LOOPBACK_NAMES or ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def origin(settings: Settings, port: int) -> str:
    """The origin clients use: ``public_url``, else ``https://localhost:{port}`` on local binds."""
    if settings.public_url:
        return settings.public_url.rstrip("/")
    host = "localhost" if is_loopback(settings.host) or settings.host in ("0.0.0.0", "::", "") else settings.host
    host = f"[{host}]" if ":" in host else host
    scheme = "https" if settings.tls else "http"
    default = {"https": 443, "http": 80}[scheme]  # an authority names no default port, as Entra's never does
    return f"{scheme}://{host}" if port == default else f"{scheme}://{host}:{port}"


# --- the banner -------------------------------------------------------------------------------------
def _home_tenant(directory: Directory) -> str:
    return next((t for t in directory.tenants if t != MSA_TENANT_ID), d.TENANT_ID)


def _default_apps(runtime: Runtime) -> tuple[list[str], str, str, str]:
    lines = [
        f"Default directory: tenant Contoso {d.TENANT_ID} ({d.TENANT_DOMAIN}), second tenant {d.OTHER_TENANT_ID}",
        f"  daemon  client_id {d.DAEMON_ID}  secret {d.DAEMON_SECRET}  (client credentials; role Data.Read)",
        f"  web     client_id {d.WEB_ID}  secret {d.WEB_SECRET}  (auth code, OBO; https://localhost/callback)",
        f"  api     client_id {d.API_ID}  secret {d.API_SECRET}  (resource {d.API_URI}, scope access_as_user)",
        f"  public  client_id {d.PUBLIC_ID}  (public client: device code, interactive, username/password)",
        f"  users   alice@contoso.com, bob@contoso.com, carol@outlook.com ... password {d.PASSWORD}",
        f"  client certificate of daemon and web (key + cert PEM): {runtime.client_cert_path}",
    ]
    return lines, d.DAEMON_ID, d.DAEMON_SECRET, f"{d.API_URI}/.default"


def _config_apps(runtime: Runtime) -> tuple[list[str], str, str, str]:
    directory = runtime.sandboxes.template
    lines = [f"Directory from {runtime.settings.config}: tenants "
             + ", ".join(f"{t.display_name} {t.tenant_id}" for t in directory.tenants.values() if not t.is_msa)]
    client, secret, resource = "<client_id>", "<secret>", "https://graph.microsoft.com"
    for app in directory.apps.values():
        if app.client_id in FIRST_PARTY_APP_IDS:
            continue
        values = [s.value for s in app.secrets if s.expires_at is None or s.expires_at > time.time()]
        kind = "public client" if app.public_client else ", ".join(f"secret {v}" for v in values) or "no secret"
        lines.append(f"  {app.display_name}  client_id {app.client_id}  {kind}"
                     + (f"  (resource {app.identifier_uris[0]})" if app.identifier_uris else "")
                     + ("" if app.enabled else "  (disabled)"))
        if values and app.enabled and not app.public_client and client.startswith("<"):
            client, secret = app.client_id, values[0]
        elif app.identifier_uris and resource.startswith("https://graph"):
            resource = app.identifier_uris[0]
    lines.append(f"  client certificate ('default' under certificates; key + cert PEM): {runtime.client_cert_path}")
    users = list(directory.users.values())
    lines += [f"  user  {u.username}  password {u.password}" for u in users[:12]]
    lines += [f"  ... and {len(users) - 12} more users"] if len(users) > 12 else []
    return lines, client, secret, f"{resource}/.default"


def identity_origin(settings: Settings, port: int) -> str:
    """``http://host:port`` of the managed-identity endpoints: the public URL's host, else ``localhost``
    on local and wildcard binds (plain HTTP, as Azure's are)."""
    from urllib.parse import urlsplit

    host = urlsplit(settings.public_url).hostname if settings.public_url else None
    if host is None:
        loopback = is_loopback(settings.host) or settings.host in ("0.0.0.0", "::", "")
        host = "localhost" if loopback else settings.host
    return f"http://{f'[{host}]' if ':' in host else host}:{port}"


def source_environment(settings: Settings, source: str, tenant: str, *, identity_port: int, port: int,
                       server_cert: Path | None) -> dict[str, str]:
    """The variables that point a client on this machine at ``source`` (the default sandbox's): the
    managed-identity origin, or for Service Fabric the STS's TLS origin and its certificate's thumbprint."""
    if source not in mi.TLS_IDENTITY_PATHS:
        return mi.identity_environment(source, identity_origin(settings, identity_port), tenant)
    if server_cert is None:
        raise ConfigFailure(f"{source} is served over TLS, and tls is off")
    return mi.identity_environment(source, "", tenant, tls_base_url=origin(settings, port),
                                   server_thumbprint=thumbprint(server_cert))


def _identity_lines(runtime: Runtime, identity_port: int, port: int) -> list[str]:
    s = runtime.settings
    base = identity_origin(s, identity_port)
    tenant = _home_tenant(runtime.sandboxes.template)
    out = [f"  Managed identity  {base}  (IMDS, App Service, Azure ML, Cloud Shell, Arc; plain HTTP as Azure's):"]
    sources = [("imds", "IMDS"), ("app_service", "App Service"), ("arc", "Azure Arc")]
    if runtime.tls:
        sources.append(("service_fabric", "Svc Fabric"))
    for source, label in sources:
        env = source_environment(s, source, tenant, identity_port=identity_port, port=port,
                                 server_cert=runtime.tls.cert if runtime.tls else None)
        out.append(f"    {label:<12} {' '.join(f'{k}={v}' for k, v in env.items())}")
    missing = "" if Path(s.arc_key_dir).is_dir() else " (missing: Arc answers 500 until it exists)"
    out.append(f"    Arc's keys go to {s.arc_key_dir}{missing}; clients read them at {mi.ARC_CLIENT_KEY_DIR}")
    out.append('    or: eval "$(fakests env --managed-identity SOURCE)"')
    return out


def banner(runtime: Runtime, port: int, admin_token: str | None = None, *, identity_port: int | None = None) -> str:
    """What a user needs to point a client at this server, printed once it listens."""
    s, tls = runtime.settings, runtime.tls
    base = origin(s, port)
    authority = f"{base}/{_home_tenant(runtime.sandboxes.template)}"
    ca = str(tls.ca) if tls else ""
    apps, client, secret, scope = (_config_apps if s.config else _default_apps)(runtime)
    out = [f"*** {BANNER} ***", "", f"  Listening  {s.host}:{port}", f"  Authority  {authority}",
           f"             {base}/common  (also organizations, consumers)",
           f"  CA         {ca}" if tls else "  TLS is OFF: MSAL and azure-identity refuse http authorities."]
    out.append(f"  Dashboard  {base}/_fakests/dashboard")
    if identity_port is not None:
        out += _identity_lines(runtime, identity_port, port)
    if s.impersonate:
        out.append(f"  Answers as {', '.join(s.impersonate)}: route these names here (a hosts-file line, compose "
                   "network aliases); a hosts file redirects every program on the machine")
    armed = [st.scenario for st in runtime.sandboxes.default.engine.states] if s.scenarios else []
    if armed:
        out.append(f"  Armed      {', '.join(dict.fromkeys(armed))} (in the default sandbox)")
    if s.store:
        from .state.redisstore import redact_url

        out.append(f"  Store      {redact_url(s.store)} (state shared with every replica using it)")
    out.append("")
    out += [*apps, ""]
    out += ["MSAL Python:", "    import msal, requests",
            "    http = requests.Session()",
            f"    http.verify, http.trust_env = {ca!r}, False  # else *_CA_BUNDLE env vars override verify",
            "    app = msal.ConfidentialClientApplication(",
            f"        {client!r}, client_credential={secret!r},",
            f"        authority={authority!r}, instance_discovery=False, http_client=http)",
            f"    result = app.acquire_token_for_client(scopes=[{scope!r}])",
            "    print(result.get('access_token') or result)", ""]
    if tls:
        # The bundle (public CAs plus fakests') is made by the command, not at every start.
        q, state = shlex.quote(ca), shlex.quote(str(s.state_dir))
        out += ["Trust the CA elsewhere (or: eval \"$(fakests env)\"; fakests env explains .NET and Java):",
                f"  bundle=$(fakests ca --bundle --state-dir {state})",
                f"  export REQUESTS_CA_BUNDLE=$bundle SSL_CERT_FILE=$bundle NODE_EXTRA_CA_CERTS={q}", ""]
    if admin_token:
        out += [f"Admin token for /_fakests/ (shown once): Authorization: Bearer {admin_token}", ""]
    out.append(f"Ready on {base} (Ctrl+C to stop).")
    return "\n".join(out)


# --- serving ----------------------------------------------------------------------------------------
class IdentityServer:
    """The managed-identity endpoints of ``fakests serve`` (``server.app.create_identity_app``): plain HTTP on
    ``identity_port`` (-1: none), in a thread beside the STS, on the same sandboxes. Its tokens name the STS
    as issuer, whose origin is known once the STS listens (``point_at``)."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.settings = runtime.settings
        self.app = create_identity_app(runtime, origin(runtime.settings, runtime.settings.port))
        self._running: tuple[Server, threading.Thread] | None = None
        self.port: int | None = None

    def start(self) -> None:
        if self.settings.identity_port < 0:
            return
        s = self.settings
        config = identity_config(self.app, s.host, s.identity_port)
        try:
            self._running = run_in_thread(config, "fakests-identity")
        except RuntimeError:
            raise ConfigFailure(f"identity_port: cannot listen on {s.host}:{s.identity_port} (in use?): give "
                                "another --identity-port, 0 for a free one, or -1 for no managed-identity "
                                "endpoints") from None
        self.port = self._running[0].servers[0].sockets[0].getsockname()[1]
        self.runtime.identity_listener = lambda: self.port  # for the admin API: remote sandboxes ask it

    def point_at(self, sts_port: int) -> None:
        setattr(self.app.state, mi.STS_ORIGIN, origin(self.settings, sts_port))

    def stop(self) -> None:
        if self._running is not None:
            stop_thread(*self._running)
            self._running = None


class _ForegroundServer(Server):
    """``Server`` on the main thread: calls ``on_started(port)`` once bound; signals stop it at once."""

    def __init__(self, config: uvicorn.Config, on_started: Callable[[int], None]) -> None:
        super().__init__(config)
        self._on_started = on_started

    async def startup(self, sockets: list[Any] | None = None) -> None:
        await super().startup(sockets)
        if self.started and not self.should_exit:
            self._on_started(self.servers[0].sockets[0].getsockname()[1])

    def handle_exit(self, sig: int, frame: Any) -> None:
        super().handle_exit(sig, frame)
        self.wake()


def serve_forever(runtime: Runtime, on_started: Callable[[int], None]) -> None:
    """Run uvicorn in the foreground until SIGINT/SIGTERM."""
    configure_logging()
    tls, s = runtime.tls, runtime.settings
    # protocol_class(): uvicorn's httptools protocol plus the transport in the scope (real connection faults)
    # and a cap on request heads; the same as FakeSTS uses.
    config = uvicorn.Config(create_app(runtime=runtime), host=s.host, port=s.port, log_level="warning",
                            access_log=False, lifespan="off", server_header=False, http=protocol_class(),
                            ssl_certfile=str(tls.cert) if tls else None, ssl_keyfile=str(tls.key) if tls else None)
    _ForegroundServer(config, on_started).run()


class _WorkerServer(Server):
    """``Server`` in one worker process of ``serve --workers N``: releases ``started`` once it serves;
    signals stop it at once (its shutdown drops idle keep-alive TLS connections instead of waiting)."""

    def __init__(self, config: uvicorn.Config, started: Any) -> None:
        super().__init__(config)
        self._started = started

    async def startup(self, sockets: list[Any] | None = None) -> None:
        await super().startup(sockets)
        if self.started and not self.should_exit:
            self._started.release()

    def handle_exit(self, sig: int, frame: Any) -> None:
        super().handle_exit(sig, frame)
        self.wake()


def _worker_main(config: uvicorn.Config, sockets: list[socket.socket], started: Any) -> None:
    """The body of one worker process (at module level: a spawned process finds it by name)."""
    config.configure_logging()
    with contextlib.suppress(KeyboardInterrupt):
        _WorkerServer(config, started).run(sockets=sockets)


def serve_workers(runtime: Runtime, on_started: Callable[[int], None], *, start_timeout: float = 60.0) -> None:
    """``serve --workers N``: N worker processes serving one socket, until SIGINT/SIGTERM.

    The kernel hands each connection to one worker, so whatever one request leaves for another (codes,
    refresh tokens, device codes, sessions, rule counters, the journal, sandbox changes) goes through
    ``{state_dir}/shared.sqlite`` (``store.SharedStore``), seeded here with this runtime's default
    sandbox; or, with ``--store redis://``, through Redis, which ``Runtime.start`` seeded. The socket is
    bound here, before the workers start, so port 0 is resolved once and every worker serves it;
    ``on_started(port)`` runs once every worker serves. A worker that dies later is replaced. Not
    uvicorn's own supervisor: its workers wait for idle TLS clients at shutdown."""
    configure_logging()
    tls, s = runtime.tls, runtime.settings
    if not s.store:
        seed_shared_store(runtime)
    os.environ[SETTINGS_ENV] = s.to_json()
    config = uvicorn.Config("fakests.server.app:worker_app", factory=True, host=s.host, port=s.port,
                            log_level="warning",
                            access_log=False, lifespan="off", server_header=False, http=protocol_class(),
                            ssl_certfile=str(tls.cert) if tls else None, ssl_keyfile=str(tls.key) if tls else None)
    sock = config.bind_socket()
    spawn = multiprocessing.get_context("spawn")
    started = spawn.Semaphore(0)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())

    def start() -> Any:
        worker = spawn.Process(target=_worker_main, args=(config, [sock], started), name="fakests-worker")
        worker.start()
        return worker

    workers = [start() for _ in range(s.workers)]
    try:
        ready, deadline = 0, time.monotonic() + start_timeout
        while ready < len(workers):
            if stop.is_set():
                return
            if not all(w.is_alive() for w in workers) or time.monotonic() > deadline:
                raise click.ClickException("a worker process did not start (see its error above)")
            ready += started.acquire(timeout=0.2)
        on_started(sock.getsockname()[1])
        while not stop.wait(0.5):
            for i, worker in enumerate(workers):
                if not worker.is_alive():
                    logging.getLogger("fakests").warning("worker %s exited (%s); starting another", worker.pid,
                                                         worker.exitcode)
                    workers[i] = start()
    finally:
        for worker in workers:
            if worker.is_alive():
                worker.terminate()
        for worker in workers:
            worker.join(10)
            if worker.is_alive():
                worker.kill()
                worker.join(5)
        sock.close()


# --- commands ---------------------------------------------------------------------------------------
@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
def cli() -> None:
    """fakests: a fake Microsoft Entra ID token service for tests. Never trust its tokens in production."""


@cli.command()
@settings_options()
@click.pass_context
def serve(ctx: click.Context, **values: Any) -> None:
    """Serve the default directory (or --config's) over HTTPS in the foreground.

    With --store redis://..., this is one replica of several sharing that Redis (each may have its own
    --workers): they serve the same sandboxes, and the first replica's signing keys, CA, client
    certificate and generated admin token."""
    try:
        settings, directory = resolve_settings(given_flags(ctx, values))
        if settings.workers < 1:
            raise ConfigError("--workers", "", f"must be at least 1, got {settings.workers}")
        store = open_store(settings)  # a bad URL or an unreachable Redis stops start-up here
        token = None
        if settings.admin_token is None and not is_loopback(settings.host):
            token = secrets.token_urlsafe(32)
            if store is not None:  # replicas behind one load balancer need one token: the first one's
                token = store.share("admin-token", token.encode()).decode()
            settings = replace(settings, admin_token=token)
        runtime = Runtime.start(settings, directory=directory, store=store)
    except ConfigError as exc:
        raise ConfigFailure(str(exc)) from None
    if settings.workers > 1:  # the workers share one socket; the managed-identity thread is one process's
        serve_workers(runtime, lambda port: click.echo(banner(runtime, port, token)))
        return
    identity = IdentityServer(runtime)

    def started(port: int) -> None:
        identity.point_at(port)
        click.echo(banner(runtime, port, token, identity_port=identity.port))

    identity.start()
    try:
        serve_forever(runtime, started)
    finally:
        identity.stop()


def _state(ctx: click.Context, values: Mapping[str, Any]) -> Settings:
    try:
        return resolve_settings(given_flags(ctx, values))[0]
    except ConfigError as exc:
        raise ConfigFailure(str(exc)) from None


def _ca_path(settings: Settings) -> Path:
    ca = settings.state_dir / "tls" / "ca.pem"
    # Make the CA on first use, but never remake the server certificate of a server that may be running.
    return ca if ca.is_file() else ensure_tls(settings.state_dir / "tls", settings.tls_names).ca


@cli.command()
@settings_options(["state_dir", "config"])
@click.option("--pem", is_flag=True, help="Print the certificate (PEM) instead of its path.")
@click.option("--bundle", is_flag=True,
              help="Print the path of a bundle of the usual public CAs plus fakests' (for REQUESTS_CA_BUNDLE and "
                   "SSL_CERT_FILE, which replace the default bundle: the app's other HTTPS calls keep working).")
@click.pass_context
def ca(ctx: click.Context, pem: bool, bundle: bool, **values: Any) -> None:
    """Print the path of the CA certificate clients must trust (made on first use)."""
    path = _ca_path(_state(ctx, values))
    if bundle:
        path = _bundle(path)
    click.echo(path.read_text().rstrip("\n") if pem else str(path))


def _bundle(ca: Path) -> Path:
    """``{state_dir}/tls/bundle.pem``: certifi's public CAs (what requests trusts by default; else the
    system's bundle) followed by fakests' CA, written again on each call so it follows both."""
    import ssl

    try:
        import certifi

        public = Path(certifi.where())
    except ImportError:  # certifi comes with requests; without it, the system's bundle
        public = Path(ssl.get_default_verify_paths().cafile or "/etc/ssl/certs/ca-certificates.crt")
    out = ca.with_name("bundle.pem")
    text = public.read_text(encoding="utf-8").rstrip("\n")
    write_atomic(out, f"{text}\n\n# fakests local CA ({ca})\n{ca.read_text().strip()}\n".encode(), private=False)
    return out


_WORKLOAD_LIFETIME = 24 * 3600  # no kubelet refreshes the file: a day, then run ``fakests env`` again
# What would make EnvironmentCredential win over workload identity inside DefaultAzureCredential.
_WORKLOAD_UNSET = ("AZURE_CLIENT_SECRET", "AZURE_CLIENT_CERTIFICATE_PATH", "AZURE_USERNAME", "AZURE_PASSWORD")


def _workload_lines(settings: Settings, directory: Directory, account: str) -> list[str]:
    """``fakests env --workload-identity``: a service-account token of the fake cluster in a file under the
    state directory, and the variables the AKS webhook sets, naming the app whose federated credential
    trusts that service account (the default directory's daemon app trusts ``default/workload``)."""
    from .state import kubernetes

    namespace, _, service_account = account.partition("/")
    if not namespace or not service_account or "/" in service_account:
        raise click.BadParameter(f"expected NAMESPACE/SERVICE_ACCOUNT, got {account!r}",
                                 param_hint="--workload-identity")
    authority = origin(settings, settings.port)
    issuer = kubernetes.issuer_url(authority)
    sub = kubernetes.subject(namespace, service_account)
    app = next((a for a in directory.apps.values() for c in a.federated_credentials
                if c.issuer_matches(issuer) and c.subject == sub), None)
    if app is None:
        raise click.ClickException(f"no app has a federated credential for issuer {issuer} and subject {sub!r}; "
                                   "add one to the config file (apps[].federated_credentials)")
    now = time.time()
    token = kubernetes.ClusterIssuer(load_cluster_keys(settings.state_dir)).token(
        issuer, namespace=namespace, service_account=service_account, now=now, lifetime=_WORKLOAD_LIFETIME)
    path = settings.state_dir / CLUSTER_KEYS / "tokens" / f"{namespace}.{service_account}.jwt"
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, token.encode(), private=True)
    wanted = {"AZURE_TENANT_ID": app.tenant_id, "AZURE_CLIENT_ID": app.client_id,
              "AZURE_FEDERATED_TOKEN_FILE": str(path), "AZURE_AUTHORITY_HOST": authority}
    expires = time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(now + _WORKLOAD_LIFETIME))
    return [f"# fakests workload identity: service account {namespace}/{service_account} of the fake cluster "
            f"{issuer}, as app {app.display_name!r}", f"# the token expires {expires}: run this again for a fresh one",
            f"unset {' '.join(_WORKLOAD_UNSET)}", *(f"export {k}={shlex.quote(v)}" for k, v in wanted.items())]


@cli.command()
@settings_options(["state_dir", "config", "host", "port", "public_url", "identity_port", "arc_key_dir"])
@click.option("--managed-identity", "source", type=click.Choice(mi.IDENTITY_ENDPOINTS),
              help="Print instead the variables that make clients on this machine take their managed-identity "
                   "tokens from fakests' SOURCE endpoint (the default sandbox's identities).")
@click.option("--workload-identity", "account", is_flag=False, flag_value="default/workload", default=None,
              metavar="[NAMESPACE/SERVICE_ACCOUNT]",
              help="Print instead the variables of a pod with Azure workload identity: a service-account token of "
                   "fakests' fake Kubernetes cluster (default default/workload) in a file, AZURE_TENANT_ID, "
                   "AZURE_CLIENT_ID, AZURE_FEDERATED_TOKEN_FILE, AZURE_AUTHORITY_HOST.")
@click.pass_context
def env(ctx: click.Context, source: str | None, account: str | None, **values: Any) -> None:
    """Print shell lines that make clients trust the CA: eval "$(fakests env)"."""
    if account is not None:
        try:
            settings, directory = resolve_settings(given_flags(ctx, values))
        except ConfigError as exc:
            raise ConfigFailure(str(exc)) from None
        click.echo("\n".join(_workload_lines(settings, directory or d.default_directory(), account)))
        return
    if source is not None:
        try:
            settings, directory = resolve_settings(given_flags(ctx, values))
        except ConfigError as exc:
            raise ConfigFailure(str(exc)) from None
        tenant = _home_tenant(directory) if directory is not None else d.TENANT_ID
        cert = None
        if settings.tls and source in mi.TLS_IDENTITY_PATHS:
            cert = settings.state_dir / "tls" / "server.pem"  # a running server's: never remade here
            cert = cert if cert.is_file() else ensure_tls(cert.parent, settings.tls_names).cert
        wanted = source_environment(settings, source, tenant, identity_port=settings.identity_port,
                                    port=settings.port, server_cert=cert)
        at = settings.port if source in mi.TLS_IDENTITY_PATHS else settings.identity_port
        lines = [f"# fakests managed identity ({source}): the default sandbox's, at {settings.host}:{at}",
                 f"unset {' '.join(mi.SOURCE_VARIABLES)}"]
        if source in mi.TLS_IDENTITY_PATHS:
            lines.append("# Node clients check the certificate, not the thumbprint: also eval \"$(fakests env)\"")
        if source == "arc":
            lines.append(f"# clients read Arc's keys in {mi.ARC_CLIENT_KEY_DIR}: it must be fakests' arc_key_dir "
                         f"({settings.arc_key_dir})")
        click.echo("\n".join([*lines, *(f"export {k}={shlex.quote(v)}" for k, v in wanted.items())]))
        return
    path = _ca_path(_state(ctx, values))
    q, store = shlex.quote(str(path)), shlex.quote(str(path.parent / "truststore.p12"))
    b = shlex.quote(str(_bundle(path)))
    click.echo("\n".join([
        f"# fakests CA: {path}",
        "# These two replace the default CA bundle in the processes that inherit them: the bundle holds the",
        "# usual public CAs plus fakests', so an app's other HTTPS calls keep working.",
        f"export REQUESTS_CA_BUNDLE={b}  # requests, MSAL Python, azure-identity",
        f"export SSL_CERT_FILE={b}  # Python ssl/httpx, OpenSSL; .NET on Linux",
        f"export NODE_EXTRA_CA_CERTS={q}  # Node.js, msal-node (added to the built-in CAs)",
        "# .NET: on Linux SSL_CERT_FILE above works, or trust it system-wide:",
        f"#   sudo cp {q} /usr/local/share/ca-certificates/fakests.crt && sudo update-ca-certificates",
        f"#   Windows: certutil -user -addstore Root {q}",
        "# Java: import it into a truststore and point the JVM at it:",
        f"#   keytool -importcert -noprompt -alias fakests -file {q} -keystore {store} "
        "-storetype PKCS12 -storepass changeit",
        f"#   export JAVA_TOOL_OPTIONS=\"-Djavax.net.ssl.trustStore={store} "
        "-Djavax.net.ssl.trustStorePassword=changeit\"",
    ]))


def _is_config(path: Path) -> bool:
    """Whether ``path`` looks like a config file (top-level config keys, no ``rules``); anything
    unreadable counts as a scenario, whose loader then reports the problem."""
    from .state.config import TOP_KEYS

    try:
        data = read_yaml(path)
    except ConfigError:
        return False
    return isinstance(data, dict) and "rules" not in data and bool(set(data) & set(TOP_KEYS))


def _throwaway_certificate() -> Certificate:
    """What ``default`` means in a config file being validated: a fresh certificate, nothing written."""
    from cryptography.hazmat.primitives.serialization import Encoding

    return Certificate(new_key_and_cert("fakests validate")[1].public_bytes(Encoding.PEM).decode())


def check_file(path: Path, certificate: Callable[[], Certificate]) -> None:
    """Load ``path`` strictly as a config file or a scenario file; raises ``ConfigError``."""
    if _is_config(path):
        from .state.config import load_config

        load_config(path, certificate())
    else:
        scenarios.load_file(path)


@cli.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.pass_context
def validate(ctx: click.Context, files: tuple[Path, ...]) -> None:
    """Check scenario files, or config files (those with top-level config keys such as apps or users).

    Prints 'FILE: OK' or 'FILE: key: reason' for each; the exit status is 1 if any file is bad.
    """
    cache: list[Certificate] = []

    def certificate() -> Certificate:
        if not cache:
            cache.append(_throwaway_certificate())
        return cache[0]

    bad = 0
    for path in files:
        try:
            check_file(path, certificate)
        except ConfigError as exc:
            bad += 1
            click.echo(str(exc) if exc.source == str(path) else f"{path}: {exc}")
        except RecursionError:
            bad += 1
            click.echo(f"{path}: nested too deeply")
        else:
            click.echo(f"{path}: OK")
    if bad:
        ctx.exit(1)


@cli.command()
@click.argument("kind", type=click.Choice(["scenario", "config"]), default="scenario")
def schema(kind: str) -> None:
    """Print the JSON Schema (2020-12) of scenario files, for editors and other tools.

    There is no schema for config files yet: 'schema config' says so on stderr and prints the scenario
    schema; check config files with 'fakests validate'.
    """
    chosen: dict[str, Any] = scenarios.SCHEMA
    if kind == "config":
        from .state import config

        found = getattr(config, "SCHEMA", None)
        if isinstance(found, dict):
            chosen = found
        else:
            click.echo("fakests has no JSON Schema for config files yet: printing the scenario schema only. "
                       "Check config files with 'fakests validate FILE'.", err=True)
    click.echo(json.dumps(chosen, indent=2))


def _claim(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> dict[str, Any]:
    """``--claim NAME=VALUE`` options as a mapping; VALUE is JSON when it parses (``null`` removes)."""
    out: dict[str, Any] = {}
    for item in values:
        name, sep, raw = item.partition("=")
        if not sep or not name.strip():
            raise click.BadParameter(f"expected NAME=VALUE, got {item!r}", ctx=ctx, param=param)
        try:
            out[name.strip()] = json.loads(raw)
        except ValueError:
            out[name.strip()] = raw
    return out


@cli.command()
@settings_options(["state_dir", "config", "host", "port", "public_url", "tls"])
@click.option("--kind", type=click.Choice(mint.KINDS), default="access", show_default=True,
              help="An access token, or an id_token.")
@click.option("--flavor", type=click.Choice(mint.FLAVORS), default="valid", show_default=True,
              help="Valid, or wrong in one way a resource server must refuse.")
@click.option("--claim", "claims", multiple=True, callback=_claim, metavar="NAME=VALUE",
              help="Override a claim (repeatable); VALUE is JSON if it parses (123, true, ['a']), else a "
                   "string; null removes the claim.")
@click.option("--audience", help="The resource: a client id or identifier URI (default: the default API).")
@click.option("--user", help="A username: a delegated token (default: an app-only access token).")
@click.option("--client-id", help="The app the token is issued to.")
@click.option("--tenant-id", help="A tenant GUID or domain (default: the user's, else the home tenant).")
@click.option("--json", "as_json", is_flag=True, help="Print {token, claims, header} as JSON.")
@click.pass_context
def token(ctx: click.Context, kind: str, flavor: str, claims: dict[str, Any], audience: str | None,
          user: str | None, client_id: str | None, tenant_id: str | None, as_json: bool, **values: Any) -> None:
    """Print a token signed with the state directory's keys, for testing resource servers.

    A server started later on the same state directory (and origin: --port, --public-url) publishes
    the signing key in its JWKS, so valid tokens verify against it.
    """
    try:
        settings, directory = resolve_settings(given_flags(ctx, values))
        runtime = Runtime.start(replace(settings, tls=False, scenarios=()), directory=directory)
        minted = mint.mint_token(runtime.sandboxes.default, origin(settings, settings.port), kind=kind,
                                 claims=claims, audience=audience, tenant_id=tenant_id, user=user,
                                 client_id=client_id, flavor=flavor)
    except ConfigError as exc:
        if exc.source == "token":  # a bad option: name it as typed
            option = "--claim" if exc.key == "claims" else "--" + exc.key.replace("_", "-")
            raise ConfigFailure(f"{option}: {exc.reason}") from None
        raise ConfigFailure(str(exc)) from None
    click.echo(json.dumps(minted, indent=2) if as_json else minted["token"])


def _health_url(settings: Settings) -> str:
    """Where ``fakests health`` asks: this machine's loopback for wildcard and loopback binds, else the
    bound address itself (the server certificate names only what ``tls_names`` adds)."""
    host = settings.host
    if host in ("", "0.0.0.0") or (is_loopback(host) and host != "::1"):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    host = f"[{host}]" if ":" in host else host
    return f"{'https' if settings.tls else 'http'}://{host}:{settings.port}/_fakests/health"


def _root_cause(exc: BaseException) -> str:
    """The innermost reason of a requests/urllib3 error, without the pool and retry wrappers."""
    while True:
        inner = getattr(exc, "reason", None)
        inner = inner if isinstance(inner, BaseException) else next(
            (a for a in exc.args if isinstance(a, BaseException)), None)
        if inner is None:
            break
        exc = inner
    text = str(exc).rsplit("Failed to establish a new connection: ", 1)[-1]
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


@cli.command()
@settings_options(["state_dir", "config", "host", "port", "tls"])
@click.option("--timeout", type=click.FloatRange(0.1, 60), default=5.0, show_default=True,
              help="Seconds to wait for the connection and for the answer.")
@click.pass_context
def health(ctx: click.Context, timeout: float, **values: Any) -> None:
    """Exit 0 if the server of these settings answers GET /_fakests/health with {"status": "ok"}, else 1.

    For container healthchecks (docker HEALTHCHECK, compose healthcheck): settings come from the
    FAKESTS_* environment like 'serve', and the answer is verified against the state directory's CA.
    """
    import requests

    try:
        settings = resolve_settings(given_flags(ctx, values))[0]
    except ConfigError as exc:
        click.echo(f"fakests is unhealthy: {exc}", err=True)
        ctx.exit(1)
    url, ca = _health_url(settings), settings.state_dir / "tls" / "ca.pem"
    if settings.port == 0:
        click.echo("fakests is unhealthy: port 0 is not a port to ask; give the one the server bound (--port)",
                   err=True)
        ctx.exit(1)
    if settings.tls and not ca.is_file():
        click.echo(f"fakests is unhealthy: no CA at {ca} (has 'fakests serve' started on this state dir?)", err=True)
        ctx.exit(1)
    http = requests.Session()
    http.trust_env = False  # no proxies, no *_CA_BUNDLE: exactly this server, verified with its own CA
    try:
        with http:
            answer = http.get(url, verify=str(ca) if settings.tls else True, timeout=(timeout, timeout),
                              allow_redirects=False)
            body = answer.json() if answer.status_code == 200 else None
    except requests.exceptions.SSLError as exc:
        # The usual cause: a server answers there, but it was started on another state directory.
        click.echo(f"fakests is unhealthy: {url}: its certificate is not from the CA in {ca} (is it a server "
                   f"started with another --state-dir or FAKESTS_STATE_DIR?): {_root_cause(exc)}", err=True)
        ctx.exit(1)
    except (requests.RequestException, ValueError) as exc:
        click.echo(f"fakests is unhealthy: {url}: {_root_cause(exc)}", err=True)
        ctx.exit(1)
    if not isinstance(body, dict) or body.get("status") != "ok":
        click.echo(f"fakests is unhealthy: {url}: HTTP {answer.status_code} {answer.text[:200]!r}", err=True)
        ctx.exit(1)
    click.echo(f"fakests is healthy: {url}")


def main(argv: list[str] | None = None) -> int:
    """Run the ``fakests`` command line; returns the exit status."""
    try:
        rv = cli.main(args=argv, prog_name="fakests", standalone_mode=False)
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except click.Abort:  # Ctrl+C before the server took over the signals
        click.echo("", err=True)
        return 130
    return rv if isinstance(rv, int) else 0
