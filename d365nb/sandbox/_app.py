"""The sandbox's top-level ASGI app: `/api/...` to the Web API, the rest to identity.

`/_sandbox/knobs` (the Web API's run-time knobs) also goes to the Web API.

Dispatch is plain ASGI (the request's path is not rewritten), so each half sees the full
URL the client used.  Lifespan events are forwarded to both halves.
"""

from __future__ import annotations

import contextlib
import importlib
from typing import Any

from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.types import Receive, Scope, Send

from ._identity import create_identity_app
from ._options import SandboxOptions
from ._tokens import TokenService

__all__ = ["SandboxApp", "create_app"]

# Paths served by the Web API half: the API itself and its run-time knobs (`_limits.py`).
_WEBAPI_PREFIXES = ("/api/", "/_sandbox/knobs")


class SandboxApp:
    """ASGI app routing `/api/` to `webapi` and everything else to `identity`."""

    def __init__(
        self, *, identity: Starlette, webapi: Starlette | None, fno: Starlette | None = None
    ) -> None:
        self.identity = identity
        self.webapi = webapi
        self.fno = fno  # the F&O environment under /fno (`_fno_app.py`), when on

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        path: str = scope.get("path", "")
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


def create_app(options: SandboxOptions, *, base_url: str, tokens: TokenService) -> SandboxApp:
    """The whole sandbox as one ASGI app.

    **Parameters:**

    * **options** - the sandbox's knobs.
    * **base_url** - its origin, ``https://127.0.0.1:PORT`` (the Web API resource).
    * **tokens** - the token service that signs and verifies tokens.
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
    return SandboxApp(identity=identity, webapi=webapi, fno=fno)
