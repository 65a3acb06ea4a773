"""The settings vocabulary: field names, secret fields, grant names, environment variables.

Everything that names a setting lives here, so that settings, profiles, the connection
string codec and the setup panel spell them one way.  `redact` hides secret values in
any text before it is shown.  This module imports nothing of d365nb but its errors.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Mapping
from typing import Final
from urllib.parse import quote, quote_plus

from ._exceptions import ConfigError

__all__ = [
    "API_VERSIONS",
    "DEFAULT_API_VERSION",
    "ENV_CONFIG",
    "ENV_PREFIX",
    "ENV_PROFILE",
    "FIELDS",
    "GRANTS",
    "SECRET_FIELDS",
    "check_names",
    "redact",
    "unknown_field",
]

#: Every field of `Settings`, in the order the vendor guide presents them.
FIELDS: Final[tuple[str, ...]] = (
    "service_url",
    "auth_uri",
    "token_uri",
    "client_id",
    "client_secret",
    "scope",
    "access_token",
    "refresh_token",
    "tenant",
    "redirect_uri",
    "grant",
    "api_version",
    "ca_cert",
)
#: Fields whose values are credentials: never shown, never saved in a profile.
SECRET_FIELDS: Final[tuple[str, ...]] = ("client_secret", "access_token", "refresh_token")
#: Grant types, in the words d365nb uses.
GRANTS: Final[tuple[str, ...]] = (
    "device_code",
    "auth_code",
    "client_credentials",
    "refresh_token",
    "access_token",
    # Tokens come from an azure-identity style credential given to `connect(credential=)`.
    "credential",
)
API_VERSIONS: Final[tuple[str, ...]] = ("9.0", "9.1", "9.2")
DEFAULT_API_VERSION: Final = "9.2"
ENV_PREFIX: Final = "D365NB_"
ENV_PROFILE: Final = "D365NB_PROFILE"
ENV_CONFIG: Final = "D365NB_CONFIG"
_REDACTED = "<redacted>"


def redact(text: str, secrets: Iterable[str | None]) -> str:
    """Return `text` with every secret value (and its URL-encoded forms) replaced.

    Use it before a message, log line or URL that might hold a credential becomes text
    anyone can see.  Longer secrets are replaced first, so one secret containing another
    is still hidden whole.

    **Parameters:**

    * **text** - the text to scrub.
    * **secrets** - the values to hide; `None` and empty strings are skipped
      (`Settings.secrets()` gives the ones a connection holds).
    """
    variants: set[str] = set()
    for secret in secrets:
        if secret:
            variants.update({secret, quote(secret, safe=""), quote_plus(secret, safe="")})
    for variant in sorted(variants, key=len, reverse=True):
        text = text.replace(variant, _REDACTED)
    # A credential written as Key=Value inside some other value (a pasted connection
    # string in the wrong field) is hidden too, whatever its value.
    return _SECRET_ASSIGNMENT.sub(lambda m: m.group(1) + _REDACTED, text)


_SECRET_ASSIGNMENT = re.compile(
    r"((?:client[ _-]?secret|oauth[ _-]?client[ _-]?secret|access[ _-]?token|refresh[ _-]?token"
    r"|oauth[ _-]?access[ _-]?token|oauth[ _-]?refresh[ _-]?token|password|pwd)\s*[=:]\s*)"
    r"[^;&\s'\"]+",
    re.I,
)


# -- field names --------------------------------------------------------------------------


def unknown_field(key: str) -> ConfigError:
    """The error for a setting name that is not a field, with the nearest field name."""
    close = difflib.get_close_matches(key, FIELDS, n=1, cutoff=0.6)
    hint = f"Did you mean {close[0]}?" if close else f"Known settings: {', '.join(FIELDS)}."
    return ConfigError(f"Unknown setting {key!r}.", field=key, hint=hint)


def check_names(values: Mapping[str, object]) -> None:
    """Raise `ConfigError` for the first key of `values` that is not a field."""
    for key in values:
        if key not in FIELDS:
            raise unknown_field(key)
