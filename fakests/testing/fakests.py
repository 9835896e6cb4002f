"""``FakeSTS``: fakests over real TLS on 127.0.0.1, in a background thread.

uvicorn's Config/Server split makes this small: ``Server.run`` in a thread (uvicorn skips signal
handlers off the main thread), port 0, read the bound port back (``server.uvicorn.Server`` makes the
stop take milliseconds).
"""

from __future__ import annotations

import threading
from types import TracebackType
from typing import TYPE_CHECKING, Any

import uvicorn

from ..failures.faults import protocol_class
from ..server.app import create_app, identity_config
from ..server.runtime import Runtime
from ..server.uvicorn import Server, run_in_thread, stop_thread
from ..state.settings import Settings

if TYPE_CHECKING:
    import requests
    from starlette.types import ASGIApp

    from .sandbox import StsSandbox


class FakeSTS:
    """A running fakests server: ``with FakeSTS() as sts: sts.authority(tenant)``.

    ``settings`` defaults to 127.0.0.1, a free port, TLS on; ``runtime`` shares keys and
    sandboxes with an in-process app (the pytest plugin does that).
    """

    def __init__(self, settings: Settings | None = None, *, runtime: Runtime | None = None, **uvicorn_kw: Any) -> None:
        self.settings = settings or Settings(port=0)
        self.runtime = runtime or Runtime.start(self.settings)
        self.app = create_app(runtime=self.runtime)
        self._uvicorn_kw = uvicorn_kw
        self._server: Server | None = None
        self._thread: threading.Thread | None = None
        self.port: int = 0
        self._identity: tuple[Server, threading.Thread, str] | None = None
        self._identity_lock = threading.Lock()
        self._identity_app: ASGIApp | None = None
        # The admin API's remote sandboxes (FAKESTS_URL) ask where the endpoints are: started then, as here.
        self.runtime.identity_listener = self._identity_port

    # --- lifecycle ---------------------------------------------------------------------------------
    def start(self) -> FakeSTS:
        tls = self.runtime.tls
        config = uvicorn.Config(
            self.app, host=self.settings.host, port=self.settings.port, log_level="warning",
            access_log=False, lifespan="off", http=protocol_class(),
            ssl_certfile=str(tls.cert) if tls else None, ssl_keyfile=str(tls.key) if tls else None,
            **self._uvicorn_kw,
        )
        self._server, self._thread = run_in_thread(config, "fakests-server")
        self.port = self._server.servers[0].sockets[0].getsockname()[1]
        return self

    def stop(self) -> None:
        if self._server is not None and self._thread is not None:
            stop_thread(self._server, self._thread)
        if self._identity is not None:
            stop_thread(*self._identity[:2])
        self._server = None
        self._identity = None

    @property
    def identity_app(self) -> ASGIApp:
        """The managed-identity app (``server.app.create_identity_app``) for in-process calls (interception
        of IMDS's address), made on first use."""
        with self._identity_lock:
            if self._identity_app is None:
                from ..server.app import create_identity_app

                self._identity_app = create_identity_app(self.runtime, self.url)
            return self._identity_app

    @property
    def identity_url(self) -> str:
        """``http://127.0.0.1:{port}``: the managed-identity endpoints (``sts/identity.py``), plain HTTP as
        Azure's are, started on first use on a free port."""
        app = self.identity_app
        with self._identity_lock:
            if self._identity is None:
                server, thread = run_in_thread(identity_config(app, "127.0.0.1", 0), "fakests-identity")
                port = server.servers[0].sockets[0].getsockname()[1]
                self._identity = (server, thread, f"http://127.0.0.1:{port}")
            return self._identity[2]

    def _identity_port(self) -> int:
        return int(self.identity_url.rsplit(":", 1)[1])

    def __enter__(self) -> FakeSTS:
        return self.start()

    def __exit__(self, *exc: tuple[type[BaseException] | None, BaseException | None, TracebackType | None]) -> None:
        self.stop()

    # --- what clients need -------------------------------------------------------------------------
    @property
    def url(self) -> str:
        """``https://localhost:{port}``: the origin clients use (``localhost`` is in the certificate)."""
        host = "localhost" if self.settings.host in ("127.0.0.1", "0.0.0.0", "::1", "::") else self.settings.host
        return f"{'https' if self.runtime.tls else 'http'}://{host}:{self.port}"

    @property
    def ca_path(self) -> str:
        """The CA certificate (PEM) that clients must trust."""
        assert self.runtime.tls is not None, "TLS is off"
        return str(self.runtime.tls.ca)

    def authority(self, tenant: str | None = None) -> str:
        from ..state.defaults import TENANT_ID

        return f"{self.url}/{tenant or TENANT_ID}"

    def sandbox(self, *, auto_sign_in: bool = False) -> StsSandbox:
        """A new isolated sandbox on this server (a fresh-id copy of the directory)."""
        from .sandbox import StsSandbox

        sb = self.runtime.sandboxes.create()
        sb.auto_sign_in = auto_sign_in
        return StsSandbox(sb, self.runtime.sandboxes, url=self.url, ca_path=self.ca_path if self.runtime.tls else None,
                          app=self.app, client_cert_path=str(self.runtime.client_cert_path),
                          identity_url=lambda: self.identity_url, identity_app=lambda: self.identity_app,
                          server_cert_path=str(self.runtime.tls.cert) if self.runtime.tls else None)

    def session(self) -> requests.Session:
        """A ``requests.Session`` that trusts exactly fakests' CA, whatever ``REQUESTS_CA_BUNDLE``
        says (entra-wire.md §7.12), and that carries MSAL Python's port-less user-realm lookup
        (``https://localhost/common/userrealm/...``, §7.9) to this server's port."""
        from .sessions import trusting_session  # requests is for clients: keep it off the server's start path

        return trusting_session(self.ca_path, self.url)
