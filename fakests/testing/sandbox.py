"""``StsSandbox``: one sandbox seen from a test, with ready-made real clients.

It hands out what a test needs to point unmodified clients at fakests: the authority, the CA,
``requests`` sessions (in-process or over TLS; both reach the same app, so issuers and tokens are
identical), ready ``msal`` applications and the keyword arguments azure-identity credentials need.
It also reads the sandbox's journal, moves its clock and changes its directory.

The helpers always pass ``instance_discovery=False`` / ``disable_instance_discovery=True`` (or MSAL
would ask the real login.microsoftonline.com, entra-wire.md §7.2) and trust exactly fakests' CA,
whatever ``REQUESTS_CA_BUNDLE`` says (§7.12).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit

import requests

from ..failures import scenarios
from ..failures.scripting import ArmedRule, arm, armed, build_rule
from ..state import defaults, kubernetes
from ..state.directory import WORKLOAD_AUDIENCE, App, Certificate, ManagedIdentity, Tenant, User
from ..state.journal import Journal
from ..state.sandbox import Sandbox, Sandboxes
from ..state.settings import PUBLIC_CLOUD_HOSTS
from . import driver
from .sessions import trusting_session
from .transport import ASGIAdapter
from .virtual_time import VirtualTime

if TYPE_CHECKING:
    import msal
    from starlette.types import ASGIApp

    from .intercept import Interception

Role = Literal["daemon", "web", "api", "public", "spa"]
_ROLES: dict[str, tuple[str, str | None]] = {
    "daemon": (defaults.DAEMON_ID, defaults.DAEMON_SECRET),
    "web": (defaults.WEB_ID, defaults.WEB_SECRET),
    "api": (defaults.API_ID, defaults.API_SECRET),
    "public": (defaults.PUBLIC_ID, None),
    "spa": (defaults.SPA_ID, None),
}


# What azure-identity's EnvironmentCredential reads (a secret, a certificate, a password): set, they make it,
# not workload identity, the credential DefaultAzureCredential picks.
_ENVIRONMENT_CREDENTIAL = ("AZURE_CLIENT_SECRET", "AZURE_CLIENT_CERTIFICATE_PATH", "AZURE_CLIENT_CERTIFICATE_PASSWORD",
                           "AZURE_USERNAME", "AZURE_PASSWORD")


@contextmanager
def _environment(wanted: dict[str, str], clear: tuple[str, ...] = ()) -> Iterator[None]:
    """``os.environ`` with ``wanted`` set and ``clear`` removed for the block, then as it was."""
    names = (*wanted, *clear)
    saved = {name: os.environ.get(name) for name in names}
    for name in clear:
        os.environ.pop(name, None)
    os.environ.update(wanted)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


class MissingClientLibrary(ModuleNotFoundError):
    """A helper needs a client library that is not installed: the message names the extra to install."""


def _client_library(module: str, helper: str) -> Any:
    """Import a real client for a helper; fakests itself never needs one, so it is an extra."""
    import importlib

    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name is None or not module.startswith(exc.name):
            raise  # the library is there but one of its own imports failed: that is its error to report
        raise MissingClientLibrary(
            f"fake_sts.{helper}() needs {module.split('.')[0]!r}, which is not installed: "
            f"pip install 'fakests[clients]' (or install MSAL Python / azure-identity yourself)",
            name=exc.name) from None


class FakeStsWarning(UserWarning):
    """A test that may not test what it says: its requests went to the default sandbox, or a rule it
    armed never matched. ``filterwarnings = error::fakests.FakeStsWarning`` turns these into errors."""


@dataclass(frozen=True)
class AppInfo:
    """An app of the sandbox's default directory, by role: its client id and secret."""

    client_id: str
    secret: str | None
    display_name: str


class StsSandbox:
    """A sandbox on a running fakests (``FakeSTS``), as a test uses it."""

    _intercepting: tuple[str, ...] | None = None  # the hosts ``intercept`` answers, while it does

    def __init__(self, sandbox: Sandbox, sandboxes: Sandboxes, *, url: str, ca_path: str | None, app: ASGIApp,
                 client_cert_path: str, identity_url: Callable[[], str] | None = None,
                 identity_app: Callable[[], ASGIApp] | None = None, server_cert_path: str | None = None) -> None:
        self._identity_url = identity_url
        self._server_cert_path = server_cert_path
        self._identity_app = identity_app
        self.sandbox = sandbox
        self._sandboxes = sandboxes
        self.url = url.rstrip("/")
        self.ca_path = ca_path
        self._app = app
        self.client_cert_path = client_cert_path

    # --- identity ----------------------------------------------------------------------------------
    @property
    def sandbox_id(self) -> str:
        return self.sandbox.sandbox_id

    def _id(self, template_id: str) -> str:
        return self.sandbox.id_map.get(template_id, template_id)

    @property
    def tenant_id(self) -> str:
        """The sandbox's own tenant (the default directory's Contoso, under a fresh GUID)."""
        return self._id(defaults.TENANT_ID)

    @property
    def other_tenant_id(self) -> str:
        return self._id(defaults.OTHER_TENANT_ID)

    def app(self, role: Role) -> AppInfo:
        client_id, secret = _ROLES[role]
        cid = self._id(client_id)
        return AppInfo(cid, secret, self.sandbox.directory.apps[cid].display_name)

    @property
    def daemon(self) -> AppInfo:
        return self.app("daemon")

    @property
    def web(self) -> AppInfo:
        return self.app("web")

    @property
    def api(self) -> AppInfo:
        return self.app("api")

    @property
    def public(self) -> AppInfo:
        return self.app("public")

    @property
    def spa(self) -> AppInfo:
        """The single-page app: ``spa`` redirect URIs on localhost, no secret (PKCE, CORS)."""
        return self.app("spa")

    password = defaults.PASSWORD

    def authority(self, tenant: str | None = None) -> str:
        """``https://localhost:{port}/{tenant}``; default: the sandbox's tenant GUID."""
        return f"{self.url}/{tenant or self.tenant_id}"

    @property
    def client_certificate(self) -> dict[str, str]:
        """MSAL's ``client_credential`` for the default client certificate (SHA-1 thumbprint form)."""
        with open(self.client_cert_path) as handle:
            pem = handle.read()
        cert = Certificate(pem[pem.index("-----BEGIN CERTIFICATE-----"):])
        return {"private_key": pem, "thumbprint": hashlib.sha1(cert.der).hexdigest()}

    # --- transports --------------------------------------------------------------------------------
    def http_client(self, *, inprocess: bool = True) -> requests.Session:
        """A new ``requests.Session`` for this fakests: in-process (no socket) or over TLS."""
        if not inprocess:
            assert self.ca_path is not None, "this fakests has no TLS; use inprocess=True"
            return trusting_session(self.ca_path, self.url)
        session = requests.Session()
        session.trust_env = False
        adapter = ASGIAdapter(self._app)
        session.mount(self.url + "/", adapter)
        host = urlsplit(self.url).hostname
        session.mount(f"https://{host}/common/userrealm/", adapter)  # MSAL drops the port here (§7.9)
        return session

    def msal_confidential(self, role: Role = "daemon", *, certificate: bool = False, authority: str | None = None,
                          inprocess: bool = True, **kwargs: Any) -> msal.ConfidentialClientApplication:
        """A fresh ``msal.ConfidentialClientApplication`` (fresh: MSAL caches errors per app)."""
        msal = _client_library("msal", "msal_confidential")

        info = self.app(role)
        credential: Any = self.client_certificate if certificate else info.secret
        return msal.ConfidentialClientApplication(
            info.client_id, client_credential=credential, authority=authority or self.authority(),
            http_client=kwargs.pop("http_client", None) or self.http_client(inprocess=inprocess),
            instance_discovery=False, **kwargs)

    def msal_public(self, role: Role = "public", *, authority: str | None = None, inprocess: bool = True,
                    **kwargs: Any) -> msal.PublicClientApplication:
        """A fresh ``msal.PublicClientApplication`` for this sandbox's public app."""
        msal = _client_library("msal", "msal_public")

        return msal.PublicClientApplication(
            self.app(role).client_id, authority=authority or self.authority(),
            http_client=kwargs.pop("http_client", None) or self.http_client(inprocess=inprocess),
            instance_discovery=False, **kwargs)

    def azure_kwargs(self, *, inprocess: bool = True, **transport_kw: Any) -> dict[str, Any]:
        """Keyword arguments for any azure-identity credential: ``authority``, instance discovery
        off, and a transport that reaches this fakests (in-process, or TLS trusting its CA)."""
        RequestsTransport = _client_library("azure.core.pipeline.transport", "azure_kwargs").RequestsTransport

        session = self.http_client(inprocess=inprocess)
        if not inprocess:
            # azure-core passes its own ``verify`` with every request, overriding the session's.
            transport_kw.setdefault("connection_verify", self.ca_path)
        return {"authority": self.url, "disable_instance_discovery": True,
                "transport": RequestsTransport(session=session, session_owner=False, **transport_kw)}

    # --- people at the sign-in pages ----------------------------------------------------------------
    def sign_in(self, auth_uri: str, redirect_uri: str, username: str = "alice@contoso.com",
                password: str | None = None, *, consent: bool = True, inprocess: bool = True,
                session: requests.Session | None = None) -> dict[str, str]:
        """Complete the sign-in pages at ``auth_uri`` over plain HTTP; returns the auth response."""
        return driver.sign_in(session or self.http_client(inprocess=inprocess), auth_uri, redirect_uri,
                              username=username, password=password or self.password, consent=consent)

    def approve_device_code(self, flow: dict[str, Any], username: str = "alice@contoso.com",
                            password: str | None = None, *, approve: bool = True, inprocess: bool = True) -> str:
        """Enter the device flow's code and sign in, as the user would on another device."""
        return driver.approve_device_code(self.http_client(inprocess=inprocess), flow["verification_uri"],
                                          flow["user_code"], username=username,
                                          password=password or self.password, approve=approve)

    # --- scripted failures ---------------------------------------------------------------------------
    def fail(self, endpoint: str | list[str] = "token", **kwargs: Any) -> ArmedRule:
        """Arm one failure rule, in one line. Keywords are the rule fields of scenario files, sorted by
        name into match / response / schedule (``headers`` are response headers; match request headers
        with ``request_headers``), e.g.::

            fake_sts.fail("token", aadsts=70012, times=2, account_type="msa")
            fake_sts.fail("token", status=503, aadsts=90033, retry_after=1, times=3)
            fake_sts.fail("token", fault="reset", times=1)
            fake_sts.fail("discovery", status=502, body="<html>Bad Gateway</html>", content_type="text/html")
        """
        return arm(self.sandbox.engine, build_rule(endpoint, kwargs), "fake_sts.fail")

    def delay(self, endpoint: str | list[str] = "token", seconds: float = 1.0, **kwargs: Any) -> ArmedRule:
        """A slow STS: matching requests wait ``seconds`` (or ``(min, max)`` with jitter), then succeed."""
        value: Any = {"min": seconds[0], "max": seconds[1]} if isinstance(seconds, tuple) else seconds
        return arm(self.sandbox.engine, build_rule(endpoint, {**kwargs, "delay": value}), "fake_sts.delay")

    def throttle(self, endpoint: str | list[str] = "token", *, limit: int, per: float, **kwargs: Any) -> ArmedRule:
        """Allow ``limit`` requests per ``per`` seconds per client, then 429 with ``Retry-After``."""
        rule = build_rule(endpoint, {**kwargs, "limit": limit, "per": per}, throttle=True)
        return arm(self.sandbox.engine, rule, "fake_sts.throttle")

    @contextmanager
    def outage(self, endpoint: str | list[str] = "any", *, seconds: float | None = None,
               **kwargs: Any) -> Iterator[ArmedRule]:
        """Everything matching fails while the block runs (only for ``seconds`` on the sandbox clock,
        if given). Default answer: 503 ``temporarily_unavailable`` (AADSTS90033)."""
        if not {"aadsts", "status", "fault"} & set(kwargs):
            kwargs["aadsts"] = 90033
        if seconds is not None:
            kwargs["window"] = {"start": 0, "duration": seconds}
        with armed(self.sandbox.engine, build_rule(endpoint, kwargs), "fake_sts.outage") as rule:
            yield rule

    def use_scenario(self, name_or_path: str | Path) -> list[ArmedRule]:
        """Load a scenario file: a path, or a name from ``scenario_dir`` or fakests' own library."""
        path = scenarios.find(str(name_or_path), [self.sandbox.settings.scenario_dir])
        engine = self.sandbox.engine
        return [ArmedRule(engine, state) for state in engine.load(scenarios.load_file(path))]

    def clear_scenarios(self) -> None:
        self.sandbox.engine.clear()

    @property
    def scenarios(self) -> list[dict[str, Any]]:
        """Loaded rules with their counters (``matched``, ``fired``)."""
        return self.sandbox.engine.summary()

    # --- state ---------------------------------------------------------------------------------------
    @property
    def journal(self) -> Journal:
        return self.sandbox.journal

    @property
    def default_journal(self) -> Journal:
        """The default sandbox's journal, where requests that name neither a tenant nor a client
        land: MSAL's user-realm lookup (``/common/userrealm/{user}``) and instance discovery.
        Match them to this sandbox's requests by correlation id."""
        return self._sandboxes.default.journal

    def configure(self, **settings: Any) -> None:
        """Change this sandbox's settings (token lifetimes, ``device_code_interval``...): any field of
        ``Settings``. MSAL treats an access token with under 300 s left as expired, so
        ``configure(access_token_lifetime=300)`` makes every ``acquire_token_silent`` refresh."""
        self.sandbox.settings = dataclasses.replace(self.sandbox.settings, **settings)

    def advance(self, seconds: float) -> None:
        """Move the sandbox clock forward (expire tokens, codes and device codes without sleeping)."""
        self.sandbox.advance(seconds)

    @property
    def auto_sign_in(self) -> bool:
        return self.sandbox.auto_sign_in

    @auto_sign_in.setter
    def auto_sign_in(self, value: bool) -> None:
        self.sandbox.auto_sign_in = value

    def user(self, username: str) -> User:
        user = self.sandbox.directory.user(username)
        if user is None:
            raise KeyError(username)
        return user

    def add_user(self, username: str, *, password: str | None = None, tenant_id: str | None = None,
                 display_name: str | None = None, **fields: Any) -> User:
        user = User(username, display_name or username.split("@")[0].title(), password or self.password,
                    tenant_id or self.tenant_id, **fields)
        return self.sandbox.directory.add_user(user)

    def add_app(self, app: App) -> App:
        added = self.sandbox.directory.add_app(app)
        self._sandboxes.reindex(self.sandbox)
        return added

    def add_tenant(self, tenant_id: str, *domains: str, display_name: str = "") -> Tenant:
        """A tenant of this sandbox under a fixed id (an app's production tenant GUID and domains), for
        ``intercept``; its tokens carry ``tid`` ``tenant_id``."""
        tenant = self.sandbox.directory.add_tenant(Tenant(tenant_id.lower(), display_name or tenant_id,
                                                          [d.lower() for d in domains]))
        self._sandboxes.reindex(self.sandbox)
        return tenant

    @contextmanager
    def intercept(self, hosts: tuple[str, ...] | None = None) -> Iterator[Interception]:
        """Answer every ``requests``, ``httpx`` and ``aiohttp`` call to Entra's hosts
        (``login.microsoftonline.com``, ``login.windows.net``, ``login.microsoft.com``, or ``hosts``) from this
        sandbox, in this process, while the block runs: the app keeps its production authority and needs no
        CA. Add its fixed ids first (``add_tenant``, ``add_app``). Calls to IMDS's own address
        (``http://169.254.169.254``) are answered by this sandbox's managed-identity endpoints too, so
        ``ManagedIdentityCredential`` works with no variable set. ``testing/intercept.py`` says how."""
        from .intercept import IMDS_HOST, intercept

        outer = self._intercepting
        with contextlib.ExitStack() as stack:
            active = stack.enter_context(intercept(self._app, self.sandbox_id,
                                                   *(() if hosts is None else (tuple(hosts),))))
            if self._identity_app is not None:
                stack.enter_context(intercept(self._identity_app(), self.sandbox_id, (IMDS_HOST,), scheme="http"))
            self._intercepting = tuple(hosts) if hosts else PUBLIC_CLOUD_HOSTS
            try:
                yield active
            finally:
                self._intercepting = outer

    # --- managed identity and virtual time ------------------------------------------------------------
    @property
    def system_identity(self) -> ManagedIdentity:
        """The system-assigned identity of the VM this sandbox's managed-identity endpoints run on."""
        identity = self.sandbox.directory.identity()
        assert identity is not None, "this sandbox's directory has no system-assigned identity where it runs"
        return identity

    @property
    def user_identity(self) -> ManagedIdentity:
        """The default directory's user-assigned identity (``fakests-identity``), under this sandbox's ids."""
        return self.sandbox.directory.identities[self._id(defaults.USER_IDENTITY_CLIENT_ID)]

    def add_identity(self, identity: ManagedIdentity, *, hosted_on: bool = False) -> ManagedIdentity:
        """Register a managed identity; ``hosted_on``: the endpoints now run on its resource (system-assigned)."""
        added = self.sandbox.directory.add_identity(identity)
        if hosted_on:
            self.sandbox.directory.hosted_on = identity.resource_id
        return added

    def _identity_base(self) -> str:
        """This sandbox's managed-identity base URL: the server's origin plus its tenant segment."""
        if self._identity_url is None:
            raise RuntimeError("this fakests serves no managed-identity endpoints")
        return f"{self._identity_url()}/{self.tenant_id}"

    def identity_url(self, source: str = "imds") -> str:
        """This sandbox's managed-identity base URL (plain HTTP; IMDS appends its path to it), or ``source``'s
        endpoint (``service_fabric``'s is on the STS's TLS origin, ``url``)."""
        from ..sts.identity import IDENTITY_PATHS, TLS_IDENTITY_PATHS

        if source in TLS_IDENTITY_PATHS:
            return f"{self.url}/{self.tenant_id}{TLS_IDENTITY_PATHS[source]}"
        base = self._identity_base()
        return base if source == "imds" else base + IDENTITY_PATHS[source]

    def identity_environment(self, source: str = "imds") -> dict[str, str]:
        """The variables that point unmodified clients at ``source`` for this sandbox (``managed_identity``
        sets them)."""
        from ..state.tls import thumbprint
        from ..sts.identity import TLS_IDENTITY_PATHS, identity_environment

        if source in TLS_IDENTITY_PATHS:
            if self._server_cert_path is None:
                raise RuntimeError(f"{source} is served over TLS, and this fakests has TLS off")
            return identity_environment(source, "", self.tenant_id, tls_base_url=f"{self.url}/{self.tenant_id}",
                                        server_thumbprint=thumbprint(Path(self._server_cert_path)))
        return identity_environment(source, self._identity_base(), self.tenant_id)

    @contextmanager
    def managed_identity(self, source: str = "imds", *, client_id: str | None = None) -> Iterator[dict[str, str]]:
        """Run the block as code on Azure compute of kind ``source`` (``imds``, ``app_service``, ``azure_ml``,
        ``cloud_shell``, ``arc``, ``service_fabric``) whose identity endpoint is this sandbox's: sets the
        variables clients read (and
        clears the other sources'), restores them after. ``client_id`` also sets ``AZURE_CLIENT_ID``, which
        ``DefaultAzureCredential`` takes as the user-assigned identity to use. Yields the variables set."""
        from ..sts.identity import SOURCE_VARIABLES

        wanted = self.identity_environment(source)
        if client_id is not None:
            wanted["AZURE_CLIENT_ID"] = client_id
        with _environment(wanted, clear=SOURCE_VARIABLES):
            yield wanted

    # --- workload identity (Kubernetes) ---------------------------------------------------------------
    def kubernetes_issuer(self, cluster: str = kubernetes.DEFAULT_CLUSTER) -> str:
        """The fake cluster's OIDC issuer, served by this fakests (``{url}/kubernetes/{cluster}``): what the
        default daemon app's federated credential trusts, with discovery and JWKS under it."""
        return kubernetes.issuer_url(self.url, cluster)

    def service_account_token(self, namespace: str = defaults.WORKLOAD_NAMESPACE,
                              service_account: str = defaults.WORKLOAD_SERVICE_ACCOUNT, *,
                              audience: str = WORKLOAD_AUDIENCE, lifetime: float = kubernetes.TOKEN_LIFETIME,
                              cluster: str = kubernetes.DEFAULT_CLUSTER, issuer: str | None = None) -> str:
        """A projected service-account token as the kubelet writes it into a pod (``iss`` the fake cluster's
        issuer, ``sub`` ``system:serviceaccount:NS:SA``, ``aud`` ``[audience]``, the ``kubernetes.io`` claim),
        issued now on the sandbox clock: ``advance`` past ``lifetime`` expires it."""
        return self._sandboxes.clusters.token(issuer or self.kubernetes_issuer(cluster), namespace=namespace,
                                              service_account=service_account, audiences=[audience],
                                              now=self.sandbox.now(), lifetime=lifetime)

    @contextmanager
    def workload_identity(self, client_id: str | None = None, *, namespace: str = defaults.WORKLOAD_NAMESPACE,
                          service_account: str = defaults.WORKLOAD_SERVICE_ACCOUNT,
                          audience: str = WORKLOAD_AUDIENCE, lifetime: float = kubernetes.TOKEN_LIFETIME,
                          authority_host: str | None = None, token: str | None = None) -> Iterator[dict[str, str]]:
        """Run the block as a pod with Azure workload identity: writes the service account's token to a file
        (or ``token``, as given) and sets what the AKS webhook sets, ``AZURE_TENANT_ID``, ``AZURE_CLIENT_ID``
        (default: the daemon app, which trusts ``default/workload``), ``AZURE_FEDERATED_TOKEN_FILE`` and
        ``AZURE_AUTHORITY_HOST`` (default: inside ``intercept``, the first host it answers, so the app keeps
        Entra's production host; otherwise this fakests' origin). Clears the variables that would make
        ``EnvironmentCredential`` win inside ``DefaultAzureCredential``; restores everything after. The file is
        written once (no kubelet refreshes it): ``advance`` the sandbox clock past ``lifetime`` to expire it.
        Yields the variables set."""
        folder = Path(tempfile.mkdtemp(prefix="fakests-workload-"))
        path = folder / "azure-identity-token"  # AKS mounts it at /var/run/secrets/azure/tokens/azure-identity-token
        path.write_text(token if token is not None else self.service_account_token(
            namespace, service_account, audience=audience, lifetime=lifetime), encoding="utf-8")
        wanted = {"AZURE_TENANT_ID": self.tenant_id, "AZURE_CLIENT_ID": client_id or self.daemon.client_id,
                  "AZURE_FEDERATED_TOKEN_FILE": str(path),
                  "AZURE_AUTHORITY_HOST": authority_host or (f"https://{self._intercepting[0]}" if self._intercepting
                                                             else self.url)}
        try:
            with _environment(wanted, clear=_ENVIRONMENT_CREDENTIAL):
                yield wanted
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    def virtual_time(self, start: float | None = None) -> VirtualTime:
        """``with fake_sts.virtual_time() as clock:`` the whole test process on one virtual clock that only
        sleeps move: a 75-second retry sequence runs in milliseconds, and the journal's times (the sandbox
        clock) read in virtual seconds. ``testing/virtual_time.py`` says what it covers."""
        return VirtualTime(start)

    @property
    def internal_errors(self) -> list[str]:
        return self.sandbox.internal_errors

    @property
    def journal_lost(self) -> int:
        """Requests of this sandbox that were answered but could not be journaled (a full disk, an
        unreachable store): non-zero means the journal this test reads is incomplete."""
        return self.sandbox.journal_lost

    def drop(self) -> None:
        self._sandboxes.drop(self.sandbox.sandbox_id)
