"""Errors as the setup panel shows them: one sentence with the fix, and the field to correct.

`describe_error` turns anything a sign-in or a test can raise into a `Problem`: the message
and hint of a `D365Error` (scrubbed of secrets), the field an AADSTS code points at, and
plain words for the Web API's "not a user of this environment" and missing-role answers.
`FieldStatus` is one field's live mark (tick, problem or nothing).

Finance and operations apps (F&O) authorise differently: besides the Entra app
registration, F&O itself must map the app's client id to an F&O user, in
*System administration > Setup > Microsoft Entra ID applications*
(reference/finance-operations-protocol.md §2).  `FNO_APP_REGISTRATION` says so for the
panel, and F&O's 401/403 answers name that form and F&O's own user and role pages.

The settings layer words its messages for Python (`service_url`, `pass client_secret=`);
`form_words` rewords them for a form: the fields' labels, "enter", sign-in methods by name.
"""

from __future__ import annotations

import re
import traceback
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from .._exceptions import AuthError, ConfigError, D365Error, ODataError, TransportError
from .._fields import redact

__all__ = [
    "FIELD_LABELS",
    "FNO_APP_REGISTRATION",
    "FieldStatus",
    "Problem",
    "describe_error",
    "form_words",
]

#: Each field's name in the panel (and in every message the panel shows).
FIELD_LABELS: Final[dict[str, str]] = {
    "service_url": "Service URL",
    "tenant": "Tenant",
    "client_id": "Client ID",
    "client_secret": "Client Secret",
    "auth_uri": "Auth URI",
    "token_uri": "Token URI",
    "scope": "Scope",
    "redirect_uri": "Redirect URI",
    "access_token": "Access token",
    "refresh_token": "Refresh token",
    "api_version": "API version",
}
#: The F&O side of an app registration, as the panel explains it for an F&O Service URL
#: (title, then one line per item; reference §2).
FNO_APP_REGISTRATION: Final[tuple[str, tuple[str, ...]]] = (
    "Finance and operations apps need the app in two places:",
    (
        "In Microsoft Entra ID (App registrations > your app > API permissions): add "
        "Microsoft Dynamics ERP (search for the full name) with Odata.FullAccess "
        '("Access Dynamics AX data"); F&O has no user_impersonation, its scope is '
        "<environment>/.default.",
        "In F&O: System administration > Setup > Microsoft Entra ID applications > New: "
        "Client ID = the Application (client) ID above, a Name, and the User ID of the F&O "
        "user the app acts as (a dedicated service user, not Admin). Calls signed in as the "
        "app run with that user's security roles and default company; an app not in this "
        "form is refused with HTTP 401.",
        "Signing in as yourself instead needs an F&O user for your account (System "
        "administration > Users) with security roles.",
    ),
)
# Grants as the panel's sign-in methods: "for the X grant", "the X grant needs ...".
_GRANT_WORDS: Final[dict[str, str]] = {
    "device_code": "device code sign-in",
    "auth_code": "browser sign-in",
    "client_credentials": "signing in as the app (client secret)",
    "access_token": "signing in with an access token",
    "refresh_token": "signing in with a refresh token",
}
_METHOD_NAMES: Final[dict[str, str]] = {
    "device_code": "Device code",
    "auth_code": "Browser",
    "client_credentials": "Client secret",
    "access_token": "Existing token",
    "refresh_token": "Existing token",
}
# "Set D365NB_X in the environment (or pass x=...)": what a script does; a form is typed in.
_SET_OR_PASS = re.compile(
    r"Set D365NB_(?P<env>\w+)(?: in the environment)? \(or pass \w+=[^;,)\s]*\)?[;,]?"
    r"(?P<more> or)?\s*"
)
_IDENTIFIER = re.compile(r"\b(?:" + "|".join(n for n in FIELD_LABELS if "_" in n) + r")\b")


@dataclass(frozen=True)
class FieldStatus:
    """How one field looks right now: `ok` is True (tick), False (problem) or None (empty)."""

    ok: bool | None
    message: str = ""


@dataclass(frozen=True)
class Problem:
    """An error as the panel shows it: one sentence with the fix, and the detail for the log.

    `field` names the setting to correct (the panel jumps to its step) when there is one.
    """

    message: str
    hint: str = ""
    detail: str = ""
    field: str | None = None

    @property
    def sentence(self) -> str:
        """`message` and `hint` as one line."""
        return f"{self.message} {self.hint}".strip()


_NOT_A_MEMBER = "0x80072560"
# AADSTS codes -> the field to correct (the panel jumps to its step).
_AADSTS_FIELDS: Final[dict[str, str]] = {
    "AADSTS7000215": "client_secret",
    "AADSTS7000222": "client_secret",
    "AADSTS7000218": "client_secret",
    "AADSTS700016": "client_id",
    "AADSTS90002": "tenant",
    "AADSTS50059": "tenant",
    "AADSTS50011": "redirect_uri",
    "AADSTS500113": "redirect_uri",
    "AADSTS70011": "scope",
    "AADSTS901002": "token_uri",
    "AADSTS500011": "service_url",
    "AADSTS53003": "grant",
}


def describe_error(
    exc: BaseException,
    *,
    secrets: Iterable[str | None] = (),
    grant: str | None = None,
    service: str | None = None,
) -> Problem:
    """An exception as one sentence with its fix, plus a scrubbed detail for the log.

    **Parameters:**

    * **exc** - what was raised.
    * **secrets** - values that must not appear in the result (passed to `redact`).
    * **grant** - the grant in use, to tell "no application user" from "no role".
    * **service** - `"fno"` for finance and operations (its own user and role pages).
    """
    hidden = [s for s in secrets if s]
    detail = redact("".join(traceback.format_exception(type(exc), exc, exc.__traceback__)), hidden)
    field_name: str | None = None
    if isinstance(exc, ConfigError):
        message, hint, field_name = exc.message, exc.hint or "", exc.field
    elif isinstance(exc, AuthError):
        message, hint = exc.message, exc.hint or ""
        field_name = _AADSTS_FIELDS.get(exc.code or "")
        extra = [f"code {exc.code}" if exc.code else "", f"error {exc.error}" if exc.error else ""]
        if exc.correlation_id:
            extra.append(f"correlation id {exc.correlation_id}")
        detail = f"{type(exc).__name__} ({', '.join(x for x in extra if x)})\n{detail}"
    elif isinstance(exc, ODataError):
        if service == "fno":
            message, hint = _fno_sentence(exc, grant)
        else:
            message, hint = _odata_sentence(exc, grant)
        detail = (
            f"HTTP {exc.status} {exc.code or ''} {exc.service_message}"
            + (f" (request id {exc.request_id})" if exc.request_id else "")
            + f"\n{detail}"
        )
    elif isinstance(exc, TransportError):
        message, hint = exc.message, exc.hint or ""
        if "CERTIFICATE_VERIFY_FAILED" in detail or "certificate verify failed" in detail:
            message = "The service's TLS certificate is not trusted."
            hint = (
                "For the local sandbox use its preset (it trusts the sandbox's CA); behind a "
                "corporate proxy pass verify='path/to/ca.pem' to d365nb.setup()."
            )
    elif isinstance(exc, D365Error):
        message, hint = exc.message, exc.hint or ""
    else:
        message = f"Unexpected {type(exc).__name__}: {_first_line(str(exc))}"
        hint = "The details below say where it happened; please report it if it persists."
    return Problem(
        message=redact(message, hidden),
        hint=redact(hint, hidden),
        detail=detail,
        field=field_name,
    )


def _odata_sentence(exc: ODataError, grant: str | None) -> tuple[str, str]:
    app = grant == "client_credentials"
    if exc.code == _NOT_A_MEMBER or (exc.status == 401 and app):
        who = "This app" if app else "Your user"
        fix = (
            "add an application user for this app's Client ID in the Power Platform admin "
            "center (Environment > Settings > Users + permissions > Application users) and "
            "give it a security role."
            if app
            else "ask an admin to add your user to this environment (Power Platform admin "
            "center > Environment > Settings > Users) with a security role."
        )
        return f"{who} is signed in but is not a user of this environment (HTTP {exc.status}).", (
            fix[0].upper() + fix[1:]
        )
    if exc.status == 401:
        return (
            "The service refused the token (HTTP 401).",
            "Check that the Service URL is the environment you signed in for (the token's "
            "audience), then sign in again.",
        )
    if exc.status == 403:
        who = "The application user" if app else "Your user"
        return (
            f"{who} lacks a security role for this (HTTP 403).",
            "Ask an admin to assign a security role (e.g. Basic User) in the Power Platform "
            "admin center > Environment > Settings > Users + permissions.",
        )
    return exc.message, exc.hint or ""


def _fno_sentence(exc: ODataError, grant: str | None) -> tuple[str, str]:
    """F&O's refusals: an unmapped app or user is 401 (reference §2), a missing role 403."""
    app = grant == "client_credentials"
    if exc.status == 401 and app:
        return (
            "This app is signed in but finance and operations does not know it (HTTP 401).",
            "In F&O open System administration > Setup > Microsoft Entra ID applications and "
            "add a row: Client ID = this app's Client ID, a Name, and the User ID of the F&O "
            "user it acts as (its security roles and default company apply).",
        )
    if exc.status == 401:
        return (
            "You are signed in but are not a user of this finance and operations "
            "environment, or the token is for another one (HTTP 401).",
            "Ask an admin to add your account in F&O (System administration > Users > Import "
            "users) with security roles, and check that the Service URL is the environment "
            "you signed in for.",
        )
    if exc.status == 403:
        who = "The F&O user mapped to this app" if app else "Your F&O user"
        return (
            f"{who} lacks a security role for this (HTTP 403).",
            "Ask an admin to assign roles in F&O: System administration > Users > the user "
            "> Assign roles.",
        )
    return exc.message, exc.hint or ""


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else ""


def form_words(text: str) -> str:
    """A settings message reworded for the panel: labels for field names, no Python.

    `"client_id is required for the device_code grant."` becomes
    `"Client ID is required for device code sign-in."`.
    """
    if not text:
        return text

    def set_or_pass(match: re.Match[str]) -> str:
        label = FIELD_LABELS.get(match["env"].lower(), match["env"].lower())
        return f"Enter the {label}, or " if match["more"] else f"Enter the {label}; "

    text = _SET_OR_PASS.sub(set_or_pass, text)
    text = re.sub(
        r"\bfor the (\w+) grant\b",
        lambda m: f"for {_GRANT_WORDS.get(m[1], m[1])}",
        text,
    )
    text = re.sub(
        r"\b([Tt])he (\w+) grant\b",
        lambda m: _capital(_GRANT_WORDS.get(m[2], m[2]), m[1] == "T"),
        text,
    )
    text = re.sub(
        r"\bchoose grant (\w+)", lambda m: f"choose {_METHOD_NAMES.get(m[1], m[1])}", text
    )
    text = text.replace("choose another grant", "choose another sign-in method")
    text = re.sub(r"^(tenant|scope) ", lambda m: f"{FIELD_LABELS[m[1]]} ", text)
    text = text.replace("Remove tenant,", "Clear the Tenant field,")
    text = text.replace("Set tenant to", "Set the Tenant to")

    def identifier(match: re.Match[str]) -> str:
        label = FIELD_LABELS[match[0]]
        head = match.string[: match.start()].rstrip(" (")
        if not head or head.endswith((".", ":")) or head.lower().endswith((" the", " a")):
            return label  # a sentence starts with it, or it has its article already
        return f"the {label}"

    return _IDENTIFIER.sub(identifier, text)


def _capital(text: str, upper: bool) -> str:
    return text[0].upper() + text[1:] if upper and text else text
