"""The sandbox's Entra ID stand-in, its core: client authentication, grants -> tokens.

Routes (``{tenant}`` is the tenant GUID, ``contoso.onmicrosoft.com``, ``common`` or
``organizations``, as on ``login.microsoftonline.com``), served by the modules named:

```
GET       /{tenant}/v2.0/.well-known/openid-configuration   v2 metadata        _discovery
GET       /{tenant}/.well-known/openid-configuration        v1 metadata        _discovery
GET       /{tenant}/discovery/v2.0/keys, /{tenant}/discovery/keys   JWKS       _discovery
GET       /common/discovery/instance                        msal instance discovery
GET/POST  /{tenant}/oauth2/v2.0/authorize, /{tenant}/oauth2/authorize   sign-in page  _signin
POST      /{tenant}/oauth2/v2.0/devicecode, /{tenant}/oauth2/devicecode  _token_endpoint
POST      /{tenant}/oauth2/v2.0/token, /{tenant}/oauth2/token            _token_endpoint
GET/POST  /devicelogin, POST /devicelogin/confirm           where people enter a device code
POST      /_sandbox/...                                     sandbox-only controls  _control
```

The app itself is put together in `_app.py` (`create_identity_app`).  Errors have Entra's
JSON shape and AADSTS codes (reference/identity-protocol.md §1.8).
"""

from __future__ import annotations

import base64
import binascii
import hmac
import logging
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import unquote, urlsplit

from starlette.requests import Request
from starlette.responses import JSONResponse

from ._devicecode import DeviceCodes
from ._directory import TENANT_DOMAIN, TENANT_ID, App, User, app_by_id
from ._grants import (
    NO_STORE,
    AADError,
    AuthCode,
    Grant,
    RefreshTokens,
    missing_parameter,
    origin_of,
)
from ._options import SandboxOptions
from ._tokens import TokenService, client_info, loopback_aliases

__all__ = ["IdentityService"]

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
        #: The sandbox's clock (shared with the token service; `/_sandbox/clock` moves it).
        self.clock = tokens.clock
        self.device_codes = DeviceCodes(
            lifetime=options.device_code_lifetime,
            interval=options.device_code_interval,
            clock=self.clock,
        )
        self.refresh_tokens = RefreshTokens(options.refresh_token_lifetime, clock=self.clock)
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

    def authenticate(self, request: Request, form: Mapping[str, str]) -> tuple[App, bool]:
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

    def token_response(
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
