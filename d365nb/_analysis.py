"""Derive and check settings: one source of truth for `Settings` and the setup panel.

`Analysis` takes raw field values (as typed, possibly incomplete), normalises them,
collects what is wrong with each field (the first problem per field, with the fix) and
derives what can be derived without network I/O:

| derived       | from                                                                 |
| ------------- | -------------------------------------------------------------------- |
| `resource`    | the Service URL, `.api.` and the path dropped                        |
| `api_root`    | the Service URL, or the org URL + `/api/data/v{api_version}/`        |
| `version`     | the Token/Auth URI shape: `/oauth2/v2.0/token` (v2), `/oauth2/token` |
| `authority`   | the Token/Auth URI, or the Service URL's cloud + `tenant`            |
| `grant`       | the credentials given, when `grant` is not                           |
| `scopes`      | `<resource>/user_impersonation offline_access` or `<resource>/.default` |

`Settings(...)` raises the first problem; `check_fields` (live validation) and the setup
panel (suggestions while the user types) read them all.  Pure: no I/O.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import urlsplit

from ._exceptions import ConfigError
from ._fields import (
    API_VERSIONS,
    DEFAULT_API_VERSION,
    FIELDS,
    GRANTS,
    SECRET_FIELDS,
    SERVICES,
    redact,
    unknown_field,
)
from ._literals import GUID_RE
from ._urls import (
    DEFAULT_LOGIN,
    DOMAIN,
    LOOPBACK,
    TENANTLESS,
    ServiceURL,
    endpoints_agree,
    parse_endpoint,
    parse_service_url,
)

__all__ = ["Analysis", "Derived", "check_fields"]

_RESERVED_SCOPES = frozenset({"openid", "profile", "offline_access", "email"})
_EXAMPLE_CLIENT_ID = "00001111-aaaa-2222-bbbb-3333cccc4444"
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

_METHOD_PREFIX = re.compile(r"^(?P<method>[A-Za-z]+)\s+(?=\S)")


@dataclass(frozen=True)
class Derived:
    """What complete, valid settings mean: the values every later step uses."""

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
    grant_reason: str = ""  # why this grant: one sentence
    notes: tuple[str, ...] = ()  # settings given but not used, one sentence each
    service: str = "dataverse"  # "fno": finance and operations apps (issue 23)


class Analysis:
    """Field values read the way `Settings` reads them: normalised, checked, derived.

    Usage:

    ```python
    analysis = d365nb.Analysis({"service_url": "https://contoso.crm.dynamics.com"})
    analysis.values["grant"]       # None: not given
    analysis.derived.grant         # 'device_code' (None while something is wrong)
    analysis.problems              # field -> ConfigError naming the fix
    analysis.grant_reason          # why that grant, in one sentence
    analysis.notes                 # settings that are given but not used
    ```

    `Settings(...)` raises the first problem; the setup panel shows them all and fills
    suggestions from `derived`.  No I/O.

    **Parameters:**

    * **values** - field name -> value as typed (`None` or `""` for an empty field);
      unknown names are ignored (`check_fields` reports them).
    * **partial** - skip "required" complaints about fields not filled in yet (live
      validation while the user types); malformed values are still reported.
    """

    def __init__(self, values: Mapping[str, Any], *, partial: bool = False) -> None:
        self.partial = partial
        self.problems: dict[str, ConfigError] = {}
        self.notes: list[str] = []
        self.grant_reason = ""
        self.values: dict[str, str | None] = {}
        for name in FIELDS:
            self.values[name] = self._normalise(name, values.get(name))
        self.derived = self._derive()

    # -- bookkeeping
    def fail(self, name: str, message: str, hint: str) -> None:
        """Record a problem with field `name` (only the first per field is kept)."""
        if name not in self.problems:
            if not message.startswith((*FIELDS, "http")):
                message = message[0].upper() + message[1:]
            self.problems[name] = ConfigError(message, field=name, hint=hint)

    def missing(self, name: str, message: str, hint: str) -> None:
        """Record a missing required field, unless the analysis is partial."""
        if not self.partial:
            self.fail(name, message, hint)

    def ok(self, *names: str) -> bool:
        """True when none of `names` has a problem."""
        return not any(name in self.problems for name in names)

    def scrubbed_problems(self) -> dict[str, ConfigError]:
        """The problems with every secret value hidden, ready to show."""
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
            if key not in SERVICES:
                self.fail(
                    "service",
                    f"service {value!r} is not known.",
                    "Use 'dataverse' (CRM apps) or 'fno' (finance and operations apps).",
                )
                return None
            value = SERVICES[key]
        return value

    # -- derivation
    def _derive(self) -> Derived | None:
        v = self.values
        svc = parse_service_url(self, v["service_url"], v["service"])
        api_version = self._api_version(svc)
        self._client_id(v["client_id"])
        self._tenant_format(v["tenant"])
        token = parse_endpoint(self, "token_uri", v["token_uri"])
        auth = parse_endpoint(self, "auth_uri", v["auth_uri"])
        if token and auth:
            endpoints_agree(self, token, auth)
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
            origin = svc.login_base if svc and svc.login_base else DEFAULT_LOGIN
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
        fno = svc.service == "fno"  # F&O's OData root is <root>/data/ (issue 23)
        return Derived(
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
            grant_reason=self.grant_reason,
            notes=tuple(self.notes),
            service=svc.service,
        )

    def _api_version(self, svc: ServiceURL | None) -> str | None:
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
        if client_id is None or GUID_RE.fullmatch(client_id):
            return
        braces = client_id.startswith("{") and client_id.endswith("}")
        self.fail(
            "client_id",
            "client_id must be the app's Application (client) ID, a GUID such as "
            f"{_EXAMPLE_CLIENT_ID}.",
            "Remove the braces around the GUID."
            if braces and GUID_RE.fullmatch(client_id[1:-1])
            else "Copy it from Entra ID > App registrations > your app > Overview "
            "(not the secret, nor the secret's ID).",
        )

    def _tenant_format(self, tenant: str | None) -> None:
        if tenant is None or GUID_RE.fullmatch(tenant) or DOMAIN.match(tenant):
            return
        if tenant.lower() in (*TENANTLESS, "consumers", "adfs"):
            return
        self.fail(
            "tenant",
            f"tenant {tenant!r} is neither a directory (tenant) ID nor a domain.",
            "Use the GUID from Entra ID > Overview > Tenant ID, or a domain such as "
            "contoso.onmicrosoft.com.",
        )

    def _grant(self) -> str | None:
        v = self.values
        given = v["grant"]
        if given is not None:
            if given in GRANTS:
                self.grant_reason = f"The settings choose grant {given}."
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
            self.grant_reason = (
                "An access token is given: it is used as it is (access-token flow)"
                + (", and the refresh token renews it." if v["refresh_token"] else ".")
            )
            return "access_token"
        if v["refresh_token"]:
            self.grant_reason = "A refresh token is given: it is redeemed (refresh-token grant)."
            return "refresh_token"
        if v["client_secret"]:
            if _user_scope(v["scope"]):
                self.grant_reason = (
                    "A client secret and a user scope are given, no tokens: a user signs in "
                    "in the browser with the confidential app (authorization code, as the "
                    "vendor's Configuration Manager does)."
                )
                return "auth_code"
            self.grant_reason = (
                "A client secret is given without a user scope: the app signs in as itself "
                "(client credentials)."
            )
            return "client_credentials"
        self.grant_reason = "No secret and no token are given: a user signs in with a device code."
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
            if tenant.lower() in TENANTLESS:
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
        self, svc: ServiceURL | None, version: str, grant: str | None
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
            self.notes.append(
                "scope is not used: a v1 endpoint (/oauth2/token) takes the resource, "
                f"{resource}, derived from service_url."
            )
            return default
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
        if parts.scheme == "http" and host in LOOPBACK:
            return
        self.fail(
            "redirect_uri",
            f"redirect_uri {uri} is not usable: http is allowed only for localhost and "
            "127.0.0.1, anything else must be https.",
            "Use http://localhost (registered in your app under Mobile and desktop "
            "applications) or leave redirect_uri out.",
        )


def _user_scope(scope: str | None) -> bool:
    """True when `scope` asks for a signed-in user (anything but `<resource>/.default`)."""
    items = (scope or "").split()
    return bool(items) and not all(item.endswith("/.default") for item in items)


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
            problems[key] = str(unknown_field(key))
    analysis = Analysis(values, partial=partial)
    for name, err in analysis.scrubbed_problems().items():
        problems.setdefault(name, str(err))
    return problems
