"""The sandbox's finance and operations environment as a Starlette app, under ``/fno``.

Why a path and not another loopback address: the environment's root URL (the token
resource) is ``https://127.0.0.1:PORT/fno`` and its OData root ``…/fno/data/``.  A
path keeps one listening socket, one certificate and one origin on every OS (macOS has
no 127.0.0.2 without setup), and F&O roots with a path exist in the wild (Human
Resources' ``…/namespaces/<guid>``, on-premises ``…/namespaces/AXSF``, §1.1), so a
client that keeps ``<root>`` as resource and appends ``/data/`` works unchanged.

Routes (all under ``/fno``):

```
GET                        /data/                    service document
GET                        /data/$metadata           CSDL
GET POST PATCH PUT DELETE  /data/<Set>[(<key>)]      entities (`_fno_service.py`)
GET                        /data/<Set>/$count        text/plain
POST                       /data/$batch              multipart (`_fno_batch.py`)
POST                       /data/DataManagementDefinitionGroups/<namespace>.<Action>
GET                        /metadata/PublicEntities[('<Name>')], /metadata/PublicEnumerations[...]
GET                        /metadata/Labels(Id='…',Language='…')
GET PUT                    /_blob/dmf/<name>?<SAS>   package blobs (no bearer token)
GET POST DELETE            /_sandbox/knobs           throttling, page size, package polling
GET DELETE                 /_sandbox/requests        requests seen (method, path, query, status)
POST                       /_sandbox/reset           {"rows": N} re-seeds (sandbox only)
```

Every `/data/` and `/metadata/` request needs a bearer token whose audience is the
root; the token's app (client credentials) or user is mapped to an F&O user with a
default company - the "Microsoft Entra ID applications" form (§2).  Unmapped callers
and bad tokens get 401 with an empty body ([UNVERIFIED]).
"""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

import orjson
from anyio import to_thread
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from . import _directory as directory
from ._exchange import Reply, parse_prefer
from ._fno_batch import run_batch
from ._fno_errors import FnoError
from ._fno_limits import FnoLimits
from ._fno_metadata import label_of, public_entities, public_enums
from ._fno_packages import Packages
from ._fno_service import FnoCall, FnoCaller, FnoService, json_reply
from ._fno_store import FnoStore
from ._options import SandboxOptions

__all__ = ["FNO_PATH", "FNO_USERS", "create_fno_app"]

FNO_PATH = "/fno"
# The "Microsoft Entra ID applications" form and the users' default companies:
# client id or user object id → (F&O user id, default company).
FNO_USERS: dict[str, tuple[str, str]] = {
    directory.CONFIDENTIAL_CLIENT_ID: ("d365nb-integration", "usmf"),
    directory.USERS[0].oid: ("alex", "usmf"),
    directory.USERS[1].oid: ("megan", "usrt"),
}
_ACTION = re.compile(r"^DataManagementDefinitionGroups/Microsoft\.Dynamics\.DataEntities\.(\w+)$")
_METADATA = re.compile(r"^(PublicEntities|PublicEnumerations)(?:\('((?:[^']|'')*)'\))?$")
_LABEL = re.compile(r"^Labels\(Id='((?:[^']|'')*)',\s*Language='([^']*)'\)$")
_METHODS = ["GET", "POST", "PATCH", "PUT", "DELETE"]
_LOG_SIZE = 5000  # requests kept for `/_sandbox/requests`
_PACKAGE_KNOBS = ("min_executing_polls", "nested_values")


def _caller(claims: Mapping[str, Any]) -> FnoCaller | None:
    if claims.get("idtyp") == "app":
        client = str(claims.get("appid") or claims.get("azp") or "")
        mapped = FNO_USERS.get(client)
        return FnoCaller(mapped[0], mapped[1], client) if mapped else None
    mapped = FNO_USERS.get(str(claims.get("oid", "")))
    if mapped is None:
        return None
    return FnoCaller(mapped[0], mapped[1], str(claims.get("upn") or mapped[0]))


def _response(reply: Reply, req_id: str) -> Response:
    response = Response(reply.body, status_code=reply.status)
    for name, value in reply.headers:
        if not name.lower().startswith("x-sandbox"):
            response.headers.append(name, value)
    response.headers.append("OData-Version", "4.0")
    response.headers.append("ms-dyn-activityid", req_id)
    return response


def create_fno_app(
    options: SandboxOptions,
    *,
    base_url: str,
    verify_token: Callable[[str, str], Mapping[str, Any]],
) -> Starlette:
    """The F&O environment app (`app.state.store`, `.service`, `.packages`, `.limits`).

    **Parameters:**

    * **options** - the sandbox's knobs (`fno_rows`, `fno_page_size`, `seed`, `database`).
    * **base_url** - the sandbox origin; the environment root is ``<base_url>/fno``.
    * **verify_token** - ``(token, audience)`` → claims, or raises `TokenRejected`.
    """
    root = f"{base_url.rstrip('/')}{FNO_PATH}"
    store = FnoStore(options)
    service = FnoService(store, page_size=options.fno_page_size)
    packages = Packages(service, root=root)
    limits = FnoLimits(
        window_seconds=options.window_seconds,
        max_requests_per_window=options.max_requests_per_window,
        max_execution_seconds_per_window=options.max_execution_seconds_per_window,
        max_concurrent_requests=options.max_concurrent_requests,
    )
    seen: deque[dict[str, Any]] = deque(maxlen=_LOG_SIZE)

    def logged(request: Request, response: Response, *, query: bool = True) -> Response:
        """`response`, with its request noted in the log (a blob's SAS is left out)."""
        path = request.url.path.removeprefix(FNO_PATH)
        text = str(request.url.query) if query else ""
        status = response.status_code
        seen.append({"method": request.method, "path": path, "query": text, "status": status})
        return response

    challenge = f"Bearer authorization_uri={base_url}/{directory.TENANT_ID}/oauth2/authorize"

    def dispatch(call: FnoCall) -> Reply:
        m = _ACTION.match(call.path)
        if m:
            return packages.action(m.group(1), call)
        if call.path == "$batch" and call.method == "POST":
            return run_batch(call, dispatch, store.atomic)
        return service.handle(call)

    async def authorised(request: Request) -> FnoCaller | Reply:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return Reply(401, [("WWW-Authenticate", challenge)])
        try:
            claims = verify_token(token.strip(), root)
        except Exception as exc:
            if type(exc).__name__ != "TokenRejected":
                raise
            return Reply(401, [("WWW-Authenticate", challenge)])
        caller = _caller(claims)
        return caller if caller is not None else Reply(401, [("WWW-Authenticate", challenge)])

    async def guarded(request: Request, work: Callable[[FnoCaller], Reply]) -> Response:
        req_id = str(uuid.uuid4())
        caller = await authorised(request)
        if isinstance(caller, Reply):
            return _response(caller, req_id)
        try:
            limits.admit(caller.key)
        except FnoError as exc:
            return _response(json_reply(exc.status, exc.body(), list(exc.headers.items())), req_id)
        started = time.monotonic()
        try:
            if limits.latency_ms:
                await asyncio.sleep(limits.latency_ms / 1000)

            def run() -> Reply:
                try:
                    return work(caller)
                except FnoError as exc:
                    return json_reply(exc.status, exc.body(), list(exc.headers.items()))

            return _response(await to_thread.run_sync(run), req_id)
        finally:
            limits.done(caller.key, started)

    async def data(request: Request) -> Response:
        body = await request.body()

        def work(caller: FnoCaller) -> Reply:
            return dispatch(
                FnoCall(
                    method=request.method,
                    path=request.path_params.get("path", ""),
                    params=dict(request.query_params),
                    headers=dict(request.headers.items()),
                    body=body,
                    root=root,
                    caller=caller,
                    prefer=parse_prefer(request.headers.getlist("prefer")),
                )
            )

        return logged(request, await guarded(request, work))

    async def metadata(request: Request) -> Response:
        path = request.path_params["path"]
        params = dict(request.query_params)

        def work(caller: FnoCaller) -> Reply:
            if m := _METADATA.match(path):
                key = m.group(2).replace("''", "'") if m.group(2) is not None else None
                build = public_entities if m.group(1) == "PublicEntities" else public_enums
                return json_reply(200, build(root, key, params))
            if m := _LABEL.match(path):
                return json_reply(200, label_of(m.group(1).replace("''", "'"), m.group(2)))
            raise FnoError(404, f"Resource not found for the segment '{path.split('(')[0]}'.")

        return logged(request, await guarded(request, work))

    async def blob(request: Request) -> Response:
        reply = packages.blob(
            request.method,
            request.path_params["name"],
            dict(request.query_params),
            {k.lower(): v for k, v in request.headers.items()},
            await request.body(),
        )
        return logged(request, _response(reply, str(uuid.uuid4())), query=False)

    async def requests(request: Request) -> Response:
        if request.method == "DELETE":
            seen.clear()
        return Response(orjson.dumps({"requests": list(seen)}), media_type="application/json")

    async def knobs(request: Request) -> Response:
        if request.method == "DELETE":
            limits.reset()
        elif request.method == "POST":
            try:
                changes = orjson.loads(await request.body() or b"{}")
                if "page_size" in changes:
                    service.page_size = max(1, int(changes.pop("page_size")))
                for name in _PACKAGE_KNOBS:
                    if name in changes:
                        setattr(packages, name, type(getattr(packages, name))(changes.pop(name)))
                limits.configure(**changes)
            except (ValueError, TypeError) as exc:
                return Response(
                    orjson.dumps({"message": str(exc)}), 400, media_type="application/json"
                )
        state = {
            **limits.knobs(),
            "page_size": service.page_size,
            **{name: getattr(packages, name) for name in _PACKAGE_KNOBS},
        }
        return Response(orjson.dumps(state), media_type="application/json")

    async def reset(request: Request) -> Response:
        body = orjson.loads(await request.body() or b"{}")
        rows = body.get("rows") if isinstance(body, dict) else None
        await to_thread.run_sync(lambda: store.reset(rows=int(rows) if rows else None))
        limits.reset()
        packages.executions.clear()
        result = {"rows": store.rows, "seconds": round(store.seed_seconds, 3)}
        return Response(orjson.dumps(result), media_type="application/json")

    app = Starlette(
        routes=[
            Route(f"{FNO_PATH}/data/{{path:path}}", data, methods=_METHODS),
            Route(f"{FNO_PATH}/data", data, methods=["GET"]),
            Route(f"{FNO_PATH}/metadata/{{path:path}}", metadata, methods=["GET"]),
            Route(f"{FNO_PATH}/_blob/dmf/{{name:path}}", blob, methods=["GET", "PUT"]),
            Route(f"{FNO_PATH}/_sandbox/knobs", knobs, methods=["GET", "POST", "DELETE"]),
            Route(f"{FNO_PATH}/_sandbox/reset", reset, methods=["POST"]),
            Route(f"{FNO_PATH}/_sandbox/requests", requests, methods=["GET", "DELETE"]),
        ]
    )
    app.state.store = store
    app.state.service = service
    app.state.packages = packages
    app.state.limits = limits
    return app
