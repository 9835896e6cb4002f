"""``requests`` sessions that reach a fakests over TLS: trust exactly its CA, and carry MSAL Python's
port-less user-realm lookup to the right port. Client-side only, so the server never imports requests."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit, urlunsplit

import requests
from requests.adapters import HTTPAdapter


def trusting_session(ca_path: str, url: str) -> requests.Session:
    """See ``FakeSTS.session``; also used for an already running instance (``FAKESTS_URL``)."""
    session = requests.Session()
    session.trust_env = False
    session.verify = ca_path
    # MSAL Python builds the ROPC user-realm URL from the authority's host without its port
    # (msal/authority.py user_realm_discovery). Route exactly that path back to our port; every
    # other URL is untouched.
    parts = urlsplit(url)
    if parts.port not in (None, 443):
        session.mount(f"https://{parts.hostname}/common/userrealm/", _PortRestoring(parts.port or 443))
    return session


class _PortRestoring(HTTPAdapter):
    def __init__(self, port: int) -> None:
        super().__init__(max_retries=0)
        self._port = port

    def send(self, request: requests.PreparedRequest, *args: Any, **kwargs: Any) -> requests.Response:
        parts = urlsplit(request.url or "")
        request.url = urlunsplit(parts._replace(netloc=f"{parts.hostname}:{self._port}"))
        return super().send(request, *args, **kwargs)
