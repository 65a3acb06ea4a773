"""The pages a person sees: the authorize sign-in page and the device login page.

The authorize page lists the seeded users; picking one and accepting sends the code back
to the app's redirect URI (a 302 for ``query``/``fragment``, an auto-posting form for
``form_post``).  The device login page takes the code a device shows and approves or
declines it as a chosen user.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Mapping
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from . import _pages
from ._directory import USERS, User, user_by_name
from ._grants import (
    NO_STORE,
    AADError,
    AuthCode,
    Grant,
    SignIn,
    origin_of,
    redirect_uri_matches,
    resource_on_v2,
)
from ._identity import IdentityService
from ._info import sandbox_info

__all__ = ["SignInPages"]

_CODE_LIFETIME = 600  # authorization codes live about 10 minutes
_SIGN_IN_LIFETIME = 900  # an open sign-in page stays usable this long


class SignInPages:
    """The HTML endpoints of the identity service.

    **Parameters:**

    * **service** - the identity service whose checks, codes and device codes they use.
    """

    def __init__(self, service: IdentityService) -> None:
        self.service = service
        self._sign_ins: dict[str, SignIn] = {}

    async def authorize(self, request: Request) -> Response:
        version = "2.0" if "/v2.0/" in request.url.path else "1.0"
        if request.method == "POST":
            async with request.form() as raw:
                form = {k: str(v) for k, v in raw.items()}
            if "request_id" in form:
                return self._sign_in_answer(request, form)
            params = form
        else:
            params = dict(request.query_params)
        try:
            self.service.tenant_kind(request)
            if version == "2.0" and "resource" in params:
                raise resource_on_v2()
            app = self.service.lookup_app(params.get("client_id"))
            if not app.redirect_uris:
                raise AADError(
                    "invalid_request",
                    500113,
                    "No reply address is registered for the application.",
                )
            redirect_uri = params.get("redirect_uri") or app.redirect_uris[0]
            if not any(redirect_uri_matches(redirect_uri, r) for r in app.redirect_uris):
                raise AADError(
                    "invalid_request",
                    50011,
                    f"The redirect URI '{redirect_uri}' specified in the request does not match "
                    "the redirect URIs configured for the application "
                    f"'{app.client_id}'. Make sure the redirect URI sent in the request matches "
                    f"one added to your application: {', '.join(app.redirect_uris)}.",
                )
        except AADError as exc:
            # Never redirect to an unverified address: show the error (RFC 6749 §4.1.2.1).
            return HTMLResponse(_pages.error_page(exc.code, exc.text), status_code=exc.status)
        response_mode = params.get("response_mode", "query")
        state = params.get("state")
        if response_mode not in ("query", "fragment", "form_post"):
            text = (
                f"AADSTS900125: The response_mode '{response_mode}' is not supported; use "
                "query, fragment or form_post."
            )
            fields = {"error": "invalid_request", "error_description": text}
            return self._redirect(redirect_uri, "query", fields, state)
        try:
            if params.get("response_type") != "code":
                raise AADError(
                    "unsupported_response_type",
                    700054,
                    "response_type 'code' is the only one the sandbox supports.",
                )
            if version == "2.0":
                grant = self.service.scope_grant(request, params.get("scope"))
            else:
                grant = self.service.resource_grant(
                    request, params.get("resource"), params.get("scope")
                )
            challenge = params.get("code_challenge")
            method = params.get("code_challenge_method", "plain")
            if challenge is not None and method not in ("S256", "plain"):
                raise AADError(
                    "invalid_request",
                    501491,
                    f"The code_challenge_method '{method}' is not supported; use S256.",
                )
            if params.get("prompt") == "none":
                raise AADError(
                    "login_required",
                    50058,
                    "A silent sign-in request was sent but no user is signed in.",
                )
        except AADError as exc:
            return self._redirect(
                redirect_uri,
                response_mode,
                {"error": exc.error, "error_description": f"AADSTS{exc.code}: {exc.text}"},
                state,
            )
        self._purge()
        request_id = secrets.token_urlsafe(24)
        self._sign_ins[request_id] = SignIn(
            app=app,
            grant=grant,
            redirect_uri=redirect_uri,
            response_mode=response_mode,
            state=state,
            nonce=params.get("nonce"),
            challenge=challenge,
            method=method,
            version=version,
            expires_at=self.service.clock() + _SIGN_IN_LIFETIME,
        )
        page = _pages.sign_in_page(
            action=request.url.path,
            request_id=request_id,
            app=app,
            resource=grant.resource,
            users=USERS,
            login_hint=params.get("login_hint"),
        )
        return HTMLResponse(page, headers=NO_STORE)

    def _sign_in_answer(self, request: Request, form: Mapping[str, str]) -> Response:
        sign_in = self._sign_ins.pop(form["request_id"], None)
        if sign_in is None or self.service.clock() >= sign_in.expires_at:
            return HTMLResponse(
                _pages.error_page(
                    9002313,
                    "This sign-in request is unknown or has expired. Start the sign-in again "
                    "from the app.",
                ),
                status_code=400,
            )
        if form.get("action") != "accept":
            return self._redirect(
                sign_in.redirect_uri,
                sign_in.response_mode,
                {
                    "error": "access_denied",
                    "error_description": (
                        "AADSTS65004: User declined to consent to access the app."
                    ),
                },
                sign_in.state,
            )
        try:
            user = user_by_name(form.get("user", ""))
        except KeyError:
            return HTMLResponse(
                _pages.error_page(50034, "The user account does not exist in the directory."),
                status_code=400,
            )
        code = secrets.token_urlsafe(48)
        self.service.codes[code] = AuthCode(
            app=sign_in.app,
            user=user,
            grant=sign_in.grant,
            redirect_uri=sign_in.redirect_uri,
            challenge=sign_in.challenge,
            method=sign_in.method,
            nonce=sign_in.nonce,
            version=sign_in.version,
            expires_at=self.service.clock() + _CODE_LIFETIME,
        )
        return self._redirect(
            sign_in.redirect_uri,
            sign_in.response_mode,
            {"code": code, "session_state": str(uuid.uuid4())},
            sign_in.state,
        )

    @staticmethod
    def _redirect(
        redirect_uri: str, response_mode: str, fields: Mapping[str, str], state: str | None
    ) -> Response:
        values = dict(fields)
        if state is not None:
            values["state"] = state
        if response_mode == "form_post":
            return HTMLResponse(_pages.form_post_page(redirect_uri, values), headers=NO_STORE)
        parts = urlsplit(redirect_uri)
        path = parts.path or "/"  # Entra adds the slash to a path-less reply address
        if response_mode == "fragment":
            target = urlunsplit(parts._replace(path=path, fragment=urlencode(values)))
        else:
            query = urlencode([*parse_qsl(parts.query), *values.items()])
            target = urlunsplit(parts._replace(path=path, query=query))
        return RedirectResponse(target, status_code=302, headers=NO_STORE)

    def _purge(self) -> None:
        now = self.service.clock()
        for key in [k for k, v in self._sign_ins.items() if now >= v.expires_at]:
            del self._sign_ins[key]
        for key in [k for k, v in self.service.codes.items() if now >= v.expires_at]:
            del self.service.codes[key]

    # -- endpoints: device login pages

    async def device_login(self, request: Request) -> Response:
        action = "/devicelogin"
        if request.method == "GET":
            code = request.query_params.get("code", "")
            return HTMLResponse(_pages.device_code_page(action=action, code=code))
        async with request.form() as raw:
            typed = str(raw.get("otc", ""))
        entry = self.service.device_codes.lookup(typed)
        if entry is None:
            page = _pages.device_code_page(
                action=action,
                code=typed,
                error="That code didn't work. Check the code and try again.",
            )
            return HTMLResponse(page)
        assert isinstance(entry.grant, Grant)
        page = _pages.device_confirm_page(
            action="/devicelogin/confirm",
            user_code=entry.user_code,
            app=entry.app,
            resource=entry.grant.resource,
            users=USERS,
        )
        return HTMLResponse(page, headers=NO_STORE)

    async def device_confirm(self, request: Request) -> Response:
        async with request.form() as raw:
            form = {k: str(v) for k, v in raw.items()}
        user_code = form.get("user_code", "")
        if form.get("action") == "approve":
            try:
                user: User | None = user_by_name(form.get("user", ""))
            except KeyError:
                user = None
            entry = self.service.device_codes.approve(user_code, user) if user else None
        else:
            user = None
            entry = self.service.device_codes.decline(user_code)
        if entry is None:
            page = _pages.device_code_page(
                action="/devicelogin",
                error="That code is no longer valid. Start the sign-in again on your device.",
            )
            return HTMLResponse(page)
        return HTMLResponse(
            _pages.device_done_page(approved=user is not None, app=entry.app, user=user)
        )

    # -- endpoints: sandbox-only controls and pages

    async def logout(self, request: Request) -> Response:
        """The end-session endpoint: the sandbox keeps no browser session, so just say so."""
        return HTMLResponse(_pages.signed_out_page())

    # -- the home and error pages

    async def home(self, request: Request) -> Response:
        info = sandbox_info(origin_of(request), "(see the sandbox's start-up output)").to_dict()
        info.pop("client_secret")
        return HTMLResponse(_pages.home_page(info))

    async def error(self, request: Request) -> Response:
        code = request.query_params.get("code", "")
        text = "See reference/identity-protocol.md for what this code means."
        return HTMLResponse(_pages.error_page(int(code) if code.isdigit() else 0, text))
