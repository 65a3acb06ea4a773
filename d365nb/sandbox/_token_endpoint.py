"""The identity service's `/token` endpoint (one method per grant) and `/devicecode`.

```
POST /{tenant}/oauth2/v2.0/devicecode, /{tenant}/oauth2/devicecode
POST /{tenant}/oauth2/v2.0/token, /{tenant}/oauth2/token
```
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
from collections.abc import Mapping
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ._directory import TENANT_ID, USERS, App
from ._grants import (
    NO_STORE,
    AADError,
    Grant,
    aad_error_response,
    missing_parameter,
    origin_of,
    resource_on_v2,
)
from ._identity import IdentityService

__all__ = ["TokenEndpoint"]

logger = logging.getLogger("d365nb.sandbox")

_DEVICE_GRANTS = ("urn:ietf:params:oauth:grant-type:device_code", "device_code")


class TokenEndpoint:
    """`/token` and `/devicecode` of the identity service.

    **Parameters:**

    * **service** - the identity service whose checks, codes and tokens they use.
    """

    def __init__(self, service: IdentityService) -> None:
        self.service = service

    # -- endpoints: device code

    async def devicecode(self, request: Request) -> Response:
        version = "2.0" if "/v2.0/" in request.url.path else "1.0"
        try:
            self.service.tenant_kind(request)
            async with request.form() as raw:
                form = {k: str(v) for k, v in raw.items()}
            if version == "2.0" and "resource" in form:
                raise resource_on_v2()
            app = self.service.lookup_app(form.get("client_id"))
            if version == "2.0":
                grant = self.service.scope_grant(request, form.get("scope"))
            else:
                grant = self.service.resource_grant(
                    request, form.get("resource"), form.get("scope")
                )
        except AADError as exc:
            return aad_error_response(request, exc)
        entry = self.service.device_codes.create(app=app, grant=grant, version=version)
        uri = f"{origin_of(request)}/devicelogin"
        logger.info("device code for %s: user code %s", app.name, entry.user_code)
        if self.service.options.auto_approve:
            self.service.device_codes.approve(entry.user_code, USERS[0])
        message = (
            f"To sign in, use a web browser to open the page {uri} and enter the code "
            f"{entry.user_code} to authenticate."
        )
        if version == "2.0":
            body: dict[str, Any] = {
                "user_code": entry.user_code,
                "device_code": entry.device_code,
                "verification_uri": uri,
                "expires_in": self.service.options.device_code_lifetime,
                "interval": entry.interval,
                "message": message,
            }
        else:
            body = {
                "user_code": entry.user_code,
                "device_code": entry.device_code,
                "verification_url": uri,
                "expires_in": str(self.service.options.device_code_lifetime),
                "interval": str(entry.interval),
                "message": message,
            }
        return JSONResponse(body, headers=NO_STORE)

    # -- endpoints: token

    async def token(self, request: Request) -> Response:
        version = "2.0" if "/v2.0/" in request.url.path else "1.0"
        try:
            kind = self.service.tenant_kind(request)
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
            app, authenticated = self.service.authenticate(request, form)
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
            grant = self.service.scope_grant(request, form.get("scope"), app_only=True)
        else:
            grant = self.service.resource_grant(request, form.get("resource"), None, app_only=True)
        return self.service.token_response(
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
        entry = self.service.codes.get(code)
        if entry is None or self.service.clock() >= entry.expires_at:
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
        return self.service.token_response(
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
        outcome, entry = self.service.device_codes.poll(device_code)
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
        return self.service.token_response(
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
        entry = self.service.refresh_tokens.redeem(token)
        if entry.app.client_id != app.client_id:
            raise AADError(
                "invalid_grant",
                70000,
                "Provided grant is invalid or malformed: the refresh token was issued to "
                "another app.",
            )
        if version == "2.0":
            grant = (
                self.service.scope_grant(request, form["scope"])
                if form.get("scope")
                else entry.grant
            )
        else:
            resource = form.get("resource") or entry.grant.resource
            grant = self.service.resource_grant(request, resource, form.get("scope"))
        if "offline_access" not in grant.reserved:
            # Entra keeps handing out refresh tokens to a client that already holds one.
            grant = Grant(
                resource=grant.resource,
                scopes=grant.scopes,
                permissions=grant.permissions,
                reserved=(*grant.reserved, "offline_access"),
            )
        return self.service.token_response(
            request,
            version=version,
            app=app,
            user=entry.user,
            grant=grant,
            form=form,
            authenticated=authenticated,
        )
