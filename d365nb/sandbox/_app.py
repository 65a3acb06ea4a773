"""The sandbox's top-level ASGI app: `/api/...` to the Web API, the rest to identity.

`create_identity_app` puts the identity half together from its parts: the core
(`_identity`), metadata (`_discovery`), `/token` and `/devicecode` (`_token_endpoint`),
the sign-in pages (`_signin`) and the sandbox-only controls (`_control`).

`/_sandbox/knobs` (the Web API's run-time knobs) also goes to the Web API.

Dispatch is plain ASGI (the request's path is not rewritten), so each half sees the full
URL the client used.  Lifespan events are forwarded to both halves.
"""

from __future__ import annotations

import contextlib
import hmac
import importlib
import ipaddress
from collections.abc import Callable
from typing import Any

from starlette.applications import Starlette
from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from ._control import Control
from ._discovery import Discovery
from ._identity import IdentityService
from ._info import ADMIN_HEADER
from ._options import SandboxOptions
from ._signin import SignInPages
from ._token_endpoint import TokenEndpoint
from ._tokens import TokenService

__all__ = ["SandboxApp", "create_app", "create_identity_app"]

# The sandbox-only control routes (identity's and the Web API's knobs).
_CONTROL_PREFIX = "/_sandbox/"
# Paths served by the Web API half: the API itself and its run-time knobs (`_limits.py`).
_WEBAPI_PREFIXES = ("/api/", "/_sandbox/knobs")


class SandboxApp:
    """ASGI app routing `/api/` to `webapi` and everything else to `identity`.

    With an `admin_secret`, the control routes (`/_sandbox/...`) answer 401 to requests
    whose `X-D365NB-Sandbox-Secret` header does not carry it.
    """

    def __init__(
        self,
        *,
        identity: Starlette,
        webapi: Starlette | None,
        fno: Starlette | None = None,
        admin_secret: str | None = None,
    ) -> None:
        self.identity = identity
        self.webapi = webapi
        self.fno = fno  # the F&O environment under /fno (`_fno_app.py`), when on
        self._admin_secret = admin_secret

    def __repr__(self) -> str:
        return f"<SandboxApp protected={self._admin_secret is not None}>"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        path: str = scope.get("path", "")
        control = path.startswith((_CONTROL_PREFIX, "/fno" + _CONTROL_PREFIX))
        if control and not self._admitted(scope):
            response = JSONResponse(
                {
                    "message": "The sandbox's control routes need its admin secret.",
                    "hint": f"Send the header {ADMIN_HEADER} with the admin_secret of the JSON "
                    "line `d365nb sandbox` printed (Sandbox.knobs()/approve() do).",
                },
                status_code=401,
            )
            await response(scope, receive, send)
            return
        if self.fno is not None and (path == "/fno" or path.startswith("/fno/")):
            await self.fno(scope, receive, send)
            return
        if path.startswith(_WEBAPI_PREFIXES) or path == "/api":
            if self.webapi is None:
                response = JSONResponse(
                    {"error": {"code": "0x80040216", "message": "The Web API is not available."}},
                    status_code=503,
                )
                await response(scope, receive, send)
                return
            await self.webapi(scope, receive, send)
            return
        await self.identity(scope, receive, send)

    def _admitted(self, scope: Scope) -> bool:
        if self._admin_secret is None:
            return True
        sent = Headers(scope=scope).get(ADMIN_HEADER, "")
        return hmac.compare_digest(sent.encode(), self._admin_secret.encode())

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        message = await receive()
        assert message["type"] == "lifespan.startup"
        async with contextlib.AsyncExitStack() as stack:
            try:
                for app in (self.identity, self.webapi):
                    if app is not None:
                        await stack.enter_async_context(app.router.lifespan_context(app))
            except BaseException as exc:
                await send({"type": "lifespan.startup.failed", "message": repr(exc)})
                raise
            await send({"type": "lifespan.startup.complete"})
            message = await receive()
        await send({"type": "lifespan.shutdown.complete"})


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
    discovery = Discovery(service)
    endpoint = TokenEndpoint(service)
    control = Control(service)
    routes = [
        Route("/", pages.home),
        Route("/error", pages.error),
        Route("/devicelogin", pages.device_login, methods=["GET", "POST"]),
        Route("/devicelogin/confirm", pages.device_confirm, methods=["POST"]),
        Route("/_sandbox/devicecode/approve", control.approve, methods=["POST"]),
        Route("/_sandbox/devicecode/decline", control.decline, methods=["POST"]),
        Route("/_sandbox/refresh-tokens/revoke", control.revoke, methods=["POST"]),
        Route("/_sandbox/reset", control.reset, methods=["POST"]),
        Route("/_sandbox/clock", control.clock, methods=["GET", "POST"]),
        Route("/common/discovery/instance", discovery.instance_discovery),
        Route("/{tenant}/v2.0/.well-known/openid-configuration", discovery.openid_configuration),
        Route("/{tenant}/.well-known/openid-configuration", discovery.openid_configuration),
        Route("/{tenant}/discovery/v2.0/keys", discovery.keys),
        Route("/{tenant}/discovery/keys", discovery.keys),
        Route("/{tenant}/oauth2/v2.0/authorize", pages.authorize, methods=["GET", "POST"]),
        Route("/{tenant}/oauth2/authorize", pages.authorize, methods=["GET", "POST"]),
        Route("/{tenant}/oauth2/v2.0/logout", pages.logout, methods=["GET", "POST"]),
        Route("/{tenant}/oauth2/logout", pages.logout, methods=["GET", "POST"]),
        Route("/{tenant}/oauth2/v2.0/devicecode", endpoint.devicecode, methods=["POST"]),
        Route("/{tenant}/oauth2/devicecode", endpoint.devicecode, methods=["POST"]),
        Route("/{tenant}/oauth2/v2.0/token", endpoint.token, methods=["POST"]),
        Route("/{tenant}/oauth2/token", endpoint.token, methods=["POST"]),
    ]
    app = Starlette(routes=routes)
    app.state.identity = service
    return app


def _create_webapi(options: SandboxOptions, *, base_url: str, tokens: TokenService) -> Any:
    try:
        _webapi = importlib.import_module(f"{__package__}._webapi")
    except ModuleNotFoundError as exc:
        if exc.name != f"{__package__}._webapi":
            raise
        return None
    return _webapi.create_webapi(
        options,
        base_url=base_url,
        verify_token=lambda token: tokens.verify(token, audience=base_url),
    )


def is_loopback(host: str) -> bool:
    """True for an address only this machine can reach (``127.0.0.1``, ``::1``, ``localhost``)."""
    if host.strip("[]").lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def create_app(
    options: SandboxOptions,
    *,
    base_url: str,
    tokens: TokenService,
    admin_secret: str | None = None,
) -> SandboxApp:
    """The whole sandbox as one ASGI app.

    **Parameters:**

    * **options** - the sandbox's knobs.
    * **base_url** - its origin, ``https://127.0.0.1:PORT`` (the Web API resource).
    * **tokens** - the token service that signs and verifies tokens.
    * **admin_secret** - what the control routes require (see
      `SandboxOptions.require_admin_secret`: by default only off loopback).
    """
    webapi = _create_webapi(options, base_url=base_url, tokens=tokens)
    fno = None
    if options.fno:
        from ._fno_app import create_fno_app

        fno = create_fno_app(
            options, base_url=base_url, verify_token=lambda t, aud: tokens.verify(t, audience=aud)
        )

    def reset() -> bool:
        if fno is not None:
            fno.state.store.reset()
        if webapi is None:
            return fno is not None
        webapi.state.store.reset()
        return True

    identity = create_identity_app(options, base_url=base_url, tokens=tokens, reset_data=reset)
    required = options.require_admin_secret
    if required is None:
        required = not is_loopback(options.host)
    if required and not admin_secret:
        raise ValueError("The sandbox's control routes need an admin secret off loopback.")
    return SandboxApp(
        identity=identity,
        webapi=webapi,
        fno=fno,
        admin_secret=admin_secret if required else None,
    )
