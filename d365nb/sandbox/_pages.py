"""The sandbox's HTML pages: sign-in, device login, form_post hand-back, errors.

Plain server-rendered forms (no JavaScript needed except the form_post auto-submit, which
has a button fallback), so a test can play the browser with an HTTP client.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from html import escape

from ._directory import App, User

__all__ = [
    "device_code_page",
    "device_confirm_page",
    "device_done_page",
    "error_page",
    "form_post_page",
    "home_page",
    "sign_in_page",
    "signed_out_page",
]

_STYLE = """
body{font-family:Segoe UI,Helvetica,Arial,sans-serif;background:#f2f2f2;margin:0}
main{max-width:440px;margin:60px auto;background:#fff;padding:32px 40px;
box-shadow:0 2px 6px rgba(0,0,0,.2)}
h1{font-size:22px;font-weight:600;margin:0 0 16px}
.brand{color:#737373;font-size:13px;margin-bottom:12px}
label.user{display:block;padding:8px;border:1px solid #ddd;margin:6px 0;cursor:pointer}
input[type=text]{font-size:18px;padding:6px;width:100%;box-sizing:border-box;
letter-spacing:2px}
button{font-size:15px;padding:6px 18px;margin:16px 8px 0 0}
button.primary{background:#0067b8;color:#fff;border:0}
.error{color:#a80000}
.note{color:#555;font-size:13px}
code{background:#f4f4f4;padding:1px 4px}
"""


def _page(title: str, body: str) -> str:
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        f"<title>{escape(title)}</title><style>{_STYLE}</style></head><body><main>"
        "<div class='brand'>d365nb sandbox &middot; Microsoft Entra ID stand-in</div>"
        f"{body}</main></body></html>"
    )


_NO_ROLE = (
    " <span class='note no-role'>(no security role: signs in and WhoAmI works, but reads and "
    "writes get 403 Forbidden)</span>"
)


def _user_choices(users: Iterable[User], selected: str | None) -> str:
    rows = []
    for i, user in enumerate(users):
        checked = (
            " checked"
            if (selected and selected.lower() == user.upn.lower()) or (not selected and i == 0)
            else ""
        )
        rows.append(
            f"<label class='user'><input type='radio' name='user' value='{escape(user.upn)}'"
            f"{checked}> {escape(user.name)} <span class='note'>{escape(user.upn)}</span>"
            f"{_NO_ROLE if not user.has_role else ''}</label>"
        )
    return "".join(rows)


def sign_in_page(
    *,
    action: str,
    request_id: str,
    app: App,
    resource: str,
    users: Iterable[User],
    login_hint: str | None,
) -> str:
    """The authorize page: pick a seeded user, then accept or cancel."""
    body = (
        "<h1>Sign in</h1>"
        f"<p><b>{escape(app.name)}</b> wants to access <code>{escape(resource)}</code> "
        "on your behalf. Pick an account:</p>"
        f"<form method='post' action='{escape(action)}'>"
        f"<input type='hidden' name='request_id' value='{escape(request_id)}'>"
        f"{_user_choices(users, login_hint)}"
        "<button class='primary' type='submit' name='action' value='accept'>Accept</button>"
        "<button type='submit' name='action' value='cancel'>Cancel</button>"
        "</form>"
        "<p class='note'>No password: this is a sandbox. Each account is a seeded user.</p>"
    )
    return _page("Sign in to your account", body)


def form_post_page(redirect_uri: str, fields: Mapping[str, str]) -> str:
    """The page that POSTs the authorization response to the app (response_mode=form_post)."""
    inputs = "".join(
        f"<input type='hidden' name='{escape(k)}' value='{escape(v)}'>" for k, v in fields.items()
    )
    return (
        "<!DOCTYPE html>\n<html><head><title>Working...</title></head><body>"
        f"<form method='POST' name='hiddenform' action='{escape(redirect_uri)}'>{inputs}"
        "<noscript><p>Script is disabled. Click Submit to continue.</p>"
        "<input type='submit' value='Submit'></noscript></form>"
        "<script>document.forms[0].submit();</script></body></html>"
    )


def error_page(code: int, message: str, *, title: str = "Sorry, but we're having trouble") -> str:
    """An error shown in the browser (errors that must not be redirected to the app)."""
    body = (
        f"<h1>{escape(title)}</h1>"
        f"<p class='error' id='aadsts'>AADSTS{code}: {escape(message)}</p>"
        "<p class='note'>This page comes from the d365nb sandbox.</p>"
    )
    return _page("Sign in error", body)


def device_code_page(*, action: str, error: str | None = None, code: str = "") -> str:
    """Where a person types the code a device showed them."""
    err = f"<p class='error'>{escape(error)}</p>" if error else ""
    body = (
        "<h1>Enter code</h1>"
        "<p>Enter the code displayed on your app or device.</p>"
        f"{err}<form method='post' action='{escape(action)}'>"
        f"<input type='text' name='otc' value='{escape(code)}' autocomplete='off' "
        "placeholder='Code' autofocus>"
        "<button class='primary' type='submit'>Next</button></form>"
    )
    return _page("Enter code", body)


def device_confirm_page(
    *, action: str, user_code: str, app: App, resource: str, users: Iterable[User]
) -> str:
    """Pick a user and approve or decline the device's sign-in."""
    body = (
        "<h1>Are you trying to sign in?</h1>"
        f"<p><b>{escape(app.name)}</b> wants to access <code>{escape(resource)}</code>. "
        "Only continue if you started this sign-in on a device or app you trust.</p>"
        f"<form method='post' action='{escape(action)}'>"
        f"<input type='hidden' name='user_code' value='{escape(user_code)}'>"
        f"{_user_choices(users, None)}"
        "<button class='primary' type='submit' name='action' value='approve'>Continue</button>"
        "<button type='submit' name='action' value='decline'>Cancel</button></form>"
    )
    return _page("Device sign-in", body)


def device_done_page(*, approved: bool, app: App, user: User | None) -> str:
    """The end of the device login."""
    if approved and user is not None:
        body = (
            f"<h1>You're signed in</h1><p id='result'>{escape(user.name)} signed in to "
            f"<b>{escape(app.name)}</b>. You may now close this window.</p>"
        )
    else:
        body = (
            "<h1>Sign-in declined</h1><p id='result'>The sign-in was declined. "
            "You may now close this window.</p>"
        )
    return _page("Device sign-in", body)


def home_page(info: Mapping[str, str]) -> str:
    """The sandbox's front page: what to paste where."""
    rows = "".join(
        f"<tr><td>{escape(k)}</td><td><code>{escape(v)}</code></td></tr>" for k, v in info.items()
    )
    body = (
        "<h1>d365nb sandbox</h1>"
        "<p>A local stand-in for Microsoft Entra ID and the Dataverse Web API.</p>"
        f"<p><a href='{escape(info.get('device_login_url', '/devicelogin'))}'>"
        "Enter a device code</a></p>"
        f"<table>{rows}</table>"
    )
    return _page("d365nb sandbox", body)


def signed_out_page() -> str:
    """After sign-out (the sandbox keeps no browser session to end)."""
    return _page(
        "Signed out", "<h1>You signed out of your account</h1><p>You may close this window.</p>"
    )
