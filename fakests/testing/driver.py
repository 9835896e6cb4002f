"""A plain-HTTP stand-in for a person at a browser: fills fakests' sign-in pages and follows them.

Tests use it to finish an authorization-code flow or approve a device code without a real browser
(a Playwright test proves the same pages in Chromium). It only does what a person can do on the
pages: pick an account, type a password, press Accept or Continue; it reads forms, never fakests'
internals, so it also works against a fakests in a container.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from html.parser import HTMLParser
from urllib.parse import parse_qsl, urljoin, urlsplit

import requests


@dataclass
class Form:
    """One ``<form>``: where it posts, its fields, and its submit buttons (name, value)."""

    action: str
    method: str
    fields: dict[str, str] = field(default_factory=dict)
    buttons: list[tuple[str, str]] = field(default_factory=list)


class _Forms(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.forms: list[Form] = []
        self.title = ""
        self._in_title = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form":
            self.forms.append(Form(a.get("action", ""), a.get("method", "get").upper()))
        elif tag == "title":
            self._in_title = True
        elif self.forms and tag == "input" and a.get("name"):
            if a.get("type") == "submit":
                self.forms[-1].buttons.append((a["name"], a.get("value", "")))
            else:
                self.forms[-1].fields[a["name"]] = a.get("value", "")
        elif self.forms and tag == "button" and a.get("name"):
            self.forms[-1].buttons.append((a["name"], a.get("value", "")))

    def handle_endtag(self, tag: str) -> None:
        if tag == "title":
            self._in_title = False

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title += data


def forms_of(html: str) -> tuple[str, list[Form]]:
    parser = _Forms()
    parser.feed(html)
    return parser.title.strip(), parser.forms


class SignInError(AssertionError):
    """The pages did not lead back to the client; the message says where it stopped."""


def sign_in(session: requests.Session, auth_uri: str, redirect_uri: str, *, username: str | None = None,
            password: str | None = None, consent: bool = True, max_steps: int = 8) -> dict[str, str]:
    """Open ``auth_uri``, sign in as ``username`` and return what arrives at ``redirect_uri``
    (the ``auth_response`` MSAL's ``acquire_token_by_auth_code_flow`` wants): query, fragment or
    form_post fields. Raises ``SignInError`` if fakests shows an error page instead."""
    response = session.get(auth_uri, allow_redirects=False)
    for _ in range(max_steps):
        location = response.headers.get("location", "")
        if response.status_code in (301, 302, 303) and location.startswith(redirect_uri):
            parts = urlsplit(location)
            return dict(parse_qsl(parts.fragment or parts.query, keep_blank_values=True))
        if response.status_code in (301, 302, 303):
            response = session.get(urljoin(response.url, location), allow_redirects=False)
            continue
        title, forms = forms_of(response.text)
        if not forms:
            raise SignInError(f"stopped at {title!r} (HTTP {response.status_code}): {response.text[:600]}")
        form = _choose(forms, username)
        if form.action.startswith(redirect_uri) and ("code" in form.fields or "error" in form.fields):
            return dict(form.fields)  # response_mode=form_post: what the browser would post
        data = dict(form.fields)
        if "passwd" in data:
            data["login"] = username or data.get("login", "")
            data["passwd"] = password or ""
        press = _press(form, consent)
        if press:
            data[press[0]] = press[1]
        response = session.post(urljoin(response.url, form.action), data=data, allow_redirects=False)
    raise SignInError(f"no redirect to {redirect_uri} after {max_steps} pages")


def approve_device_code(session: requests.Session, verification_uri: str, user_code: str, *, username: str,
                        password: str, approve: bool = True, max_steps: int = 6) -> str:
    """Enter ``user_code`` at ``verification_uri``, sign in and press Continue (or Cancel).
    Returns the title of the last page ("You have signed in" on success)."""
    response = session.get(verification_uri, allow_redirects=True)
    for _ in range(max_steps):
        title, forms = forms_of(response.text)
        if not forms:
            if response.status_code >= 400:
                raise SignInError(f"stopped at {title!r} (HTTP {response.status_code}): {response.text[:600]}")
            return title
        form = _choose(forms, username)
        data = dict(form.fields)
        if "otc" in data and not data["otc"]:
            data["otc"] = user_code
        if "passwd" in data:
            data["login"] = username
            data["passwd"] = password
        press = _press(form, approve)
        if press:
            data[press[0]] = press[1]
        response = session.post(urljoin(response.url, form.action), data=data, allow_redirects=True)
    raise SignInError(f"device code approval did not finish after {max_steps} pages")


def _choose(forms: list[Form], username: str | None) -> Form:
    # The sign-in page has an account picker form and a password form: use the password form.
    for f in forms:
        if "passwd" in f.fields:
            return f
    return forms[-1]


def _press(form: Form, yes: bool) -> tuple[str, str] | None:
    for name, value in form.buttons:
        if name in ("consent", "decision") and value in (("accept", "approve") if yes else ("cancel", "decline")):
            return name, value
    return None
