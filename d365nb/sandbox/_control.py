"""The sandbox-only control endpoints of the identity service.

```
POST /_sandbox/devicecode/approve    {"user_code": "...", "user": "alex"}
POST /_sandbox/devicecode/decline    {"user_code": "..."}
POST /_sandbox/refresh-tokens/revoke {"user": "alex"} or {}
POST /_sandbox/reset                 re-seed the Web API's data
GET  /_sandbox/clock                 {"offset": 0.0}: how far ahead the sandbox's clock runs
POST /_sandbox/clock                 {"offset": 3600} sets it, {"advance": 60} moves it on
```

They take JSON bodies only, so a web page cannot call them cross-site.
"""

from __future__ import annotations

import logging
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ._directory import USERS, User, user_by_name
from ._identity import IdentityService

__all__ = ["Control"]

logger = logging.getLogger("d365nb.sandbox")


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


def _seconds(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


class Control:
    """The `/_sandbox/*` endpoints of the identity service.

    **Parameters:**

    * **service** - the identity service whose device codes and refresh tokens they steer.
    """

    def __init__(self, service: IdentityService) -> None:
        self.service = service

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
            entry = self.service.device_codes.approve(user_code, user)
            if entry is None:
                raise _ControlError(
                    404,
                    f"No pending device code {user_code!r}.",
                    "Pass the user_code of a flow started in the last "
                    f"{self.service.options.device_code_lifetime} seconds and not yet answered.",
                )
        except _ControlError as exc:
            return exc.response()
        logger.info("device code %s approved as %s", entry.user_code, user.upn)
        return JSONResponse({"status": "approved", "user_code": entry.user_code, "user": user.upn})

    async def decline(self, request: Request) -> Response:
        try:
            body = await self._json_body(request)
            user_code = str(body.get("user_code", ""))
            entry = self.service.device_codes.decline(user_code)
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
        return JSONResponse({"revoked": self.service.refresh_tokens.revoke(user)})

    async def reset(self, request: Request) -> Response:
        try:
            await self._json_body(request)
        except _ControlError as exc:
            return exc.response()
        return JSONResponse({"reset": self.service.reset_data()})

    async def clock(self, request: Request) -> Response:
        clock = self.service.clock
        if request.method == "POST":
            try:
                body = await self._json_body(request)
                offset = body.get("offset", clock.offset)
                advance = body.get("advance", 0)
                numbers = (offset, advance)
                if not all(
                    isinstance(n, (int, float)) and not isinstance(n, bool) for n in numbers
                ):
                    raise _ControlError(
                        400,
                        "offset and advance must be numbers of seconds.",
                        'e.g. {"advance": 3600}',
                    )
            except _ControlError as exc:
                return exc.response()
            clock.offset = float(offset) + float(advance)
            logger.info("sandbox clock offset now %+g s", clock.offset)
        return JSONResponse({"offset": clock.offset})
