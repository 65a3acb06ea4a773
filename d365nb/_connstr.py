"""The vendor driver's connection strings, both ways: `Key=Value;` text <-> field values.

`parse_connection_string` reads what a JDBC/ODBC driver's guide writes (DataDirect's key
names, CData's, or d365nb's field names) into field name -> value, exactly as written;
`format_connection_string` writes field values back with the vendor guide's key names.
Neither checks the values: that is `Analysis`'s job.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from typing import Final

from ._exceptions import ConfigError
from ._fields import SECRET_FIELDS

__all__ = ["format_connection_string", "parse_connection_string"]

# Connection-string keys, normalised by `_norm_key` (case, spaces, `_` and `-` ignored), mapped
# to fields.  DataDirect's names first (the vendor guide), then CData's, then field names.
_KEY_SPELLINGS: Final[dict[str, tuple[str, ...]]] = {
    "service_url": ("ServiceURL", "OrganizationURL", "EnvironmentURL"),
    "auth_uri": ("AuthURI", "OAuthAuthorizationURL", "AuthorizationURL"),
    "token_uri": ("TokenURI", "OAuthAccessTokenURL", "TokenURL"),
    "client_id": ("ClientID", "OAuthClientId"),
    "client_secret": ("ClientSecret", "OAuthClientSecret"),
    "scope": ("Scope", "Scopes"),
    "access_token": ("AccessToken", "OAuthAccessToken"),
    "refresh_token": ("RefreshToken", "OAuthRefreshToken"),
    "tenant": ("TenantID", "Tenant", "AzureTenant"),
    "redirect_uri": ("RedirectURI", "RedirectURL", "CallbackURL"),
    "grant": ("Grant", "GrantType", "OAuthGrantType"),
    "api_version": ("APIVersion",),
    "ca_cert": ("CACert", "CAFile", "CABundle"),
}
# Accepted for compatibility with the vendor driver; only OAuth 2.0 is supported.
_AUTH_METHOD_KEY = "authenticationmethod"
_AUTH_METHODS_OK = frozenset({"oauth2", "24"})
# How `format_connection_string` spells each field: the vendor guide's names.
_KEY_OUT: Final = {name: spellings[0] for name, spellings in _KEY_SPELLINGS.items()}


def _norm_key(key: str) -> str:
    return re.sub(r"[\s_\-]+", "", key).lower()


_KEY_TO_FIELD: Final[dict[str, str]] = {
    _norm_key(spelling): name
    for name, spellings in _KEY_SPELLINGS.items()
    for spelling in (*spellings, name)
}
_JDBC_PREFIX = re.compile(r"^\s*jdbc:datadirect:dynamics365:", re.I)


def parse_connection_string(text: str) -> dict[str, str]:
    """Read a connection string in the vendor driver's `Key=Value;` form.

    Returns field name → value, exactly as written (quotes removed, no other change).
    Keys are matched without regard to case, spaces, `_` or `-`, and every common spelling
    is accepted (`ServiceURL`/`OrganizationURL`, `ClientID`/`OAuthClientId`,
    `TokenURI`/`OAuthAccessTokenURL`, ...).  A value holding `;` is written in double or
    single quotes (a quote inside is doubled) or in ODBC braces `{...}`.  The JDBC URL
    prefix `jdbc:datadirect:dynamics365:` is skipped.

    **Parameters:**

    * **text** - the connection string.

    Raises `ConfigError` for an unknown key (with the nearest known one), a key given
    twice with different values, unbalanced quotes, or an `AuthenticationMethod` other
    than `OAuth2` (`24` in ODBC).
    """
    text = _JDBC_PREFIX.sub("", text, count=1)
    values: dict[str, str] = {}
    previous_secret: str | None = None
    n = len(text)
    i = 0
    while i < n:
        while i < n and (text[i].isspace() or text[i] == ";"):
            i += 1
        if i >= n:
            break
        start = i
        while i < n and text[i] not in "=;\r\n":
            i += 1
        if i >= n or text[i] in ";\r\n":
            raise _cs_error(
                "connection_string",
                f"a part of the connection string (character {start + 1}) has no '='.",
                "Write every setting as Key=Value and separate them with ';'"
                + _quote_advice(previous_secret),
            )
        key = text[start:i].strip()
        i += 1
        while i < n and text[i].isspace():
            i += 1
        value, i = _read_value(text, i, key)
        name = _KEY_TO_FIELD.get(_norm_key(key))
        if name is None and _norm_key(key) == _AUTH_METHOD_KEY:
            if _norm_key(value) not in _AUTH_METHODS_OK:
                raise _cs_error(
                    "authentication_method",
                    f"AuthenticationMethod={value} is not supported.",
                    "d365nb signs in with OAuth 2.0 only: set AuthenticationMethod=OAuth2 "
                    "(24 in ODBC) or leave it out.",
                )
            previous_secret = None
            continue
        if name is None:
            raise _unknown_key(key, previous_secret)
        if name in values and values[name] != value:
            raise _cs_error(
                name,
                f"the connection string sets {_KEY_OUT[name]} twice, with different values.",
                f"Keep one {_KEY_OUT[name]} (other spellings such as "
                f"{', '.join(_KEY_SPELLINGS[name][1:]) or name} count as the same setting).",
            )
        values[name] = value
        previous_secret = _KEY_OUT[name] if name in SECRET_FIELDS else None
    return values


def _read_value(text: str, i: int, key: str) -> tuple[str, int]:
    """Read one value starting at `i`; return it and the index after its ';'."""
    n = len(text)
    if i < n and text[i] in "\"'{":
        opening = text[i]
        closing = "}" if opening == "{" else opening
        chars: list[str] = []
        i += 1
        while True:
            if i >= n:
                raise _cs_error(
                    _KEY_TO_FIELD.get(_norm_key(key), key),
                    f"the value of {key} opens with {opening} but never closes.",
                    f"End the value with {closing} (write {closing}{closing} for a "
                    f"{closing} inside it).",
                )
            if text[i] == closing:
                if i + 1 < n and text[i + 1] == closing:
                    chars.append(closing)
                    i += 2
                    continue
                i += 1
                break
            chars.append(text[i])
            i += 1
        while i < n and text[i] in " \t":
            i += 1
        if i < n and text[i] not in ";\r\n":
            raise _cs_error(
                _KEY_TO_FIELD.get(_norm_key(key), key),
                f"there is text after the closing {closing} of {key}'s value.",
                f"Put ';' right after the closing {closing}, or quote the whole value.",
            )
        return "".join(chars), i + 1
    # A value ends at ';' or at the end of a line: pasted connection strings often put one
    # Key=Value per line, and a secret on the next line must not become part of a URL.
    ends = [e for e in (text.find(";", i), text.find("\n", i), text.find("\r", i)) if e >= 0]
    end = min(ends) if ends else n
    return text[i:end].strip(), end + 1


def _format_value(value: str) -> str:
    needs_quotes = (
        not value
        or value != value.strip()
        or value[0] in "\"'{"
        or ";" in value
        or any(ch.isspace() and ch != " " for ch in value)
    )
    if not needs_quotes:
        return value
    return '"' + value.replace('"', '""') + '"'


def format_connection_string(values: Mapping[str, str]) -> str:
    """The inverse of `parse_connection_string`: vendor key names, quoted where needed."""
    return "".join(f"{_KEY_OUT[name]}={_format_value(values[name])};" for name in values)


def _quote_advice(previous_secret: str | None) -> str:
    if previous_secret:
        return f"; if the value of {previous_secret} contains ';', put it in double quotes."
    return "; a value that contains ';' goes in double quotes."


def _cs_error(field: str, message: str, hint: str) -> ConfigError:
    return ConfigError(message[0].upper() + message[1:], field=field, hint=hint)


def _unknown_key(key: str, previous_secret: str | None) -> ConfigError:
    if previous_secret:
        # The "key" is probably the tail of a secret that contained ';': never echo it.
        return _cs_error(
            "connection_string",
            f"the text after {previous_secret} is not a known setting.",
            f"If the value of {previous_secret} contains ';', put it in double quotes.",
        )
    # Vendor spellings last, so that they win where a field name normalises the same way.
    spellings = {_norm_key(s): s for name, ss in _KEY_SPELLINGS.items() for s in (name, *ss)}
    close = difflib.get_close_matches(_norm_key(key), list(spellings), n=1, cutoff=0.6)
    hint = (
        f"Did you mean {spellings[close[0]]}?"
        if close
        else "Known settings: " + ", ".join(_KEY_OUT.values()) + "."
    )
    return _cs_error(key, f"unknown setting {key!r} in the connection string.", hint)
