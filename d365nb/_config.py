"""Connection settings: one frozen value object, read from every form users meet.

`Settings` holds what the vendor guides call Service URL, Auth URI, Token URI, Client ID,
Client Secret, Scope, Access Token, Refresh Token, tenant and redirect URI.  It is built
from keyword arguments, a connection string in the vendor driver's `Key=Value;` form,
`D365NB_*` environment variables or a saved profile (see `_profile.py`), and it derives
what can be derived without network I/O:

| derived       | from                                                                 |
| ------------- | -------------------------------------------------------------------- |
| `resource`    | the Service URL, `.api.` and the path dropped                        |
| `api_root`    | the Service URL, or the org URL + `/api/data/v{api_version}/`        |
| `version`     | the Token/Auth URI shape: `/oauth2/v2.0/token` (v2), `/oauth2/token` |
| `authority`   | the Token/Auth URI, or the Service URL's cloud + `tenant`            |
| `grant`       | the credentials given, when `grant` is not                           |
| `scopes`      | `<resource>/user_impersonation offline_access` or `<resource>/.default` |

Every check lives in one class (`_Analysis`), used both by construction and by
`check_fields` (the setup panel's live validation), so the two never disagree.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final
from urllib.parse import parse_qsl, quote, quote_plus, urlsplit

from ._exceptions import ConfigError

__all__ = [
    "Settings",
    "check_fields",
    "parse_connection_string",
    "redact",
]

# -- vocabulary ---------------------------------------------------------------------------

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
    "service",  # F&O hook (issue 23): "dataverse" or "fno"; derived from the URL if it can be
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
_RESERVED_SCOPES = frozenset({"openid", "profile", "offline_access", "email"})
_GUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", re.I)
_DOMAIN = re.compile(r"^(?=.{1,253}$)[a-z0-9](?:[a-z0-9-]*[a-z0-9])?(?:\.[a-z0-9-]+)+$", re.I)
_TENANTLESS = frozenset({"common", "organizations"})
_EXAMPLE_CLIENT_ID = "00001111-aaaa-2222-bbbb-3333cccc4444"

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
    "service": ("Service",),
}
# Accepted for compatibility with the vendor driver; only OAuth 2.0 is supported.
_AUTH_METHOD_KEY = "authenticationmethod"
_AUTH_METHODS_OK = frozenset({"oauth2", "24"})
# How `to_connection_string` spells each field: the vendor guide's names.
_KEY_OUT: Final = {name: spellings[0] for name, spellings in _KEY_SPELLINGS.items()}


def _norm_key(key: str) -> str:
    return re.sub(r"[\s_\-]+", "", key).lower()


_KEY_TO_FIELD: Final[dict[str, str]] = {
    _norm_key(spelling): name
    for name, spellings in _KEY_SPELLINGS.items()
    for spelling in (*spellings, name)
}

_GRANT_ALIASES: Final = {
    "devicecode": "device_code",
    "device": "device_code",
    "authcode": "auth_code",
    "authorizationcode": "auth_code",
    "code": "auth_code",
    "clientcredentials": "client_credentials",
    "clientcredential": "client_credentials",
    "client": "client_credentials",  # CData's OAuthGrantType=CLIENT
    "refreshtoken": "refresh_token",
    "refresh": "refresh_token",
    "accesstoken": "access_token",
}

# Dynamics 365 online host suffixes -> the sign-in host of that cloud.  `crm9` is GCC, which
# signs in through the commercial cloud; GCC High and DoD through login.microsoftonline.us.
_CLOUDS: Final = (
    (
        re.compile(r"^[a-z0-9-]+\.(api\.)?(crm[0-9]{0,2}\.dynamics\.com)$"),
        "login.microsoftonline.com",
    ),
    (re.compile(r"^[a-z0-9-]+\.(api\.)?(crm\.microsoftdynamics\.us)$"), "login.microsoftonline.us"),
    (re.compile(r"^[a-z0-9-]+\.(api\.)?(crm\.appsplatform\.us)$"), "login.microsoftonline.us"),
    (re.compile(r"^[a-z0-9-]+\.(api\.)?(crm\.dynamics\.cn)$"), "login.chinacloudapi.cn"),
)
_LOGIN_HOSTS = frozenset(
    {"login.microsoftonline.com", "login.microsoftonline.us", "login.chinacloudapi.cn",
     "login.windows.net", "sts.windows.net"}
)  # fmt: skip
_LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})
# Sign-in origin when neither an endpoint nor a known cloud says otherwise.  On-premises
# (AD FS) users give token_uri explicitly.
_DEFAULT_LOGIN = "https://login.microsoftonline.com"
_WEB_API_PATH = re.compile(r"^(?P<prefix>(?:/[^/]+)*?)/api/data/v(?P<version>[0-9.]+)/?$", re.I)
_WEB_API_SOMEWHERE = re.compile(r"/api/data/v[0-9]+(?:\.[0-9]+)*", re.I)
_ENDPOINT_PATH = re.compile(
    r"^/(?P<tenant>[^/]+)/oauth2/(?:(?P<v2>v2\.0)/)?(?P<kind>token|authorize|devicecode)/?$", re.I
)
_METHOD_PREFIX = re.compile(r"^(?P<method>[A-Za-z]+)\s+(?=\S)")

# -- finance and operations (issue 23): which hosts and paths are F&O environments --------
# reference/finance-operations-protocol.md section 1.1: production and sandbox
# (`*.operations.dynamics.com`, `*.sandbox.operations.dynamics.com`), cloud-hosted
# (`*.cloudax.dynamics.com`), one-box (`*.cloud.onebox.dynamics.com`), older `*.cloud.dynamics.com`.
_FNO_HOST = re.compile(
    r"^[a-z0-9-]+\.(?:sandbox\.)?(?:operations(?:\.[a-z0-9]+)?\.dynamics\.com|"
    r"cloudax\.dynamics\.com|cloud\.onebox\.dynamics\.com|cloud\.dynamics\.com)$",
    re.I,
)
_FNO_DATA_PATH = re.compile(r"^(?P<prefix>(?:/[^/]+)*?)/data/?$", re.I)
_SERVICES: Final = {
    "dataverse": "dataverse", "crm": "dataverse", "ce": "dataverse",
    "fno": "fno", "fo": "fno", "f&o": "fno", "finops": "fno", "erp": "fno",
    "operations": "fno", "finance": "fno", "financeandoperations": "fno",
}  # fmt: skip


# -- redaction ----------------------------------------------------------------------------


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


# -- connection strings -------------------------------------------------------------------

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


def _format_connection_string(values: Mapping[str, str]) -> str:
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


# -- analysis: one source of truth for construction and check_fields ----------------------


@dataclass(frozen=True)
class _ServiceURL:
    resource: str  # https://org.crm.dynamics.com (no trailing slash)
    org_url: str  # resource + on-premises path prefix, if any
    api_base: str  # what /api/data/vX.Y/ is appended to
    version: str | None  # the version written in the URL
    login_base: str | None  # sign-in origin of this cloud; None: unknown
    service: str = "dataverse"  # "fno": a finance and operations environment (issue 23)


@dataclass(frozen=True)
class _Endpoint:
    origin: str
    tenant: str
    version: str  # "v1" | "v2"


@dataclass(frozen=True)
class _Derived:
    resource: str
    org_url: str
    api_root: str
    api_version: str
    version: str
    authority: str
    tenant_id: str
    token_uri: str
    auth_uri: str
    grant: str
    scopes: tuple[str, ...]
    service: str = "dataverse"


class _Analysis:
    """Normalises the raw values, collects problems (first per field) and derives."""

    def __init__(self, values: Mapping[str, Any], *, partial: bool) -> None:
        self.partial = partial
        self.problems: dict[str, ConfigError] = {}
        self.values: dict[str, str | None] = {}
        for name in FIELDS:
            self.values[name] = self._normalise(name, values.get(name))
        self.derived = self._derive()

    # -- bookkeeping
    def fail(self, name: str, message: str, hint: str) -> None:
        if name not in self.problems:
            if not message.startswith((*FIELDS, "http")):
                message = message[0].upper() + message[1:]
            self.problems[name] = ConfigError(message, field=name, hint=hint)

    def missing(self, name: str, message: str, hint: str) -> None:
        if not self.partial:
            self.fail(name, message, hint)

    def ok(self, *names: str) -> bool:
        return not any(name in self.problems for name in names)

    def scrubbed_problems(self) -> dict[str, ConfigError]:
        secrets = [self.values[name] for name in SECRET_FIELDS]
        return {
            name: ConfigError(
                redact(err.message, secrets),
                field=err.field,
                hint=redact(err.hint, secrets) if err.hint else None,
            )
            for name, err in self.problems.items()
        }

    # -- normalisation
    def _normalise(self, name: str, raw: Any) -> str | None:
        if raw is None:
            return None
        if not isinstance(raw, str):
            self.fail(name, f"{name} must be text, not {type(raw).__name__}.", "Pass a string.")
            return None
        value = raw.strip()
        if not value:
            return None
        if name in ("token_uri", "auth_uri"):
            allowed = "POST" if name == "token_uri" else "GET"
            match = _METHOD_PREFIX.match(value)
            if match:
                if match["method"].upper() != allowed:
                    self.fail(
                        name,
                        f"{name} starts with {match['method']}, but this endpoint is "
                        f"called with {allowed}.",
                        f"Remove '{match['method']} ' from the start of {name}.",
                    )
                    return None
                value = value[match.end() :]
        elif name == "grant":
            words = re.sub(r"[\s\-]+", "_", value.lower())
            words = re.sub(r"_(grant(_type)?|flow)$", "", words)
            value = _GRANT_ALIASES.get(words.replace("_", ""), words)
        elif name == "api_version":
            value = value.lower().removeprefix("v")
        elif name == "service":
            key = re.sub(r"[\s_\-]+", "", value.lower())
            if key not in _SERVICES:
                self.fail(
                    "service",
                    f"service {value!r} is not known.",
                    "Use 'dataverse' (CRM apps) or 'fno' (finance and operations apps).",
                )
                return None
            value = _SERVICES[key]
        return value

    # -- derivation
    def _derive(self) -> _Derived | None:
        v = self.values
        svc = self._service_url(v["service_url"])
        api_version = self._api_version(svc)
        self._client_id(v["client_id"])
        self._tenant_format(v["tenant"])
        token = self._endpoint("token_uri", v["token_uri"])
        auth = self._endpoint("auth_uri", v["auth_uri"])
        if token and auth:
            self._endpoints_agree(token, auth)
        endpoint = token or auth
        version = endpoint.version if endpoint else "v2"

        # Tenant and authority: the endpoint's, else the tenant field on this cloud.
        tenant, tenant_from = "organizations", "tenant"
        if endpoint:
            tenant, tenant_from = endpoint.tenant, "token_uri" if token else "auth_uri"
            if v["tenant"] and self.ok("tenant") and v["tenant"].lower() != tenant.lower():
                self.fail(
                    "tenant",
                    f"tenant {v['tenant']} differs from the tenant {tenant} in {tenant_from}.",
                    "Remove tenant, or use the same tenant in both places.",
                )
            origin = endpoint.origin
        else:
            if v["tenant"]:
                tenant = v["tenant"]
            origin = svc.login_base if svc and svc.login_base else _DEFAULT_LOGIN
        if tenant.lower() == "consumers":
            self.fail(
                tenant_from,
                "the consumers tenant is for personal Microsoft accounts, which cannot use "
                "Dataverse.",
                "Use your organisation's tenant ID or domain (or organizations).",
            )
        authority = f"{origin}/{tenant}"
        path = "oauth2/v2.0" if version == "v2" else "oauth2"
        token_uri = v["token_uri"] if token and v["token_uri"] else f"{authority}/{path}/token"
        auth_uri = v["auth_uri"] if auth and v["auth_uri"] else f"{authority}/{path}/authorize"

        grant = self._grant()
        self._grant_needs(grant, tenant, tenant_from)
        scopes = self._scopes(svc, version, grant)
        self._redirect_uri(v["redirect_uri"])

        if svc is None or grant is None or api_version is None or scopes is None:
            return None
        fno = svc.service == "fno"
        return _Derived(
            resource=svc.resource,
            org_url=svc.org_url,
            api_root=f"{svc.resource}/data/" if fno else f"{svc.api_base}/api/data/v{api_version}/",
            api_version=api_version,
            version=version,
            authority=authority,
            tenant_id=tenant,
            token_uri=token_uri,
            auth_uri=auth_uri,
            grant=grant,
            scopes=scopes,
            service=svc.service,
        )

    def _service_url(self, url: str | None) -> _ServiceURL | None:
        example = "https://contoso.crm.dynamics.com"
        if url is None:
            if self.ok("service_url"):
                self.missing(
                    "service_url",
                    "service_url is required.",
                    f"Set it to your environment's address, e.g. {example} "
                    "(Power Platform admin center > Environments > Environment URL).",
                )
            return None
        parsed = _split_https(
            "service_url",
            url,
            self,
            example=f"{example}/api/data/v9.2/",
            query_ok=True,
            fragment_ok=True,
        )
        if parsed is None:
            return None
        host, origin, path = parsed
        if host in _LOGIN_HOSTS:
            self.fail(
                "service_url",
                f"service_url {url} is the sign-in service, not your Dynamics 365 environment.",
                f"Put the sign-in address in token_uri; service_url is your environment's "
                f"address, e.g. {example}.",
            )
            return None
        fno = self._fno_service_url(url, host, origin, path)
        if fno is not None:
            return fno
        web_api = _WEB_API_PATH.match(path)
        bare = path in ("", "/")
        extras = urlsplit(url)
        if (extras.query or extras.fragment) and (bare or web_api):
            self.fail(
                "service_url",
                f"service_url {url} has a query string or fragment.",
                "Remove everything from '?' or '#' on.",
            )
            return None
        cloud = next(((m, login) for pattern, login in _CLOUDS if (m := pattern.match(host))), None)
        if cloud is not None:
            match, login = cloud
            # Tokens are for https://org.crm.dynamics.com even when the Web API is served
            # from https://org.api.crm.dynamics.com (reference/identity-protocol.md section 3;
            # the rule is [UNVERIFIED] in general, so it is applied to Microsoft's clouds only).
            resource = origin.replace(".api.", ".", 1) if match.group(1) else origin
            if bare or (web_api and not web_api["prefix"]):
                return _ServiceURL(
                    resource=resource,
                    org_url=resource,
                    api_base=origin,
                    version=web_api["version"] if web_api else None,
                    login_base=f"https://{login}",
                )
            self._not_service_url(url, origin, path, suggestion=resource)
            return None
        if host in _LOOPBACK:
            # The local sandbox serves the Web API and the sign-in service on one origin.
            login_base: str | None = origin
        else:
            login_base = None  # on-premises (AD FS) or unknown: give token_uri explicitly
        if web_api:
            prefix = web_api["prefix"].rstrip("/")
            return _ServiceURL(
                resource=origin,
                org_url=origin + prefix,
                api_base=origin + prefix,
                version=web_api["version"],
                login_base=login_base,
            )
        if bare and host in _LOOPBACK:
            return _ServiceURL(origin, origin, origin, None, login_base)
        self._not_service_url(url, origin, path, suggestion=None)
        return None

    def _fno_service_url(self, url: str, host: str, origin: str, path: str) -> _ServiceURL | None:
        """A finance and operations environment (issue 23), or None for Dataverse.

        F&O when `service="fno"`, when the host is an F&O host, or when the path ends in
        `/data/` (never a Dataverse path).  The resource is the root without `/data/`.
        """
        given = self.values["service"]
        data = _FNO_DATA_PATH.match(path)
        if data and data["prefix"].lower().endswith("/api"):
            data = None  # Dataverse's /api/data without its version: not F&O
        if given == "dataverse" or not (given == "fno" or _FNO_HOST.match(host) or data):
            return None
        if urlsplit(url).query or urlsplit(url).fragment:
            self.fail(
                "service_url",
                f"service_url {url} has a query string or fragment.",
                "Remove everything from '?' or '#' on.",
            )
            return None
        prefix = data["prefix"] if data else path.rstrip("/")
        root = origin + prefix
        login = origin if host in _LOOPBACK else None
        if _FNO_HOST.match(host):
            login = _DEFAULT_LOGIN
        return _ServiceURL(root, root, root, None, login, service="fno")

    def _not_service_url(self, url: str, origin: str, path: str, suggestion: str | None) -> None:
        somewhere = _WEB_API_SOMEWHERE.search(path)
        if somewhere:
            hint = f"Use the Web API root: {origin}{path[: somewhere.end()]}/"
        elif path.lower().rstrip("/").endswith("/api/data"):
            hint = f"Add the API version: {origin}{path.rstrip('/')}/v{DEFAULT_API_VERSION}/"
        elif suggestion:
            hint = f"Use the environment's address without the page path: {suggestion}"
        else:
            hint = (
                "For an on-premises or other server give the Web API root, ending in "
                f"/api/data/v{DEFAULT_API_VERSION}/."
            )
        self.fail(
            "service_url",
            f"service_url {url} is neither an environment URL nor a Web API root.",
            hint,
        )

    def _api_version(self, svc: _ServiceURL | None) -> str | None:
        given = self.values["api_version"]
        if svc is not None and svc.service == "fno":
            return given or DEFAULT_API_VERSION  # F&O has no Web API version (issue 23)
        url_version = svc.version if svc else None
        if url_version is not None and url_version not in API_VERSIONS:
            self.fail(
                "service_url",
                f"the Web API version v{url_version} in service_url is not supported.",
                f"Use /api/data/v{DEFAULT_API_VERSION}/ (d365nb speaks {', '.join(API_VERSIONS)}).",
            )
            return None
        if given is not None:
            if given not in API_VERSIONS:
                self.fail(
                    "api_version",
                    f"api_version {given} is not supported.",
                    f"Use one of {', '.join(API_VERSIONS)} ({DEFAULT_API_VERSION} is current).",
                )
                return None
            if url_version is not None and url_version != given:
                self.fail(
                    "api_version",
                    f"api_version {given} contradicts v{url_version} in service_url.",
                    "Leave api_version out (the version in service_url is used) or make "
                    "them the same.",
                )
                return None
            return given
        return url_version or DEFAULT_API_VERSION

    def _client_id(self, client_id: str | None) -> None:
        if client_id is None or _GUID.match(client_id):
            return
        braces = client_id.startswith("{") and client_id.endswith("}")
        self.fail(
            "client_id",
            "client_id must be the app's Application (client) ID, a GUID such as "
            f"{_EXAMPLE_CLIENT_ID}.",
            "Remove the braces around the GUID."
            if braces and _GUID.match(client_id[1:-1])
            else "Copy it from Entra ID > App registrations > your app > Overview "
            "(not the secret, nor the secret's ID).",
        )

    def _tenant_format(self, tenant: str | None) -> None:
        if tenant is None or _GUID.match(tenant) or _DOMAIN.match(tenant):
            return
        if tenant.lower() in (*_TENANTLESS, "consumers", "adfs"):
            return
        self.fail(
            "tenant",
            f"tenant {tenant!r} is neither a directory (tenant) ID nor a domain.",
            "Use the GUID from Entra ID > Overview > Tenant ID, or a domain such as "
            "contoso.onmicrosoft.com.",
        )

    def _endpoint(self, name: str, url: str | None) -> _Endpoint | None:
        if url is None:
            return None
        kind = "token" if name == "token_uri" else "authorize"
        example = f"https://login.microsoftonline.com/<tenant>/oauth2/v2.0/{kind}"
        parsed = _split_https(name, url, self, example=example, query_ok=True)
        if parsed is None:
            return None
        _, origin, path = parsed
        match = _ENDPOINT_PATH.match(path)
        if match is None or match["kind"].lower() != kind:
            found = f" ({match['kind']} endpoint)" if match else ""
            self.fail(
                name,
                f"{name} {url} is not an OAuth 2.0 {kind} endpoint{found}.",
                f"Use the {kind} endpoint from Entra ID > App registrations > Endpoints, "
                f"e.g. {example}.",
            )
            return None
        version = "v2" if match["v2"] else "v1"
        tenant = match["tenant"]
        if not (
            _GUID.match(tenant)
            or _DOMAIN.match(tenant)
            or tenant.lower() in (*_TENANTLESS, "consumers", "adfs")
        ):
            self.fail(
                name,
                f"the tenant part of {name}, {tenant!r}, is neither a directory (tenant) ID "
                "nor a domain.",
                f"Replace {tenant} with your directory (tenant) ID from Entra ID > Overview.",
            )
            return None
        query = urlsplit(url).query
        if query:
            keys = {k.lower() for k, _ in parse_qsl(query, keep_blank_values=True)}
            if version == "v2" and "resource" in keys:
                self.fail(
                    name,
                    f"{name} passes ?resource= to a v2 endpoint, which rejects it (AADSTS901002).",
                    "Remove the query; on v2 the scope (derived from service_url) names "
                    "the resource.",
                )
                return None
            if version == "v2":
                self.fail(
                    name,
                    f"{name} has a query string, which a v2 endpoint does not use.",
                    "Remove everything from '?' on.",
                )
                return None
        return _Endpoint(origin=origin, tenant=match["tenant"], version=version)

    def _endpoints_agree(self, token: _Endpoint, auth: _Endpoint) -> None:
        if token.version != auth.version:
            fixed = "/oauth2/v2.0/authorize" if token.version == "v2" else "/oauth2/authorize"
            self.fail(
                "auth_uri",
                f"auth_uri is a {auth.version} endpoint but token_uri is {token.version}.",
                f"Use the same version for both: auth_uri ending in {fixed}.",
            )
        elif token.origin != auth.origin or token.tenant.lower() != auth.tenant.lower():
            self.fail(
                "auth_uri",
                "auth_uri and token_uri point at different sign-in services or tenants.",
                f"Use {token.origin}/{token.tenant}/... for both.",
            )

    def _grant(self) -> str | None:
        v = self.values
        given = v["grant"]
        if given is not None:
            if given in GRANTS:
                return given
            close = difflib.get_close_matches(given, GRANTS, n=1, cutoff=0.5)
            self.fail(
                "grant",
                f"unknown grant {given!r}.",
                (f"Did you mean {close[0]}? " if close else "")
                + f"Use one of {', '.join(GRANTS)}.",
            )
            return None
        if v["access_token"]:
            return "access_token"
        if v["refresh_token"]:
            return "refresh_token"
        if v["client_secret"]:
            return "client_credentials"
        return "device_code"

    def _grant_needs(self, grant: str | None, tenant: str, tenant_from: str) -> None:
        v = self.values
        if grant is None:
            return
        if grant == "client_credentials":
            if v["client_secret"] is None:
                self.missing(
                    "client_secret",
                    "the client_credentials grant needs client_secret.",
                    "Set D365NB_CLIENT_SECRET in the environment (or pass client_secret=); "
                    "for a signed-in user choose grant device_code instead.",
                )
            if tenant.lower() in _TENANTLESS:
                if tenant_from == "tenant" and v["tenant"] is None:
                    self.missing(
                        "tenant",
                        "the client_credentials grant needs your tenant.",
                        "Set tenant to your directory (tenant) ID, or give a token_uri "
                        "that contains it.",
                    )
                else:
                    self.fail(
                        tenant_from,
                        f"the client_credentials grant cannot use the /{tenant} authority "
                        "(AADSTS50059: no tenant-identifying information).",
                        f"Set tenant to your directory (tenant) ID instead of {tenant}."
                        if tenant_from == "tenant"
                        else f"Replace /{tenant}/ in {tenant_from} with your directory "
                        "(tenant) ID.",
                    )
        elif grant == "access_token" and v["access_token"] is None:
            self.missing(
                "access_token",
                "the access_token grant needs access_token.",
                "Set D365NB_ACCESS_TOKEN (or pass access_token=), or choose another grant.",
            )
        elif grant == "refresh_token" and v["refresh_token"] is None:
            self.missing(
                "refresh_token",
                "the refresh_token grant needs refresh_token.",
                "Set D365NB_REFRESH_TOKEN (or pass refresh_token=), or choose another grant.",
            )
        if grant not in ("access_token", "credential") and v["client_id"] is None:
            self.missing(
                "client_id",
                f"client_id is required for the {grant} grant.",
                "Register an app in Entra ID and copy its Application (client) ID, "
                f"a GUID such as {_EXAMPLE_CLIENT_ID}.",
            )

    def _scopes(
        self, svc: _ServiceURL | None, version: str, grant: str | None
    ) -> tuple[str, ...] | None:
        given = self.values["scope"]
        resource = svc.resource if svc else "https://<org>.crm.dynamics.com"
        default = (
            (f"{resource}/.default",)
            if grant == "client_credentials"
            else (f"{resource}/user_impersonation", "offline_access")
        )
        if svc is not None and svc.service == "fno" and grant != "client_credentials":
            # F&O (Microsoft.ERP) has no user_impersonation: <root>/.default (issue 23).
            default = (f"{resource}/.default", "offline_access")
        if given is None:
            return default
        if version == "v1":
            self.fail(
                "scope",
                "scope is only used by v2 endpoints, but token_uri is a v1 (/oauth2/token) "
                "endpoint, which takes the resource instead.",
                "Remove scope (the resource is derived from service_url), or use the v2 "
                "endpoint .../oauth2/v2.0/token.",
            )
            return None
        if "," in given:
            self.fail(
                "scope",
                "scope uses commas between scopes.",
                f"Separate scopes with spaces, e.g. {resource}/user_impersonation offline_access.",
            )
            return None
        items = tuple(given.split())
        for item in items:
            try:
                path = urlsplit(item).path if "://" in item else None
            except ValueError:
                self.fail(
                    "scope",
                    f"scope {item} is not a valid URL.",
                    f"Use e.g. {resource}/user_impersonation.",
                )
                return None
            if path in ("", "/"):
                self.fail(
                    "scope",
                    f"scope {item} is a v1 resource, not a v2 scope.",
                    f"Use {item.rstrip('/')}/user_impersonation (signed-in user) or "
                    f"{item.rstrip('/')}/.default (client credentials).",
                )
                return None
            if "/" not in item and item.lower() not in _RESERVED_SCOPES:
                self.fail(
                    "scope",
                    f"scope {item} names no resource, so the token would be for Microsoft "
                    "Graph, not Dataverse.",
                    f"Use {resource}/{item}.",
                )
                return None
        if grant == "client_credentials" and (
            len(items) != 1 or not items[0].endswith("/.default")
        ):
            self.fail(
                "scope",
                "the client_credentials grant takes exactly one scope ending in /.default.",
                f"Use {resource}/.default (or leave scope out).",
            )
            return None
        return items

    def _redirect_uri(self, uri: str | None) -> None:
        if uri is None:
            return
        try:
            parts = urlsplit(uri)
            host = parts.hostname or ""
            parts.port  # noqa: B018  (raises on a malformed port)
        except ValueError:
            host, parts = "", urlsplit("")
        if parts.scheme == "https" and host:
            return
        if parts.scheme == "http" and host in _LOOPBACK:
            return
        self.fail(
            "redirect_uri",
            f"redirect_uri {uri} is not usable: http is allowed only for localhost and "
            "127.0.0.1, anything else must be https.",
            "Use http://localhost (registered in your app under Mobile and desktop "
            "applications) or leave redirect_uri out.",
        )


def _split_https(
    name: str,
    url: str,
    analysis: _Analysis,
    *,
    example: str,
    query_ok: bool = False,
    fragment_ok: bool = False,
) -> tuple[str, str, str] | None:
    """Check that `url` is an absolute https URL; return (host, origin, path) or None."""
    try:
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
        port = parts.port
    except ValueError:
        analysis.fail(name, f"{name} {url!r} is not a valid URL.", f"Use e.g. {example}")
        return None
    if parts.username is not None or parts.password is not None:
        analysis.fail(
            name,
            f"{name} contains a user name or password before '@'.",
            "Remove it; credentials go in their own settings, never in the URL.",
        )
        return None
    if parts.scheme.lower() == "http":
        analysis.fail(
            name,
            f"{name} {url} uses http; d365nb only sends credentials over https.",
            f"Use {'https' + url[4:]}",
        )
        return None
    if parts.scheme.lower() != "https" or not host:
        fixed = f" https://{url}" if "://" not in url and "." in url else f" e.g. {example}"
        analysis.fail(name, f"{name} {url!r} is not an https URL.", f"Write it in full:{fixed}")
        return None
    if (parts.query and not query_ok) or (parts.fragment and not fragment_ok):
        analysis.fail(
            name,
            f"{name} {url} has a query string or fragment.",
            "Remove everything from '?' or '#' on.",
        )
        return None
    netloc = f"[{host}]" if ":" in host else host
    if port is not None and port != 443:
        netloc += f":{port}"
    return host, f"https://{netloc}", parts.path


def check_fields(values: Mapping[str, str | None], *, partial: bool = False) -> dict[str, str]:
    """Check settings without building them: field → what is wrong and how to fix it.

    The same checks as `Settings(...)` runs; an empty dict means `Settings(**values)`
    succeeds.  Secrets are never quoted in the answers.

    **Parameters:**

    * **values** - field name → text as typed (`None` or `""` for an empty field).
    * **partial** - skip "required" complaints about fields not filled in yet (for live
      validation while the user types); malformed values are still reported.
    """
    problems: dict[str, str] = {}
    for key in values:
        if key not in FIELDS:
            problems[key] = str(_unknown_field(key))
    analysis = _Analysis(values, partial=partial)
    for name, err in analysis.scrubbed_problems().items():
        problems.setdefault(name, str(err))
    return problems


def _unknown_field(key: str) -> ConfigError:
    close = difflib.get_close_matches(key, FIELDS, n=1, cutoff=0.6)
    hint = f"Did you mean {close[0]}?" if close else f"Known settings: {', '.join(FIELDS)}."
    return ConfigError(f"Unknown setting {key!r}.", field=key, hint=hint)


def _check_names(values: Mapping[str, object]) -> None:
    for key in values:
        if key not in FIELDS:
            raise _unknown_field(key)


def _env_values(environ: Mapping[str, str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for name in FIELDS:
        value = environ.get(ENV_PREFIX + name.upper())
        if value is not None and value.strip():
            out[name] = value
    return out


# -- the value object ---------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True, repr=False)
class Settings:
    """How to reach and sign in to one Dynamics 365 / Dataverse environment.

    Usage:

    ```python
    settings = Settings(service_url="https://contoso.api.crm.dynamics.com/api/data/v9.2/",
                        client_id="00001111-aaaa-2222-bbbb-3333cccc4444")
    settings.resource   # 'https://contoso.crm.dynamics.com'
    settings.grant      # 'device_code'
    settings = Settings.resolve("ServiceURL=...;ClientID=...;TokenURI=POST https://...;")
    ```

    Construction checks everything that can be checked without the network and raises
    `ConfigError` naming the field and the fix.  `service_url` is required, and so is what
    the grant needs (`client_id`; a secret for client credentials; the token for the
    token grants).  Partly filled values are checked with `check_fields(partial=True)`.

    After construction `grant`, `api_version`, `token_uri` and `auth_uri` hold the values
    in effect (given or derived; a leading `POST ` is gone); `replace`, `save_profile`
    and `to_connection_string` carry only what was given, so derived values follow
    changes.  Secrets show as `<set>` in `repr`.

    **Parameters:**

    * **service_url** - the environment URL (`https://org.crm.dynamics.com`) or the Web
      API root (`https://org.api.crm.dynamics.com/api/data/v9.2/`).
    * **auth_uri**, **token_uri** - OAuth endpoints; their shape picks v1 or v2.
    * **client_id**, **client_secret** - the app registration's ID and secret.
    * **scope** - v2 only, space separated; derived from the resource when omitted.
    * **access_token**, **refresh_token** - tokens obtained elsewhere.
    * **tenant** - directory ID or domain, used when no endpoint is given.
    * **redirect_uri** - for the authorization-code grant.
    * **grant** - one of `device_code`, `auth_code`, `client_credentials`,
      `refresh_token`, `access_token`.
    * **api_version** - `9.0`, `9.1` or `9.2` (default), for an environment URL.
    * **service** - `"dataverse"` or `"fno"` (finance and operations); derived from the
      Service URL (an `*.operations.dynamics.com` host or a `/data/` path) when omitted.
    """

    service_url: str | None = None
    auth_uri: str | None = None
    token_uri: str | None = None
    client_id: str | None = None
    client_secret: str | None = None
    scope: str | None = None
    access_token: str | None = None
    refresh_token: str | None = None
    tenant: str | None = None
    redirect_uri: str | None = None
    grant: str | None = None
    api_version: str | None = None
    service: str | None = None
    _given: frozenset[str] = field(init=False, compare=False, default=frozenset())
    _derived: _Derived = field(init=False, compare=False)

    def __post_init__(self) -> None:
        analysis = _Analysis({name: getattr(self, name) for name in FIELDS}, partial=False)
        problems = analysis.scrubbed_problems()
        if problems:
            first = next(iter(problems.values()))
            if len(problems) > 1:
                others = ", ".join(name for name in problems if name != first.field)
                first = ConfigError(
                    first.message,
                    field=first.field,
                    hint=f"{first.hint} (Also check: {others}.)",
                )
            raise first
        derived = analysis.derived
        assert derived is not None
        values = analysis.values
        given = frozenset(name for name in FIELDS if values[name] is not None)
        for name in FIELDS:
            object.__setattr__(self, name, values[name])
        for name in ("grant", "api_version", "token_uri", "auth_uri", "service"):
            object.__setattr__(self, name, getattr(derived, name))
        object.__setattr__(self, "_given", given)
        object.__setattr__(self, "_derived", derived)

    # -- constructors
    @classmethod
    def from_connection_string(cls, text: str, **overrides: str | None) -> Settings:
        """Settings from a vendor-driver connection string, `overrides` on top.

        **Parameters:**

        * **text** - `ServiceURL=...;ClientID=...;TokenURI=POST https://...;` or the JDBC
          URL `jdbc:datadirect:dynamics365:ServiceURL=...;...` (see
          `parse_connection_string`).
        * **overrides** - field values that win over the string; `None` means not given.
        """
        _check_names(overrides)
        values: dict[str, str | None] = dict(parse_connection_string(text))
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Settings from `D365NB_*` environment variables and the `D365NB_PROFILE` profile.

        One variable per field (`D365NB_SERVICE_URL`, `D365NB_CLIENT_ID`,
        `D365NB_CLIENT_SECRET`, ...); `D365NB_CONFIG` overrides the profile file's path.

        **Parameters:**

        * **environ** - the variables to read; `os.environ` when omitted.
        """
        return cls.resolve(environ=environ)

    @classmethod
    def from_profile(cls, name: str, *, path: str | os.PathLike[str] | None = None) -> Settings:
        """Settings saved under `name` in the profile file.

        **Parameters:**

        * **name** - the profile's name.
        * **path** - the profile file; `D365NB_CONFIG` or the per-user default when omitted.
        """
        from ._profile import load_profile

        return cls(**load_profile(name, path=path))

    @classmethod
    def resolve(
        cls,
        connection_string: str | None = None,
        *,
        profile: str | None = None,
        environ: Mapping[str, str] | None = None,
        **fields: str | None,
    ) -> Settings:
        """Settings from every source, field by field: the normal way in.

        Precedence: explicit `fields` > `connection_string` > profile > environment
        variables.  The profile is `profile`, else the one `D365NB_PROFILE` names.

        **Parameters:**

        * **connection_string** - a vendor-driver connection string, or `None`.
        * **profile** - a saved profile's name.
        * **environ** - the environment to read; `os.environ` when omitted.
        * **fields** - field values; `None` means not given.
        """
        from ._profile import default_profile_path, load_profile

        _check_names(fields)
        env = os.environ if environ is None else environ
        values: dict[str, str | None] = dict(_env_values(env))
        profile_name = profile or (env.get(ENV_PROFILE) or "").strip() or None
        if profile_name:
            values.update(load_profile(profile_name, path=default_profile_path(env)))
        if connection_string:
            values.update(parse_connection_string(connection_string))
        values.update({k: v for k, v in fields.items() if v is not None})
        return cls(**values)

    def replace(self, **changes: str | None) -> Settings:
        """A copy with `changes` applied (`None` clears a field); derived values follow."""
        _check_names(changes)
        values: dict[str, str | None] = {name: getattr(self, name) for name in self._given}
        values.update(changes)
        return type(self)(**values)

    # -- output
    def _given_values(self, *, include_secrets: bool) -> dict[str, str]:
        values: dict[str, str] = {
            name: value
            for name in FIELDS
            if name in self._given
            and (value := getattr(self, name)) is not None
            and (include_secrets or name not in SECRET_FIELDS)
        }
        dropped = any(name in self._given for name in SECRET_FIELDS) and not include_secrets
        if dropped and "grant" not in values:
            # Keep the intent: without the secret, the grant would silently change.
            values["grant"] = self.grant or "device_code"
            values = {name: values[name] for name in FIELDS if name in values}
        return values

    def to_connection_string(self, *, include_secrets: bool = False) -> str:
        """The given settings as a vendor-driver connection string.

        `Settings.from_connection_string` reads it back.  Secrets are left out unless
        asked for; the grant is then written out, so the string still says what it needs.

        **Parameters:**

        * **include_secrets** - also write client_secret, access_token and refresh_token.
        """
        values = self._given_values(include_secrets=include_secrets)
        if "token_uri" in values:
            values["token_uri"] = "POST " + values["token_uri"]
        return _format_connection_string(values)

    def save_profile(self, name: str, *, path: str | os.PathLike[str] | None = None) -> Path:
        """Save the given settings, without secrets or tokens, as profile `name`.

        The file and a folder created for it are readable by their owner only.
        Returns the file's path.

        **Parameters:**

        * **name** - the profile's name; an existing profile of that name is replaced.
        * **path** - the profile file; `D365NB_CONFIG` or the per-user default when omitted.
        """
        from ._profile import write_profile

        return write_profile(name, self._given_values(include_secrets=False), path=path)

    def secrets(self) -> tuple[str, ...]:
        """The secret values present (client secret, tokens), for `redact`."""
        return tuple(value for name in SECRET_FIELDS if (value := getattr(self, name)))

    def __repr__(self) -> str:
        parts = []
        for name in FIELDS:
            value = getattr(self, name)
            if value is not None:
                parts.append(f"{name}=<set>" if name in SECRET_FIELDS else f"{name}={value!r}")
        return f"{type(self).__name__}({', '.join(parts)})"

    __str__ = __repr__

    # -- derived
    @property
    def resource(self) -> str:
        """The token audience: `https://org.crm.dynamics.com` (no trailing slash)."""
        return self._derived.resource

    @property
    def api_root(self) -> str:
        """The Web API root, ending in `/`: `https://org.api.crm.dynamics.com/api/data/v9.2/`."""
        return self._derived.api_root

    @property
    def org_url(self) -> str:
        """The environment's address (with the organisation path on-premises)."""
        return self._derived.org_url

    @property
    def version(self) -> str:
        """`"v2"` (Microsoft identity platform, `scope=`) or `"v1"` (`resource=`)."""
        return self._derived.version

    @property
    def scopes(self) -> tuple[str, ...]:
        """The scopes to ask for: `scope` split, or the defaults for the grant.

        On v1 endpoints they are not sent (`resource` is); they are what a migration of a
        v1 refresh token to v2 would ask for.
        """
        return self._derived.scopes

    @property
    def authority(self) -> str:
        """`https://<sign-in host>/<tenant>`, as msal takes it."""
        return self._derived.authority

    @property
    def tenant_id(self) -> str:
        """The tenant in effect: from the endpoints, `tenant`, or `organizations`."""
        return self._derived.tenant_id
