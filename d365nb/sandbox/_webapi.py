"""The sandbox's Dataverse Web API as a Starlette app (`/api/data/v9.0|v9.1|v9.2/...`).

Every request needs a bearer token for the sandbox's resource; the token's user (or the
application user bound to its app) becomes the caller.  The work runs in a worker thread
(SQLite and JSON encoding are blocking); the dispatcher lives in `_service.py`.  The app
is wrapped in `_limits.ServiceProtection` (throttling, latency, faults), whose run-time
knobs are served at `/_sandbox/knobs`.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from typing import Any

from anyio import to_thread
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount, Route

from .._collector import paused
from . import _directory as directory
from ._batch import run_batch
from ._errors import MAX_URL, ApiError, too_large, url_too_long
from ._exchange import Call, Caller, Reply, parse_prefer
from ._limits import ServiceProtection
from ._model import CURRENT_CATALOG
from ._options import SandboxOptions
from ._service import ENTITY_HEADER, Service
from ._store import Store

__all__ = ["create_webapi"]

_VERSIONS = ("v9.0", "v9.1", "v9.2")
_METHODS = ["GET", "POST", "PATCH", "PUT", "DELETE"]


def _caller(claims: Mapping[str, Any]) -> Caller | None:
    if claims.get("idtyp") == "app" or ("roles" in claims and "scp" not in claims):
        app = directory.app_by_id(str(claims.get("appid") or claims.get("azp") or ""))
        if app is None or app.application_user_id is None:
            return None
        return Caller(app.application_user_id, directory.ROOT_BUSINESS_UNIT_ID)
    oid = str(claims.get("oid", ""))
    for user in directory.USERS:
        if user.oid == oid:
            return Caller(user.systemuserid, user.business_unit_id, user.has_role)
    return None


def create_webapi(
    options: SandboxOptions,
    *,
    base_url: str,
    verify_token: Callable[[str], Mapping[str, Any]],
) -> Starlette:
    """The Web API app.

    **Parameters:**

    * **options** - the sandbox's knobs (`database`, `rows`, `seed`, `max_page_size`...).
    * **base_url** - the sandbox origin, ``https://127.0.0.1:PORT`` (the token audience).
    * **verify_token** - returns a raw bearer token's claims, or raises `TokenRejected`.

    `app.state.store` is the SQLite `Store` (`reset()` re-seeds it).
    """
    store = Store(options)
    service = Service(
        store,
        max_page_size=options.max_page_size,
        change_tracking_days=options.change_tracking_days,
    )
    challenge = (
        f"Bearer authorization_uri={base_url}/{directory.TENANT_ID}/oauth2/authorize, "
        f"resource_id={base_url}/"
    )

    def dispatch(call: Call) -> Reply:
        token = CURRENT_CATALOG.set(store.catalog)  # this sandbox's custom tables
        service.aggregate_limit = protection.options.aggregate_record_limit
        # No cycle collection while a request is answered: a page is a dict per row, a
        # bulk write a dict per target, and none form cycles; the collections their
        # allocations triggered walked them several times over.
        try:
            with paused():
                if call.path == "$batch" and call.method == "POST":
                    return run_batch(call, store, service.handle)
                return service.handle(call)
        finally:
            CURRENT_CATALOG.reset(token)

    async def endpoint(request: Request) -> Response:
        req_id = str(uuid.uuid4())
        version = request.path_params["version"]
        path = request.path_params.get("path", "")
        reply = await _answer(request, version, path)
        headers = [(k, v) for k, v in reply.headers if k.lower() != ENTITY_HEADER]
        headers += [
            ("OData-Version", "4.0"),
            ("REQ_ID", req_id),
            ("x-ms-service-request-id", req_id),
        ]
        response = Response(reply.body, status_code=reply.status)
        for name, value in headers:
            response.headers.append(name, value)
        return response

    async def _answer(request: Request, version: str, path: str) -> Reply:
        if version not in _VERSIONS:
            return Reply.json(
                404,
                {
                    "error": {
                        "code": "0x8006088a",
                        "message": (f"Resource not found for the segment '{version}'."),
                    }
                },
            )
        try:
            _check_size(request, options.max_request_bytes)
            body = await _read_body(request, options.max_request_bytes)
        except ApiError as exc:
            return Reply.json(exc.status, exc.body())
        auth = request.headers.get("authorization", "")
        scheme, _, token = auth.partition(" ")
        # [UNVERIFIED] the 401 body is empty, and a bad or expired token gets the same
        # challenge as a missing one.
        if scheme.lower() != "bearer" or not token.strip():
            return Reply(401, [("WWW-Authenticate", challenge)])
        try:
            claims = verify_token(token.strip())
        except Exception as exc:
            if type(exc).__name__ != "TokenRejected":
                raise
            return Reply(401, [("WWW-Authenticate", challenge)])
        caller = _caller(claims)
        if caller is None:
            return Reply.json(
                403,
                {
                    "error": {
                        "code": "0x80072560",
                        "message": ("The user is not a member of the organization."),
                    }
                },
            )
        call = Call(
            method=request.method,
            path=path,
            params=dict(request.query_params),
            headers={k: v for k, v in request.headers.items()},
            body=body,
            root=f"{base_url}/api/data/{version}/",
            caller=caller,
            prefer=parse_prefer(request.headers.getlist("prefer")),
            raw_query=request.url.query,
        )
        return await to_thread.run_sync(dispatch, call)

    inner = Starlette(
        routes=[
            Route("/api/data/{version}/{path:path}", endpoint, methods=_METHODS),
            Route("/api/data/{version}", endpoint, methods=_METHODS),
        ]
    )
    protection = ServiceProtection(inner, options)
    app = Starlette(
        routes=[
            Mount("/_sandbox/knobs", app=protection.knobs_app),
            Route("/api/{rest:path}", protection, methods=_METHODS),
        ]
    )
    app.state.store = store
    app.state.service = service
    app.state.protection = protection
    return app


def _check_size(request: Request, limit: int) -> None:
    """414 for a URL over 32 KB, 413 for a declared body over `limit` (before reading it)."""
    length = len(str(request.url))
    if length > MAX_URL:
        raise url_too_long(length)
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise too_large(int(declared), limit)


async def _read_body(request: Request, limit: int) -> bytes:
    """The body, read in chunks; 413 as soon as it passes `limit` (chunked uploads too)."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large(size, limit)
        chunks.append(chunk)
    return b"".join(chunks)
