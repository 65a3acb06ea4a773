"""The identity service's metadata: OIDC discovery documents, JWKS, instance discovery.

```
GET /{tenant}/v2.0/.well-known/openid-configuration, /{tenant}/.well-known/openid-configuration
GET /{tenant}/discovery/v2.0/keys, /{tenant}/discovery/keys
GET /common/discovery/instance
```
"""

from __future__ import annotations

from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ._directory import TENANT_ID
from ._grants import AADError, aad_error_response, origin_of
from ._identity import IdentityService
from ._tokens import loopback_aliases

__all__ = ["Discovery"]


class Discovery:
    """The metadata endpoints of the identity service.

    **Parameters:**

    * **service** - the identity service (its tenant checks and signing keys).
    """

    def __init__(self, service: IdentityService) -> None:
        self.service = service

    # -- endpoints: metadata and keys

    async def openid_configuration(self, request: Request) -> Response:
        version = "2.0" if "/v2.0/" in request.url.path else "1.0"
        try:
            kind = self.service.tenant_kind(request)
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
            self.service.tenant_kind(request)
        except AADError as exc:
            return aad_error_response(request, exc)
        return JSONResponse(self.service.tokens.jwks())

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
