"""The sandbox's Entra ID stand-in: OIDC metadata, authorize, device code, token, keys.

Routes (``{tenant}`` is the tenant GUID, ``contoso.onmicrosoft.com``, ``common`` or
``organizations``, as on ``login.microsoftonline.com``):

```
GET       /{tenant}/v2.0/.well-known/openid-configuration   v2 metadata
GET       /{tenant}/.well-known/openid-configuration        v1 metadata
GET       /{tenant}/discovery/v2.0/keys, /{tenant}/discovery/keys   JWKS
GET       /common/discovery/instance                        msal instance discovery
GET/POST  /{tenant}/oauth2/v2.0/authorize, /{tenant}/oauth2/authorize   sign-in page
POST      /{tenant}/oauth2/v2.0/devicecode, /{tenant}/oauth2/devicecode
POST      /{tenant}/oauth2/v2.0/token, /{tenant}/oauth2/token
GET/POST  /devicelogin, POST /devicelogin/confirm           where people enter a device code
POST      /_sandbox/devicecode/approve   {"user_code": "...", "user": "alex"}   (sandbox only)
POST      /_sandbox/devicecode/decline   {"user_code": "..."}                   (sandbox only)
POST      /_sandbox/refresh-tokens/revoke  {"user": "alex"} or {}               (sandbox only)
POST      /_sandbox/reset                re-seed the Web API's data             (sandbox only)
```

Errors have Entra's JSON shape and AADSTS codes (reference/identity-protocol.md §1.8).
Sandbox-only endpoints take JSON bodies only, so a web page cannot call them cross-site.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import unquote, urlsplit

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from . import _pages
from ._devicecode import DeviceCodes
from ._directory import TENANT_DOMAIN, TENANT_ID, USERS, App, User, app_by_id, user_by_name
from ._grants import (
    NO_STORE,
    AADError,
    AuthCode,
    Grant,
    RefreshTokens,
    aad_error_response,
    missing_parameter,
    origin_of,
    resource_on_v2,
)
from ._options import SandboxOptions
from ._signin import SignInPages
from ._tokens import TokenService, client_info, loopback_aliases

__all__ = ["IdentityService", "create_identity_app"]

logger = logging.getLogger("d365nb.sandbox")

_RESERVED_SCOPES = ("openid", "profile", "offline_access", "email")
_DEVICE_GRANTS = ("urn:ietf:params:oauth:grant-type:device_code", "device_code")
_DELEGATED_PERMISSION = "user_impersonation"


class IdentityService:
    """State and request handlers of the token service.

    **Parameters:**

    * **options** - the sandbox's knobs (token lifetimes, device codes, auto-approve).
    * **base_url** - the sandbox's origin (the Web API resource).
    * **tokens** - signs the tokens.
    * **reset_data** - re-seeds the Web API's data; returns False when there is none.
    """

    def __init__(
        self,
        options: SandboxOptions,
        *,
        base_url: str,
        tokens: TokenService,
        reset_data: Callable[[], bool] = lambda: False,
    ) -> None:
        self.options = options
        self.base_url = base_url.rstrip("/")
        self.tokens = tokens
        self.reset_data = reset_data
        self.device_codes = DeviceCodes(
            lifetime=options.device_code_lifetime, interval=options.device_code_interval
        )
        self.refresh_tokens = RefreshTokens(options.refresh_token_lifetime)
        # Authorization codes handed out by the sign-in page, redeemed at the token endpoint.
        self.codes: dict[str, AuthCode] = {}

    # -- common checks

    @staticmethod
    def tenant_kind(request: Request) -> str:
        """`specific` or `multi` for the path's tenant; AADSTS90002 for others."""
        tenant = request.path_params["tenant"]
        if tenant.lower() in (TENANT_ID, TENANT_DOMAIN):
            return "specific"
        if tenant.lower() in ("common", "organizations"):
            return "multi"
        raise AADError(
            "invalid_tenant",
            90002,
            f"Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID "
            "and are signing into the correct cloud. The sandbox's tenant is "
            f"'{TENANT_ID}' ({TENANT_DOMAIN}).",
        )

    def _resources(self, request: Request) -> set[str]:
        found = {*loopback_aliases(self.base_url), *loopback_aliases(origin_of(request))}
        if self.options.fno:  # the F&O environment's resource, <origin>/fno (`_fno_app.py`)
            found |= {f"{origin}/fno" for origin in found}
        return found

    def _check_resource(self, request: Request, resource: str) -> None:
        if resource.rstrip("/") not in self._resources(request):
            raise AADError(
                "invalid_resource",
                500011,
                f"The resource principal named {resource} was not found in the tenant named "
                f"{TENANT_DOMAIN}. This can happen if the application has not been installed "
                f"by the administrator of the tenant. The sandbox's resource is {self.base_url}.",
            )

    @staticmethod
    def lookup_app(client_id: str | None) -> App:
        if not client_id:
            raise missing_parameter("client_id")
        app = app_by_id(client_id)
        if app is None:
            raise AADError(
                "unauthorized_client",
                700016,
                f"Application with identifier '{client_id}' was not found in the directory "
                f"'{TENANT_DOMAIN}'. This can happen if the application has not been "
                "installed by the administrator of the tenant or consented to by any user in "
                "the tenant. You may have sent your authentication request to the wrong tenant.",
            )
        return app

    def _authenticate(self, request: Request, form: Mapping[str, str]) -> tuple[App, bool]:
        """The calling app, and whether it proved itself with a secret."""
        client_id = form.get("client_id")
        secret = form.get("client_secret")
        header = request.headers.get("authorization", "")
        if header.lower().startswith("basic "):
            try:
                decoded = base64.b64decode(header[6:].strip(), validate=True).decode()
                basic_id, _, basic_secret = decoded.partition(":")
            except (binascii.Error, UnicodeDecodeError):
                raise AADError(
                    "invalid_client", 7000215, "Invalid client secret provided.", status=401
                ) from None
            client_id = client_id or unquote(basic_id)
            if unquote(basic_id) != client_id:
                raise AADError(
                    "invalid_request",
                    50027,
                    "The client_id in the Authorization header does not match the body's.",
                )
            secret = unquote(basic_secret)
        app = self.lookup_app(client_id)
        if app.public:
            if secret or form.get("client_assertion"):
                raise AADError(
                    "invalid_client",
                    700025,
                    "Client is public so neither 'client_assertion' nor 'client_secret' "
                    "should be presented.",
                    status=401,
                )
            return app, False
        if not secret:
            raise AADError(
                "invalid_client",
                7000218,
                "The request body must contain the following parameter: 'client_assertion' "
                "or 'client_secret'.",
                status=401,
            )
        if app.secret is None or not hmac.compare_digest(secret.encode(), app.secret.encode()):
            raise AADError(
                "invalid_client",
                7000215,
                "Invalid client secret provided. Ensure the secret being sent in the request "
                "is the client secret value, not the client secret ID, for a secret added to "
                f"app '{app.client_id}'.",
                status=401,
            )
        return app, True

    def scope_grant(self, request: Request, scope: str | None, *, app_only: bool = False) -> Grant:
        """The grant a v2 `scope` asks for (AADSTS70011 / 500011 when it is not valid)."""
        items = list(dict.fromkeys((scope or "").split()))
        if not items:
            raise missing_parameter("scope")
        reserved = [s for s in items if s.lower() in _RESERVED_SCOPES]
        by_resource: dict[str, list[str]] = {}
        for item in items:
            if item in reserved:
                continue
            resource, sep, permission = item.rpartition("/")
            if not sep or "://" not in resource or not urlsplit(resource).hostname:
                raise AADError(
                    "invalid_scope",
                    70011,
                    f"The provided value for the input parameter 'scope' is not valid. The "
                    f"scope '{item}' does not exist. Ask for '{self.base_url}/"
                    f"{_DELEGATED_PERMISSION}' (delegated) or '{self.base_url}/.default'.",
                )
            by_resource.setdefault(resource, []).append(permission)
        if app_only:
            if reserved or len(items) != 1 or not items[0].endswith("/.default"):
                raise AADError(
                    "invalid_scope",
                    1002012,
                    f"The provided value for scope {scope} is not valid. Client credential "
                    "flows must have a scope value with /.default suffixed to the resource "
                    "identifier (application ID URI).",
                )
        if len(by_resource) != 1:
            text = "asks for no resource" if not by_resource else "spans more than one resource"
            raise AADError(
                "invalid_scope",
                70011,
                f"The provided value for the input parameter 'scope' is not valid: it {text}. "
                f"Ask for exactly one resource, e.g. '{self.base_url}/{_DELEGATED_PERMISSION}'.",
            )
        ((resource, permissions),) = by_resource.items()
        self._check_resource(request, resource)
        for permission in permissions:
            if permission not in (".default", _DELEGATED_PERMISSION):
                raise AADError(
                    "invalid_scope",
                    70011,
                    f"The provided value for the input parameter 'scope' is not valid. The "
                    f"scope '{resource}/{permission}' does not exist; the sandbox's resource "
                    f"offers '{_DELEGATED_PERMISSION}' and '.default'.",
                )
        return Grant(
            resource=resource,
            scopes=tuple(i for i in items if i not in reserved),
            permissions=() if app_only else (_DELEGATED_PERMISSION,),
            reserved=tuple(s.lower() for s in reserved),
        )

    def resource_grant(
        self, request: Request, resource: str | None, scope: str | None, *, app_only: bool = False
    ) -> Grant:
        """The grant a v1 `resource=` request asks for."""
        if not resource:
            raise missing_parameter("resource")
        self._check_resource(request, resource)
        reserved: tuple[str, ...] = ()
        if not app_only:
            wants_openid = "openid" in (scope or "").split()
            reserved = ("openid", "offline_access") if wants_openid else ("offline_access",)
        return Grant(
            resource=resource,
            scopes=(),
            permissions=() if app_only else (_DELEGATED_PERMISSION,),
            reserved=reserved,
        )

    # -- issuing

    def _token_response(
        self,
        request: Request,
        *,
        version: str,
        app: App,
        user: User | None,
        grant: Grant,
        form: Mapping[str, str],
        authenticated: bool,
        nonce: str | None = None,
    ) -> JSONResponse:
        origin = origin_of(request)
        lifetime = self.options.access_token_lifetime
        roles = app.roles if user is None else ()
        access, exp = self.tokens.issue_access_token(
            audience=grant.resource,
            app=app,
            user=user,
            scopes=grant.permissions,
            roles=roles,
            lifetime=lifetime,
            origin=origin,
            authenticated_with_secret=authenticated,
        )
        body: dict[str, Any] = {"token_type": "Bearer"}
        if user is not None:
            body["scope"] = (
                grant.response_scope if version == "2.0" else " ".join(grant.permissions)
            )
        body.update({"expires_in": lifetime, "ext_expires_in": lifetime})
        if version == "1.0":
            body.update(
                {
                    "expires_on": exp,
                    "not_before": exp - lifetime,
                    "resource": grant.resource,
                }
            )
        body["access_token"] = access
        if user is not None:
            if "offline_access" in grant.reserved:
                body["refresh_token"] = self.refresh_tokens.issue(app=app, user=user, grant=grant)
            if "openid" in grant.reserved or version == "1.0":
                body["id_token"] = self.tokens.issue_id_token(
                    app=app,
                    user=user,
                    version=version,
                    nonce=nonce,
                    lifetime=max(lifetime, 3600),
                    origin=origin,
                )
            if form.get("client_info") == "1":
                body["client_info"] = client_info(user)
        if version == "1.0":
            # v1 answers numbers as strings (reference/identity-protocol.md §1.5).
            body = {k: str(v) if isinstance(v, int) else v for k, v in body.items()}
        return JSONResponse(body, headers=NO_STORE)

    # -- endpoints: metadata and keys

    async def openid_configuration(self, request: Request) -> Response:
        version = "2.0" if "/v2.0/" in request.url.path else "1.0"
        try:
            kind = self.tenant_kind(request)
        except AADError as exc:
            return aad_error_response(request, exc)
        origin = origin_of(request)
        tenant = TENANT_ID if kind == "specific" else request.path_params["tenant"].lower()
        issuer_tenant = TENANT_ID if kind == "specific" else "{tenantid}"
        base = f"{origin}/{tenant}"
        if version == "2.0":
            oauth, keys = f"{base}/oauth2/v2.0", f"{base}/discovery/v2.0/keys"
            issuer = f"{origin}/{issuer_tenant}/v2.0"
        else:
            oauth, keys = f"{base}/oauth2", f"{origin}/common/discovery/keys"
            issuer = f"{origin}/{issuer_tenant}/"
        document = {
            "token_endpoint": f"{oauth}/token",
            "token_endpoint_auth_methods_supported": [
                "client_secret_post",
                "private_key_jwt",
                "client_secret_basic",
            ],
            "jwks_uri": keys,
            "response_modes_supported": ["query", "fragment", "form_post"],
            "subject_types_supported": ["pairwise"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
            "scopes_supported": ["openid", "profile", "email", "offline_access"],
            "issuer": issuer,
            "request_uri_parameter_supported": False,
            "authorization_endpoint": f"{oauth}/authorize",
            "device_authorization_endpoint": f"{oauth}/devicecode",
            "http_logout_supported": True,
            "frontchannel_logout_supported": True,
            "end_session_endpoint": f"{oauth}/logout",
            "claims_supported": [
                "sub",
                "iss",
                "aud",
                "exp",
                "iat",
                "auth_time",
                "acr",
                "nonce",
                "preferred_username",
                "name",
                "tid",
                "ver",
                "at_hash",
                "c_hash",
                "email",
            ],  # fmt: skip
            "tenant_region_scope": "NA",
            "cloud_instance_name": urlsplit(origin).hostname,
            "cloud_graph_host_name": "graph.windows.net",
            "msgraph_host": "graph.microsoft.com",
        }
        return JSONResponse(document)

    async def keys(self, request: Request) -> Response:
        try:
            self.tenant_kind(request)
        except AADError as exc:
            return aad_error_response(request, exc)
        return JSONResponse(self.tokens.jwks())

    async def instance_discovery(self, request: Request) -> Response:
        origin = origin_of(request)
        endpoint = request.query_params.get("authorization_endpoint", "")
        segments = urlsplit(endpoint).path.strip("/").split("/")
        tenant = segments[0] if segments and segments[0] else "common"
        hosts = [urlsplit(a).netloc for a in loopback_aliases(origin)]
        return JSONResponse(
            {
                "tenant_discovery_endpoint": (
                    f"{origin}/{tenant}/v2.0/.well-known/openid-configuration"
                ),
                "api-version": "1.1",
                "metadata": [
                    {"preferred_network": hosts[0], "preferred_cache": hosts[0], "aliases": hosts}
                ],
            }
        )

    # -- endpoints: device code

    async def devicecode(self, request: Request) -> Response:
        version = "2.0" if "/v2.0/" in request.url.path else "1.0"
        try:
            self.tenant_kind(request)
            async with request.form() as raw:
                form = {k: str(v) for k, v in raw.items()}
            if version == "2.0" and "resource" in form:
                raise resource_on_v2()
            app = self.lookup_app(form.get("client_id"))
            if version == "2.0":
                grant = self.scope_grant(request, form.get("scope"))
            else:
                grant = self.resource_grant(request, form.get("resource"), form.get("scope"))
        except AADError as exc:
            return aad_error_response(request, exc)
        entry = self.device_codes.create(app=app, grant=grant, version=version)
        uri = f"{origin_of(request)}/devicelogin"
        logger.info("device code for %s: user code %s", app.name, entry.user_code)
        if self.options.auto_approve:
            self.device_codes.approve(entry.user_code, USERS[0])
        message = (
            f"To sign in, use a web browser to open the page {uri} and enter the code "
            f"{entry.user_code} to authenticate."
        )
        if version == "2.0":
            body: dict[str, Any] = {
                "user_code": entry.user_code,
                "device_code": entry.device_code,
                "verification_uri": uri,
                "expires_in": self.options.device_code_lifetime,
                "interval": entry.interval,
                "message": message,
            }
        else:
            body = {
                "user_code": entry.user_code,
                "device_code": entry.device_code,
                "verification_url": uri,
                "expires_in": str(self.options.device_code_lifetime),
                "interval": str(entry.interval),
                "message": message,
            }
        return JSONResponse(body, headers=NO_STORE)

    # -- endpoints: token

    async def token(self, request: Request) -> Response:
        version = "2.0" if "/v2.0/" in request.url.path else "1.0"
        try:
            kind = self.tenant_kind(request)
            async with request.form() as raw:
                form = {k: str(v) for k, v in raw.items()}
            if version == "2.0" and "resource" in form:
                raise resource_on_v2()
            grant_type = form.get("grant_type")
            if not grant_type:
                raise missing_parameter("grant_type")
            if grant_type == "client_credentials" and kind == "multi":
                raise AADError(
                    "invalid_request",
                    50059,
                    "No tenant-identifying information found in either the request or implied "
                    "by any provided credentials. Use the tenant's authority "
                    f"(/{TENANT_ID}) for client credentials.",
                )
            app, authenticated = self._authenticate(request, form)
            if grant_type == "client_credentials":
                return self._client_credentials(request, version, app, authenticated, form)
            if grant_type == "authorization_code":
                return self._authorization_code(request, version, app, authenticated, form)
            if grant_type in _DEVICE_GRANTS:
                return self._device_code(request, version, app, authenticated, form)
            if grant_type == "refresh_token":
                return self._refresh_token(request, version, app, authenticated, form)
            raise AADError(
                "unsupported_grant_type",
                70003,
                f"The app requested an unsupported grant type '{grant_type}'.",
            )
        except AADError as exc:
            return aad_error_response(request, exc)

    def _client_credentials(
        self,
        request: Request,
        version: str,
        app: App,
        authenticated: bool,
        form: Mapping[str, str],
    ) -> Response:
        if not authenticated:
            raise AADError(
                "invalid_client",
                7000218,
                "The request body must contain the following parameter: 'client_assertion' "
                "or 'client_secret'.",
                status=401,
            )
        if version == "2.0":
            grant = self.scope_grant(request, form.get("scope"), app_only=True)
        else:
            grant = self.resource_grant(request, form.get("resource"), None, app_only=True)
        return self._token_response(
            request,
            version=version,
            app=app,
            user=None,
            grant=grant,
            form=form,
            authenticated=True,
        )

    def _authorization_code(
        self,
        request: Request,
        version: str,
        app: App,
        authenticated: bool,
        form: Mapping[str, str],
    ) -> Response:
        code = form.get("code")
        if not code:
            raise missing_parameter("code")
        entry = self.codes.get(code)
        if entry is None or time.time() >= entry.expires_at:
            raise AADError(
                "invalid_grant",
                70008,
                "The provided authorization code or refresh token has expired due to "
                "inactivity. Send a new interactive authorization request for this user and "
                "resource.",
            )
        if entry.used:
            raise AADError(
                "invalid_grant",
                54005,
                "OAuth2 Authorization code was already redeemed, please retry with a new valid "
                "code or use an existing refresh token.",
            )
        entry.used = True
        if entry.app.client_id != app.client_id:
            raise AADError(
                "invalid_grant",
                70000,
                "Provided grant is invalid or malformed: the code was issued to another app.",
            )
        redirect_uri = form.get("redirect_uri", "")
        if redirect_uri != entry.redirect_uri:
            # [UNVERIFIED] the `error` value; the AADSTS code is the documented one.
            raise AADError(
                "invalid_grant",
                500112,
                f"The reply address '{redirect_uri}' does not match the reply address "
                f"'{entry.redirect_uri}' provided when requesting Authorization code.",
            )
        if entry.challenge is not None:
            verifier = form.get("code_verifier", "")
            if entry.method == "S256":
                digest = hashlib.sha256(verifier.encode("ascii", "replace")).digest()
                computed = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
            else:
                computed = verifier
            if not verifier or not hmac.compare_digest(computed, entry.challenge):
                raise AADError(
                    "invalid_grant",
                    501481,
                    "The Code_Verifier does not match the code_challenge supplied in the "
                    "authorization request.",
                )
        return self._token_response(
            request,
            version=version,
            app=app,
            user=entry.user,
            grant=entry.grant,
            form=form,
            authenticated=authenticated,
            nonce=entry.nonce,
        )

    def _device_code(
        self,
        request: Request,
        version: str,
        app: App,
        authenticated: bool,
        form: Mapping[str, str],
    ) -> Response:
        device_code = form.get("device_code") or form.get("code")
        if not device_code:
            raise missing_parameter("device_code")
        outcome, entry = self.device_codes.poll(device_code)
        if entry is not None and entry.app.client_id != app.client_id:
            outcome = "unknown"
        if outcome == "unknown":
            raise AADError(
                "bad_verification_code",
                70018,
                "The provided value for the input parameter 'device_code' is not valid.",
            )
        if outcome == "expired":
            raise AADError(
                "expired_token" if version == "2.0" else "code_expired",
                70020,
                "The provided value for the input parameter 'device_code' is not valid. This "
                "device code has expired.",
            )
        if outcome == "declined":
            # [UNVERIFIED] the AADSTS code Entra pairs with authorization_declined.
            raise AADError(
                "authorization_declined",
                65004,
                "User declined to consent to access the app.",
            )
        if outcome == "pending":
            raise AADError(
                "authorization_pending",
                70016,
                "OAuth 2.0 device flow error. Authorization is pending. Continue polling.",
            )
        assert entry is not None
        if outcome == "slow_down":
            # [UNVERIFIED] Entra rarely sends slow_down; the code and text are our choice.
            raise AADError(
                "slow_down",
                70016,
                "OAuth 2.0 device flow error. Polling too fast: wait at least "
                f"{entry.interval} seconds between requests.",
            )
        assert entry.user is not None and isinstance(entry.grant, Grant)
        return self._token_response(
            request,
            version=version,
            app=app,
            user=entry.user,
            grant=entry.grant,
            form=form,
            authenticated=authenticated,
        )

    def _refresh_token(
        self,
        request: Request,
        version: str,
        app: App,
        authenticated: bool,
        form: Mapping[str, str],
    ) -> Response:
        token = form.get("refresh_token")
        if not token:
            raise missing_parameter("refresh_token")
        entry = self.refresh_tokens.redeem(token)
        if entry.app.client_id != app.client_id:
            raise AADError(
                "invalid_grant",
                70000,
                "Provided grant is invalid or malformed: the refresh token was issued to "
                "another app.",
            )
        if version == "2.0":
            grant = self.scope_grant(request, form["scope"]) if form.get("scope") else entry.grant
        else:
            resource = form.get("resource") or entry.grant.resource
            grant = self.resource_grant(request, resource, form.get("scope"))
        if "offline_access" not in grant.reserved:
            # Entra keeps handing out refresh tokens to a client that already holds one.
            grant = Grant(
                resource=grant.resource,
                scopes=grant.scopes,
                permissions=grant.permissions,
                reserved=(*grant.reserved, "offline_access"),
            )
        return self._token_response(
            request,
            version=version,
            app=app,
            user=entry.user,
            grant=grant,
            form=form,
            authenticated=authenticated,
        )

    # -- endpoints: authorize (sign-in page)

    async def _json_body(self, request: Request) -> dict[str, Any]:
        if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
            raise _ControlError(415, "Send a JSON body (Content-Type: application/json).")
        try:
            body = await request.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise _ControlError(400, "The body must be a JSON object.")
        return body

    @staticmethod
    def _user(name: Any) -> User:
        try:
            return user_by_name(str(name))
        except KeyError:
            names = ", ".join(u.upn.split("@")[0] for u in USERS)
            raise _ControlError(400, f"Unknown user {name!r}.", f"Use one of: {names}.") from None

    async def approve(self, request: Request) -> Response:
        try:
            body = await self._json_body(request)
            user = self._user(body.get("user") or USERS[0].upn)
            user_code = str(body.get("user_code", ""))
            entry = self.device_codes.approve(user_code, user)
            if entry is None:
                raise _ControlError(
                    404,
                    f"No pending device code {user_code!r}.",
                    "Pass the user_code of a flow started in the last "
                    f"{self.options.device_code_lifetime} seconds and not yet answered.",
                )
        except _ControlError as exc:
            return exc.response()
        logger.info("device code %s approved as %s", entry.user_code, user.upn)
        return JSONResponse({"status": "approved", "user_code": entry.user_code, "user": user.upn})

    async def decline(self, request: Request) -> Response:
        try:
            body = await self._json_body(request)
            user_code = str(body.get("user_code", ""))
            entry = self.device_codes.decline(user_code)
            if entry is None:
                raise _ControlError(404, f"No pending device code {user_code!r}.")
        except _ControlError as exc:
            return exc.response()
        return JSONResponse({"status": "declined", "user_code": entry.user_code})

    async def revoke(self, request: Request) -> Response:
        try:
            body = await self._json_body(request)
            user = self._user(body["user"]) if body.get("user") else None
        except _ControlError as exc:
            return exc.response()
        return JSONResponse({"revoked": self.refresh_tokens.revoke(user)})

    async def reset(self, request: Request) -> Response:
        try:
            await self._json_body(request)
        except _ControlError as exc:
            return exc.response()
        return JSONResponse({"reset": self.reset_data()})

    async def home(self, request: Request) -> Response:
        from ._server import sandbox_info

        info = sandbox_info(origin_of(request), "(see the sandbox's start-up output)")
        info.pop("client_secret")
        return HTMLResponse(_pages.home_page(info))

    async def error(self, request: Request) -> Response:
        code = request.query_params.get("code", "")
        text = "See reference/identity-protocol.md for what this code means."
        return HTMLResponse(_pages.error_page(int(code) if code.isdigit() else 0, text))


class _ControlError(Exception):
    def __init__(self, status: int, message: str, hint: str | None = None) -> None:
        self.status = status
        self.message = message
        self.hint = hint
        super().__init__(message)

    def response(self) -> JSONResponse:
        body = {"message": self.message}
        if self.hint:
            body["hint"] = self.hint
        return JSONResponse(body, status_code=self.status)


def create_identity_app(
    options: SandboxOptions,
    *,
    base_url: str,
    tokens: TokenService,
    reset_data: Callable[[], bool] = lambda: False,
) -> Starlette:
    """The identity half of the sandbox as a Starlette app (`app.state.identity`).

    **Parameters:**

    * **options** - the sandbox's knobs.
    * **base_url** - the sandbox's origin (the Web API resource).
    * **tokens** - the token service that signs the tokens.
    * **reset_data** - re-seeds the Web API's data (for ``POST /_sandbox/reset``).
    """
    service = IdentityService(options, base_url=base_url, tokens=tokens, reset_data=reset_data)
    pages = SignInPages(service)
    routes = [
        Route("/", service.home),
        Route("/error", service.error),
        Route("/devicelogin", pages.device_login, methods=["GET", "POST"]),
        Route("/devicelogin/confirm", pages.device_confirm, methods=["POST"]),
        Route("/_sandbox/devicecode/approve", service.approve, methods=["POST"]),
        Route("/_sandbox/devicecode/decline", service.decline, methods=["POST"]),
        Route("/_sandbox/refresh-tokens/revoke", service.revoke, methods=["POST"]),
        Route("/_sandbox/reset", service.reset, methods=["POST"]),
        Route("/common/discovery/instance", service.instance_discovery),
        Route("/{tenant}/v2.0/.well-known/openid-configuration", service.openid_configuration),
        Route("/{tenant}/.well-known/openid-configuration", service.openid_configuration),
        Route("/{tenant}/discovery/v2.0/keys", service.keys),
        Route("/{tenant}/discovery/keys", service.keys),
        Route("/{tenant}/oauth2/v2.0/authorize", pages.authorize, methods=["GET", "POST"]),
        Route("/{tenant}/oauth2/authorize", pages.authorize, methods=["GET", "POST"]),
        Route("/{tenant}/oauth2/v2.0/logout", pages.logout, methods=["GET", "POST"]),
        Route("/{tenant}/oauth2/logout", pages.logout, methods=["GET", "POST"]),
        Route("/{tenant}/oauth2/v2.0/devicecode", service.devicecode, methods=["POST"]),
        Route("/{tenant}/oauth2/devicecode", service.devicecode, methods=["POST"]),
        Route("/{tenant}/oauth2/v2.0/token", service.token, methods=["POST"]),
        Route("/{tenant}/oauth2/token", service.token, methods=["POST"]),
    ]
    app = Starlette(routes=routes)
    app.state.identity = service
    return app
