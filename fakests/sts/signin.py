"""The browser endpoints: authorize (sign-in, account picker, consent, SSO), device login, logout.

Authorize follows entra-wire.md §1.7: errors that cannot go back to the client (unknown tenant
or client, missing client_id, redirect URI not registered) are Entra's HTML error page; every other
error is delivered to the redirect URI in the requested ``response_mode`` with ``state``. A
successful sign-in sets an SSO session cookie per sandbox, so ``prompt=none`` and later authorize
requests sign in silently, as Entra's ESTSAUTH cookie does.

Every step works with plain HTML forms (no JavaScript): the sign-in form posts ``login``/``passwd``
back to the authorize URL with the original parameters as hidden fields, so a browser, Playwright
or a plain HTTP client can finish the flow. With ``auto_sign_in`` (a sandbox setting), a
``login_hint`` naming a known user signs that user in without a page.
"""

from __future__ import annotations

import re
import secrets
from urllib.parse import urlencode, urlparse

from starlette.responses import HTMLResponse, RedirectResponse, Response

from ..state.directory import App, User
from ..state.sandbox import IssuedCode, Sandbox, Sandboxes
from . import pages
from .clientauth import find_app
from .context import StsRequest
from .errors import NO_FRAMING, NO_STORE, StsError, deliver, render_redirect
from .grants import check_user
from .tokens import OIDC_SCOPES, Scopes, client_info, own_claims, parse_scopes

_SESSION_COOKIE = re.compile(r"fakests-session-[A-Za-z0-9_-]+")
STEP_FIELDS = frozenset({"login", "passwd", "pick", "consent", "decision", "fakests_sid", "otc"})
RESPONSE_MODES = ("query", "fragment", "form_post")


def _cookie(sb: Sandbox) -> str:
    return f"fakests-session-{sb.sandbox_id}"


def _html(body: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(body, status_code=status, headers={**NO_STORE, **NO_FRAMING})


def registered_redirect(app: App, redirect_uri: str) -> str | None:
    """The registered URI (of any platform) that ``redirect_uri`` matches: exactly, or, for loopback
    http URIs, on any port (as Entra allows for native apps, MSAL's ``http://localhost:{port}``
    listener and a dev server's port). None when it matches none."""
    registered = app.all_redirect_uris()
    if redirect_uri in registered:
        return redirect_uri
    try:
        got = urlparse(redirect_uri)
    except ValueError:  # not a URL at all (e.g. "http://[::1"), so not a registered one
        return None
    for uri in registered:
        want = urlparse(uri)
        if (want.scheme == got.scheme == "http" and want.hostname in ("localhost", "127.0.0.1")
                and got.hostname == want.hostname and (want.path or "/") == (got.path or "/")):
            return uri
    return None


def redirect_allowed(app: App, redirect_uri: str) -> bool:
    """Whether ``redirect_uri`` is registered for ``app`` (``registered_redirect``)."""
    return registered_redirect(app, redirect_uri) is not None


def _session_user(ctx: StsRequest, sb: Sandbox) -> tuple[User | None, str | None]:
    sid = ctx.form.get("fakests_sid") or ctx.request.cookies.get(_cookie(sb))
    oid = sb.session_user(sid)
    return (sb.directory.user_by_oid(oid), sid) if oid else (None, None)


def _start_session(sb: Sandbox, user: User) -> str:
    return sb.start_session(user.oid)


def sign_in_step(ctx: StsRequest, sb: Sandbox, app: App, *, action: str, carry: dict[str, str],
                 force: bool) -> tuple[User, str] | Response:
    """Who is signing in: a posted password form, a picked account, the SSO session, or an
    ``auto_sign_in`` login hint; otherwise the sign-in page. Returns (user, session id)."""
    login, passwd = ctx.form.get("login"), ctx.form.get("passwd")
    accounts = [(u.display_name, u.username) for u in sb.directory.users.values()
                if not u.disabled and not u.locked]
    page_args = {"action": action, "carry": carry, "app_name": app.display_name, "accounts": accounts}
    if ctx.request.method == "POST" and login is not None:
        user = sb.directory.user(login)
        if passwd is None and user is not None and sb.auto_sign_in:
            return user, _start_session(sb, user)
        if passwd is None:
            return _html(pages.sign_in(**page_args, login_hint=login))
        if user is None:
            return _html(pages.sign_in(**page_args, login_hint=login, error="This username may be incorrect. "
                                       "Make sure you typed it correctly."))
        if user.password != passwd:
            return _html(pages.sign_in(**page_args, login_hint=login, error="Your account or password is "
                                       "incorrect. (AADSTS50126)"))
        if user.password_expired:
            raise StsError(50055)
        return user, _start_session(sb, user)
    user, sid = _session_user(ctx, sb)
    if user is not None and sid is not None and (not force or ctx.form.get("fakests_sid")):
        return user, sid
    hint = ctx.get("login_hint")
    hinted = sb.directory.user(hint) if hint else None
    if hinted is not None and sb.auto_sign_in:
        return hinted, _start_session(sb, hinted)
    return _html(pages.sign_in(**page_args, login_hint=hint or ""))


def _with_session(response: Response, sb: Sandbox, sid: str | None, secure: bool) -> Response:
    """Set the SSO session cookie. Over TLS it is ``SameSite=None; Secure``, as Entra's ESTSAUTH is: a
    single-page app renews tokens with ``prompt=none`` in a hidden iframe, a third-party context where
    a browser sends only SameSite=None cookies (and SameSite=None requires Secure). Over plain http a
    browser refuses SameSite=None without Secure, so the cookie stays Lax there (no silent iframe)."""
    if sid:
        response.set_cookie(_cookie(sb), sid, httponly=True, secure=secure, samesite="none" if secure else "lax",
                            path="/")
    return response


def _opener_policy(ctx: StsRequest, response: Response) -> Response:
    """Entra's interactive pages send ``Cross-Origin-Opener-Policy``, which cuts a popup off from the app
    that opened it; msal-browser 5 therefore hears back through its redirect bridge (the redirect URI
    page posts over a BroadcastChannel), and asks Entra to omit the header with ``pocd=1`` ("popup
    origin check done") when no untrusted window can reach the popup (msal-browser
    ``utils/PopupOriginCheck.ts``)."""
    if isinstance(response, HTMLResponse) and ctx.get("pocd") != "1":
        response.headers["Cross-Origin-Opener-Policy"] = "same-origin"
    return response


def _needs_consent(sb: Sandbox, app: App, user: User, scopes: Scopes) -> list[str]:
    if scopes.resource is None:
        return []
    consented = sb.directory.consented(user, app.client_id, scopes.resource.client_id)
    wanted = [p for p in scopes.permissions if p != ".default"] + sorted(scopes.oidc - {"offline_access"})
    return [p for p in wanted if p not in consented and p not in OIDC_SCOPES]


async def authorize(ctx: StsRequest) -> Response:
    """``GET|POST /{tenant}/oauth2/v2.0/authorize``."""
    sb = ctx.sandbox
    if ctx.tenant is None and ctx.segment.lower() not in ("common", "organizations", "consumers"):
        raise StsError(90002, tenant=ctx.segment)
    app = find_app(ctx, ctx.require("client_id"))
    redirect_uri = ctx.require("redirect_uri")
    if not redirect_allowed(app, redirect_uri):
        raise StsError(50011, redirect_uri=redirect_uri, client_id=app.client_id)
    mode = ctx.get("response_mode") or "query"
    state = ctx.get("state")
    try:
        if mode not in RESPONSE_MODES:
            mode = "query"
            raise StsError(90100, parameter="response_mode")
        return _opener_policy(ctx, await _authorize(ctx, sb, app, redirect_uri, mode, state))
    except StsError as exc:
        ctx.notes.update(aadsts=exc.code, error=exc.error)
        return render_redirect(exc, ctx.ids, ctx.now, ctx.origin, redirect_uri=redirect_uri, state=state,
                               response_mode=mode)


async def _authorize(ctx: StsRequest, sb: Sandbox, app: App, redirect_uri: str, mode: str,
                     state: str | None) -> Response:
    response_type = ctx.require("response_type")
    if "code" not in response_type.split():
        raise StsError(700054, error="unsupported_response_type", response_type=response_type)
    scopes = parse_scopes(sb.directory, ctx.require("scope"))
    challenge, method = ctx.get("code_challenge"), ctx.get("code_challenge_method") or "plain"
    if challenge is not None and method not in ("S256", "plain"):
        raise StsError(90100, parameter="code_challenge_method")
    prompt = ctx.get("prompt") or ""
    carry = {k: v for k, v in ctx.params.items() if k not in STEP_FIELDS}
    action = ctx.url(ctx.request.url.path)

    if prompt in ("none", "no_session"):
        # Silent renewal (msal-browser's hidden iframe): the session cookie, and the account the app
        # names by ``sid`` (the id token's) or ``login_hint`` must be the session's; else login_required.
        user, sid = _session_user(ctx, sb)
        hint, wanted_sid = ctx.get("login_hint"), ctx.get("sid")
        if (user is None or (hint and hint.lower() != user.username.lower())
                or (wanted_sid and wanted_sid != sid)):
            raise StsError(50058)
    else:
        step = sign_in_step(ctx, sb, app, action=action, carry=carry, force=prompt in ("login", "select_account"))
        if isinstance(step, Response):
            return step
        user, sid = step
    tid = check_user(ctx, app, user)
    secure = ctx.origin.startswith("https")

    missing = _needs_consent(sb, app, user, scopes)
    decision = ctx.form.get("consent")
    if decision == "cancel":
        raise StsError(65004, error="access_denied", error_subcode="cancel")
    if decision == "accept":
        assert scopes.resource is not None
        key = (user.oid, app.client_id, scopes.resource.client_id)
        with sb.lock:
            sb.directory.user_consents.setdefault(key, set()).update(scopes.permissions)
        sb.persist()  # the consent is the directory's: other workers must see it
    elif missing or prompt == "consent":
        if prompt in ("none", "no_session"):
            raise StsError(65001, error="consent_required", client_id=app.client_id, app_name=app.display_name)
        page = pages.consent(action=action, carry={**carry, "fakests_sid": sid or ""}, app_name=app.display_name,
                             username=user.username, scopes=missing or list(scopes.raw))
        return _with_session(_html(page), sb, sid, secure)

    code = "1.AXoA" + secrets.token_urlsafe(64)
    sb.put_code(code, IssuedCode(
        client_id=app.client_id, user_oid=user.oid, tenant_id=tid, redirect_uri=redirect_uri,
        scopes=list(scopes.raw), nonce=ctx.get("nonce"), code_challenge=challenge,
        code_challenge_method=method if challenge else None,
        expires_at=ctx.now + sb.settings.code_lifetime, auth_time=ctx.now, session_id=sid,
        spa=app.is_spa_redirect(registered_redirect(app, redirect_uri) or "")))
    params = {"code": code}
    if ctx.get("client_info") == "1":
        params["client_info"] = client_info(user)
    if state is not None:
        params["state"] = state
    params["session_state"] = sid or ""
    return _with_session(deliver(redirect_uri, params, mode, ctx.ids), sb, sid, secure)


def find_device_grant(sandboxes: Sandboxes, user_code: str) -> tuple[Sandbox, str] | None:
    return sandboxes.find_device(user_code)


async def device_login(ctx: StsRequest) -> Response:
    """``/common/oauth2/deviceauth``: enter the code, sign in, confirm (Continue / Cancel).
    One POST with ``otc``, ``login``, ``passwd`` and ``decision=approve`` also does it all."""
    action = ctx.url(ctx.request.url.path)
    otc = ctx.form.get("otc") or ctx.query.get("otc")
    if not otc:
        return _html(pages.device_code(action=action))
    found = find_device_grant(ctx.request.app.state.sandboxes, otc)
    if found is None:
        return _html(pages.device_code(action=action, user_code=otc, error="That code didn't work. Check the code "
                                       "and try again."), 400)
    sb, device_code = found
    ctx.sandbox = sb
    grant = sb.get_device(device_code)
    if grant is None:  # dropped with its sandbox in between
        return _html(pages.device_code(action=action, user_code=otc, error="That code didn't work. Check the code "
                                       "and try again."), 400)
    if grant.expires_at <= sb.now():
        return _html(pages.device_code(action=action, error="That code has expired. (AADSTS70019)"), 400)
    app = sb.directory.apps[grant.client_id]
    carry = {"otc": otc}
    step = sign_in_step(ctx, sb, app, action=action, carry=carry, force=False)
    if isinstance(step, Response):
        return step
    user, sid = step
    secure = ctx.origin.startswith("https")
    decision = ctx.form.get("decision")
    if decision == "approve":
        sb.update_device(device_code, lambda g: setattr(g, "user_oid", user.oid))
        page = pages.message("You have signed in", f"You have signed in to {app.display_name} on your device. "
                             "You may now close this window.")
        return _with_session(_html(page), sb, sid, secure)
    if decision == "decline":
        sb.update_device(device_code, lambda g: setattr(g, "declined", True))
        return _html(pages.message("Sign-in cancelled", "You can close this window."))
    page = pages.device_confirm(action=action, carry={**carry, "fakests_sid": sid}, app_name=app.display_name,
                                username=user.username)
    return _with_session(_html(page), sb, sid, secure)


def _logout_target(ctx: StsRequest) -> str | None:
    """``post_logout_redirect_uri`` when it is registered for the app that ``client_id`` or the
    ``id_token_hint``'s ``aud`` names; otherwise no redirect (Entra shows its signed-out page), so
    logout is not an open redirect."""
    target = ctx.get("post_logout_redirect_uri")
    if not target:
        return None
    client_id = ctx.get("client_id")
    hint = ctx.get("id_token_hint")
    if client_id is None and hint:
        # Only a hint fakests signed may name the app: an unsigned one would let any page pick the app
        # whose registered URI the browser is sent to.
        claims = own_claims(ctx.sandbox, hint)
        client_id = str(claims.get("aud") or "") if claims is not None else None
    if client_id is None and not hint:
        # msal-browser's logoutRedirect sends neither client_id nor id_token_hint (only
        # post_logout_redirect_uri, and logout_hint when the id token has a login_hint claim); Entra finds
        # the app from its session and returns to the URI registered for it. fakests' sessions do not
        # record the app, so a URI registered for any app of the sandbox is trusted: still no open redirect.
        # An id_token_hint that fakests did not sign names no app, and redirects nowhere (below).
        apps = list(ctx.sandbox.directory.apps.values())
        return target if any(redirect_allowed(app, target) for app in apps) else None
    app = ctx.sandbox.directory.apps.get(client_id or "")
    return target if app is not None and redirect_allowed(app, target) else None


async def logout(ctx: StsRequest) -> Response:
    """``GET|POST /{tenant}/oauth2/v2.0/logout``: ends every fakests SSO session the browser holds."""
    sandboxes: Sandboxes = ctx.request.app.state.sandboxes
    target = _logout_target(ctx)
    if target:
        state = ctx.get("state")
        sep = "&" if "?" in target else "?"
        # Encoded: a raw state could add parameters or a fragment to the app's URI.
        response: Response = RedirectResponse(target + (f"{sep}{urlencode({'state': state})}" if state else ""),
                                              status_code=302)
    else:
        response = _html(pages.message("You signed out of your account",
                                       "It's a good idea to close all browser windows."))
    for name, sid in ctx.request.cookies.items():
        if _SESSION_COOKIE.fullmatch(name):  # ours (a browser may send any name, not all can be set back)
            sb = sandboxes.get(name.removeprefix("fakests-session-"))
            if sb is not None:
                sb.end_session(sid)
            secure = ctx.origin.startswith("https")  # with the attributes it was set with (``_with_session``)
            response.delete_cookie(name, path="/", secure=secure, samesite="none" if secure else "lax")
    return response

