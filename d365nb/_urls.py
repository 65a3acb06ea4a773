"""The shapes of the settings' URLs: the Service URL, the OAuth endpoints, the clouds.

Pure functions used by `Analysis`: each checks one URL, reports what is wrong to a
`Problems` sink (field, message, fix) and returns what the URL says, or `None`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final, Protocol
from urllib.parse import parse_qsl, urlsplit

from ._fields import DEFAULT_API_VERSION
from ._literals import GUID_RE

__all__ = [
    "DEFAULT_LOGIN",
    "DOMAIN",
    "LOOPBACK",
    "MAX_BATCH_GET_URL",
    "MAX_GET_URL",
    "TENANTLESS",
    "Endpoint",
    "Problems",
    "ServiceURL",
    "endpoints_agree",
    "parse_endpoint",
    "parse_service_url",
    "split_https",
]

DOMAIN = re.compile(r"^(?=.{1,253}$)[a-z0-9](?:[a-z0-9-]*[a-z0-9])?(?:\.[a-z0-9-]+)+$", re.I)
TENANTLESS = frozenset({"common", "organizations"})

# The longest GET URL the Web API takes, and the longest of a GET sent inside `$batch`
# [MS] WA/query/overview ("URL length limitations").
MAX_GET_URL = 32_768
MAX_BATCH_GET_URL = 65_536

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
LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})
# Sign-in origin when neither an endpoint nor a known cloud says otherwise.  On-premises
# (AD FS) users give token_uri explicitly.
DEFAULT_LOGIN = "https://login.microsoftonline.com"
_WEB_API_PATH = re.compile(r"^(?P<prefix>(?:/[^/]+)*?)/api/data/v(?P<version>[0-9.]+)/?$", re.I)
_WEB_API_SOMEWHERE = re.compile(r"/api/data/v[0-9]+(?:\.[0-9]+)*", re.I)
_ENDPOINT_PATH = re.compile(
    r"^/(?P<tenant>[^/]+)/oauth2/(?:(?P<v2>v2\.0)/)?(?P<kind>token|authorize|devicecode)/?$", re.I
)


class Problems(Protocol):
    """Where the checks report: `Analysis` is one."""

    def fail(self, name: str, message: str, hint: str) -> None: ...
    def missing(self, name: str, message: str, hint: str) -> None: ...
    def ok(self, *names: str) -> bool: ...


@dataclass(frozen=True)
class ServiceURL:
    """What a Service URL says."""

    resource: str  # https://org.crm.dynamics.com (no trailing slash)
    org_url: str  # resource + on-premises path prefix, if any
    api_base: str  # what /api/data/vX.Y/ is appended to
    version: str | None  # the version written in the URL
    login_base: str | None  # sign-in origin of this cloud; None: unknown
    service: str = "dataverse"  # "fno": a finance and operations environment (issue 23)


@dataclass(frozen=True)
class Endpoint:
    """What a token or authorize endpoint says."""

    origin: str
    tenant: str
    version: str  # "v1" | "v2"


def parse_service_url(
    sink: Problems, url: str | None, service: str | None = None
) -> ServiceURL | None:
    """Check the Service URL; return what it says (resource, Web API base, cloud).

    `service` is the `service=` setting: `"fno"` reads the URL as a finance and operations
    root (`_fno_service_url`), `"dataverse"` never does, `None` lets the host decide.
    """
    example = "https://contoso.crm.dynamics.com"
    if url is None:
        if sink.ok("service_url"):
            sink.missing(
                "service_url",
                "service_url is required.",
                f"Set it to your environment's address, e.g. {example} "
                "(Power Platform admin center > Environments > Environment URL).",
            )
        return None
    parsed = split_https(
        "service_url",
        url,
        sink,
        example=f"{example}/api/data/v9.2/",
        query_ok=True,
        fragment_ok=True,
    )
    if parsed is None:
        return None
    host, origin, path = parsed
    if host in _LOGIN_HOSTS:
        sink.fail(
            "service_url",
            f"service_url {url} is the sign-in service, not your Dynamics 365 environment.",
            f"Put the sign-in address in token_uri; service_url is your environment's "
            f"address, e.g. {example}.",
        )
        return None
    fno = _fno_service_url(sink, url, host, origin, path, service)
    if fno is not None or not sink.ok("service_url"):
        return fno
    web_api = _WEB_API_PATH.match(path)
    bare = path in ("", "/")
    extras = urlsplit(url)
    if (extras.query or extras.fragment) and (bare or web_api):
        sink.fail(
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
            return ServiceURL(
                resource=resource,
                org_url=resource,
                api_base=origin,
                version=web_api["version"] if web_api else None,
                login_base=f"https://{login}",
            )
        _not_service_url(sink, url, origin, path, suggestion=resource)
        return None
    if host in LOOPBACK:
        # The local sandbox serves the Web API and the sign-in service on one origin.
        login_base: str | None = origin
    else:
        login_base = None  # on-premises (AD FS) or unknown: give token_uri explicitly
    if web_api:
        prefix = web_api["prefix"].rstrip("/")
        return ServiceURL(
            resource=origin,
            org_url=origin + prefix,
            api_base=origin + prefix,
            version=web_api["version"],
            login_base=login_base,
        )
    if bare and host in LOOPBACK:
        return ServiceURL(origin, origin, origin, None, login_base)
    _not_service_url(sink, url, origin, path, suggestion=None)
    return None


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


def _fno_service_url(
    sink: Problems, url: str, host: str, origin: str, path: str, service: str | None
) -> ServiceURL | None:
    """A finance and operations environment, or None (Dataverse, or a problem reported).

    F&O when `service="fno"`, when the host is an F&O host, or when the path ends in
    `/data/` (never a Dataverse path).  The resource is the root without `/data/`.
    """
    data = _FNO_DATA_PATH.match(path)
    if data and data["prefix"].lower().endswith("/api"):
        data = None  # Dataverse's /api/data without its version: not F&O
    if service == "dataverse" or not (service == "fno" or _FNO_HOST.match(host) or data):
        return None
    if urlsplit(url).query or urlsplit(url).fragment:
        sink.fail(
            "service_url",
            f"service_url {url} has a query string or fragment.",
            "Remove everything from '?' or '#' on.",
        )
        return None
    root = origin + (data["prefix"] if data else path.rstrip("/"))
    login = origin if host in LOOPBACK else None
    if _FNO_HOST.match(host):
        login = DEFAULT_LOGIN
    return ServiceURL(root, root, root, None, login, service="fno")


def _not_service_url(
    sink: Problems, url: str, origin: str, path: str, suggestion: str | None
) -> None:
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
    sink.fail(
        "service_url",
        f"service_url {url} is neither an environment URL nor a Web API root.",
        hint,
    )


def parse_endpoint(sink: Problems, name: str, url: str | None) -> Endpoint | None:
    """Check `token_uri` or `auth_uri`; return its origin, tenant and v1/v2."""
    if url is None:
        return None
    kind = "token" if name == "token_uri" else "authorize"
    example = f"https://login.microsoftonline.com/<tenant>/oauth2/v2.0/{kind}"
    parsed = split_https(name, url, sink, example=example, query_ok=True)
    if parsed is None:
        return None
    _, origin, path = parsed
    match = _ENDPOINT_PATH.match(path)
    if match is None or match["kind"].lower() != kind:
        found = f" ({match['kind']} endpoint)" if match else ""
        sink.fail(
            name,
            f"{name} {url} is not an OAuth 2.0 {kind} endpoint{found}.",
            f"Use the {kind} endpoint from Entra ID > App registrations > Endpoints, "
            f"e.g. {example}.",
        )
        return None
    version = "v2" if match["v2"] else "v1"
    tenant = match["tenant"]
    if not (
        GUID_RE.fullmatch(tenant)
        or DOMAIN.match(tenant)
        or tenant.lower() in (*TENANTLESS, "consumers", "adfs")
    ):
        sink.fail(
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
            sink.fail(
                name,
                f"{name} passes ?resource= to a v2 endpoint, which rejects it (AADSTS901002).",
                "Remove the query; on v2 the scope (derived from service_url) names the resource.",
            )
            return None
        if version == "v2":
            sink.fail(
                name,
                f"{name} has a query string, which a v2 endpoint does not use.",
                "Remove everything from '?' on.",
            )
            return None
    return Endpoint(origin=origin, tenant=match["tenant"], version=version)


def endpoints_agree(sink: Problems, token: Endpoint, auth: Endpoint) -> None:
    """Complain when the two endpoints differ in version, host or tenant."""
    if token.version != auth.version:
        fixed = "/oauth2/v2.0/authorize" if token.version == "v2" else "/oauth2/authorize"
        sink.fail(
            "auth_uri",
            f"auth_uri is a {auth.version} endpoint but token_uri is {token.version}.",
            f"Use the same version for both: auth_uri ending in {fixed}.",
        )
    elif token.origin != auth.origin or token.tenant.lower() != auth.tenant.lower():
        sink.fail(
            "auth_uri",
            "auth_uri and token_uri point at different sign-in services or tenants.",
            f"Use {token.origin}/{token.tenant}/... for both.",
        )


def split_https(
    name: str,
    url: str,
    sink: Problems,
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
        sink.fail(name, f"{name} {url!r} is not a valid URL.", f"Use e.g. {example}")
        return None
    if parts.username is not None or parts.password is not None:
        sink.fail(
            name,
            f"{name} contains a user name or password before '@'.",
            "Remove it; credentials go in their own settings, never in the URL.",
        )
        return None
    if parts.scheme.lower() == "http":
        sink.fail(
            name,
            f"{name} {url} uses http; d365nb only sends credentials over https.",
            f"Use {'https' + url[4:]}",
        )
        return None
    if parts.scheme.lower() != "https" or not host:
        fixed = f" https://{url}" if "://" not in url and "." in url else f" e.g. {example}"
        sink.fail(name, f"{name} {url!r} is not an https URL.", f"Write it in full:{fixed}")
        return None
    if (parts.query and not query_ok) or (parts.fragment and not fragment_ok):
        sink.fail(
            name,
            f"{name} {url} has a query string or fragment.",
            "Remove everything from '?' or '#' on.",
        )
        return None
    netloc = f"[{host}]" if ":" in host else host
    if port is not None and port != 443:
        netloc += f":{port}"
    return host, f"https://{netloc}", parts.path
