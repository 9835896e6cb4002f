"""The HTML fakests shows a person: sign-in, account picker, consent, device code, errors.

Pages work without JavaScript and use Entra's field names (``login``, ``passwd``, ``otc``) so
that a real browser, Playwright, or a plain HTTP test driver can all complete them
(entra-wire.md §11). Every value is escaped here; callers pass plain strings.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from html import escape

_STYLE = """
body{font-family:"Segoe UI",Helvetica,Arial,sans-serif;background:#f2f2f2;margin:0}
.box{background:#fff;max-width:440px;margin:60px auto;padding:44px;box-shadow:0 2px 6px rgba(0,0,0,.2)}
h1{font-size:24px;font-weight:600;margin:0 0 16px}
.banner{font-size:12px;color:#a80000;margin-bottom:18px}
form+form{margin-top:32px}
input,button{font-family:inherit}
input[type=text],input[type=password],input[type=email]{width:100%;padding:6px 0;font-size:15px;
border:0;border-bottom:1px solid #666;margin-bottom:16px}
input:focus{outline:none;border-bottom-color:#0067b8}
button,input[type=submit]{background:#0067b8;color:#fff;border:0;padding:6px 20px;font-size:15px;
cursor:pointer}
button.secondary{background:#ccc;color:#000}
.tile{display:block;width:100%;text-align:left;background:#fff;color:#1b1b1b;border:0;
border-bottom:1px solid #ddd;padding:12px 0}
.tile:hover,.tile:focus{background:#f2f2f2}
.tile small{display:block;color:#666}
.error{color:#e81123;margin-bottom:12px}
.details{font-size:13px;color:#333;margin-top:24px;border-top:1px solid #ddd;padding-top:12px}
.details div{margin:4px 0;overflow-wrap:anywhere}
"""

BANNER = "fakests — a test double of Microsoft Entra ID. Its tokens must never be trusted in production."


def _page(title: str, body: str) -> str:
    return (
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<title>{escape(title)}</title><style>{_STYLE}</style></head><body><div class=\"box\">"
        f"<div class=\"banner\">{escape(BANNER)}</div>{body}</div></body></html>"
    )


def _hidden(fields: Mapping[str, str]) -> str:
    return "".join(
        f'<input type="hidden" name="{escape(k)}" value="{escape(v)}"/>' for k, v in fields.items()
    )


def form_post(action: str, fields: Mapping[str, str]) -> str:
    """Entra's ``response_mode=form_post`` page: a form that submits itself to the client."""
    return (
        "<html><head><title>Working...</title></head><body>"
        f'<form method="POST" name="hiddenform" action="{escape(action)}">{_hidden(fields)}'
        '<noscript><p>Script is disabled. Click Submit to continue.</p>'
        '<input type="submit" value="Submit"/></noscript></form>'
        "<script>document.forms[0].submit();</script></body></html>"
    )


def sign_in(
    *,
    action: str,
    carry: Mapping[str, str],
    app_name: str,
    accounts: Iterable[tuple[str, str]],
    login_hint: str = "",
    error: str = "",
) -> str:
    """The account picker (one button per account: display name, username) and password form."""
    tiles = "".join(
        f'<button class="tile" type="submit" name="login" value="{escape(user)}">'
        f"{escape(name)}<small>{escape(user)}</small></button>"
        for name, user in accounts
    )
    picker = (
        f'<form method="POST" action="{escape(action)}">{_hidden(carry)}'
        f'<input type="hidden" name="pick" value="1"/><h1>Pick an account</h1>{tiles}</form>'
        if tiles
        else ""
    )
    err = f'<div class="error" role="alert">{escape(error)}</div>' if error else ""
    return _page(
        "Sign in to your account",
        f"{picker}<form method=\"POST\" action=\"{escape(action)}\">{_hidden(carry)}"
        f"<h1>Sign in</h1><p>to continue to {escape(app_name)}</p>{err}"
        f'<input type="email" name="login" placeholder="Email, phone, or Skype" '
        f'value="{escape(login_hint)}" aria-label="Username"/>'
        '<input type="password" name="passwd" placeholder="Password" aria-label="Password"/>'
        '<button type="submit" id="idSIButton9">Sign in</button></form>',
    )


def consent(*, action: str, carry: Mapping[str, str], app_name: str, username: str, scopes: Iterable[str]) -> str:
    """'Permissions requested': Accept posts ``consent=accept``, Cancel posts ``consent=cancel``."""
    items = "".join(f"<li>{escape(s)}</li>" for s in scopes)
    return _page(
        "Permissions requested",
        f"<h1>Permissions requested</h1><p>{escape(username)}</p>"
        f"<p><b>{escape(app_name)}</b> needs permission to:</p><ul>{items}</ul>"
        f'<form method="POST" action="{escape(action)}">{_hidden(carry)}'
        '<button type="submit" name="consent" value="accept" id="idBtn_Accept">Accept</button> '
        '<button class="secondary" type="submit" name="consent" value="cancel" id="idBtn_Back">'
        "Cancel</button></form>",
    )


def device_code(*, action: str, error: str = "", user_code: str = "") -> str:
    """'Enter code': the page behind ``verification_uri``."""
    err = f'<div class="error" role="alert">{escape(error)}</div>' if error else ""
    return _page(
        "Enter code",
        f"<h1>Enter code</h1>{err}<p>Enter the code displayed on your app or device.</p>"
        f'<form method="POST" action="{escape(action)}">'
        f'<input type="text" name="otc" placeholder="Code" value="{escape(user_code)}" aria-label="Code"/>'
        '<button type="submit" id="idSIButton9">Next</button></form>',
    )


def device_confirm(*, action: str, carry: Mapping[str, str], app_name: str, username: str) -> str:
    """'Are you trying to sign in to {app}?': Continue approves, Cancel declines."""
    return _page(
        "Are you trying to sign in?",
        f"<h1>Are you trying to sign in to {escape(app_name)}?</h1>"
        f"<p>Signed in as {escape(username)}. Only continue if you downloaded the app from a store "
        "or website that you trust.</p>"
        f'<form method="POST" action="{escape(action)}">{_hidden(carry)}'
        '<button type="submit" name="decision" value="approve" id="idSIButton9">Continue</button> '
        '<button class="secondary" type="submit" name="decision" value="decline" id="idBtn_Back">'
        "Cancel</button></form>",
    )


def message(title: str, text: str) -> str:
    """A plain page: 'You have signed in', 'You signed out of your account'."""
    return _page(title, f"<h1>{escape(title)}</h1><p>{escape(text)}</p>")


def error_page(*, message: str, request_id: str, correlation_id: str, timestamp: str) -> str:
    """Entra's 'Sorry, but we're having trouble signing you in.' page with its troubleshooting block."""
    return _page(
        "Sign in",
        "<h1>Sorry, but we're having trouble signing you in.</h1>"
        f'<div id="error-message" class="error">{escape(message)}</div>'
        '<div class="details" id="troubleshooting"><b>Troubleshooting details</b>'
        f'<div>Request Id: <span id="request-id">{escape(request_id)}</span></div>'
        f'<div>Correlation Id: <span id="correlation-id">{escape(correlation_id)}</span></div>'
        f'<div>Timestamp: <span id="timestamp">{escape(timestamp)}</span></div>'
        f"<div>Message: {escape(message)}</div></div>",
    )
