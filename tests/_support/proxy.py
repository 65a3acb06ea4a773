"""A small TLS-terminating reverse proxy on loopback that can delay, cut or rewrite answers.

Tests only.  It serves with the sandbox's own server certificate (issued for 127.0.0.1 by
the sandbox's CA, so clients that trust the sandbox trust the proxy), forwards each request
to the sandbox and rewrites the sandbox's origin to its own in answer bodies (nextLinks),
unless a `rule` says otherwise:

```python
with Proxy(sb) as proxy:
    proxy.rule = lambda n, method, path: Action(status=429, headers={"Retry-After": "1"})
```

With `upstream=None` it forwards nothing: it records every request (and whether it carried
an `Authorization` header) and answers `200 {"value": []}` -- an "other host" that must
never see the token.
"""

from __future__ import annotations

import asyncio
import json
import ssl
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from typing import Any

import httpx

from d365nb.sandbox import Sandbox
from d365nb.sandbox._certs import ensure_certificates
from d365nb.sandbox._server import _bind, _ServerThread

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]

_HOP = {b"host", b"content-length", b"transfer-encoding", b"connection", b"accept-encoding"}


@dataclass
class Action:
    """What the proxy does with one request instead of (or on top of) forwarding it."""

    status: int | None = None  # answer this status without forwarding
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    delay: float = 0.0  # seconds to wait before answering
    cut: bool = False  # forward, then send the headers and half the body and drop
    rewrite: Callable[[bytes], bytes] | None = None  # change the forwarded answer's body


@dataclass
class Seen:
    """One request the proxy received."""

    method: str
    path: str
    authorization: str | None
    query: str = ""  # the raw query string (a rule reads it as `proxy.seen[n - 1].query`)


Rule = Callable[[int, str, str], Action | None]


class Proxy:
    """A reverse proxy in front of `sandbox` (or, with `upstream=None`, a recording sink)."""

    def __init__(self, sandbox: Sandbox, *, upstream: str | None = "sandbox") -> None:
        self.upstream = sandbox.base_url if upstream == "sandbox" else upstream
        self.ca_cert = sandbox.ca_cert
        self.rule: Rule | None = None
        self.seen: list[Seen] = []
        self.injected = 0  # requests a rule changed
        self._client: httpx.AsyncClient | None = None
        certs = ensure_certificates(sandbox.options.data_dir, hosts=("127.0.0.1",))
        sock = _bind("127.0.0.1", 0)
        self.port = sock.getsockname()[1]
        self.base_url = f"https://127.0.0.1:{self.port}"
        self._server = _ServerThread(_Asgi(self), sock=sock, certs=certs)
        self._server.start()

    def __enter__(self) -> Proxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._server.stop()

    # -- the ASGI app ---------------------------------------------------------------------

    async def _app(
        self, scope: Scope, receive: Callable[[], Awaitable[Message]], send: Any
    ) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    if self._client is not None:
                        await self._client.aclose()
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        body = bytearray()
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = [(k, v) for k, v in scope["headers"] if k.lower() not in _HOP]
        auth = next((v.decode() for k, v in headers if k.lower() == b"authorization"), None)
        method, path = scope["method"], scope["path"]
        raw_query = scope.get("query_string", b"").decode("latin-1")
        self.seen.append(Seen(method, path, auth, raw_query))
        action = self.rule(len(self.seen), method, path) if self.rule is not None else None
        if action is not None:
            self.injected += 1
            if action.delay:
                await asyncio.sleep(action.delay)
        if self.upstream is None and (action is None or action.status is None):
            action = Action(status=200, body=b'{"value": []}')
        if action is not None and action.status is not None:
            out = [(k.lower().encode(), v.encode()) for k, v in action.headers.items()]
            if not any(k == b"content-type" for k, _ in out):
                out.append((b"content-type", b"application/json"))
            out.append((b"content-length", str(len(action.body)).encode()))
            await send({"type": "http.response.start", "status": action.status, "headers": out})
            await send({"type": "http.response.body", "body": action.body})
            return
        if self._client is None:
            self._client = httpx.AsyncClient(
                verify=ssl.create_default_context(cafile=self.ca_cert), trust_env=False, timeout=60
            )
        query = scope.get("query_string", b"").decode("latin-1")
        url = f"{self.upstream}{scope.get('raw_path', path.encode()).decode('latin-1')}"
        if "?" not in url and query:
            url += f"?{query}"
        response = await self._client.request(
            method,
            url,
            content=bytes(body),
            headers=[(k.decode("latin-1"), v.decode("latin-1")) for k, v in headers],
        )
        assert self.upstream is not None
        content = response.content.replace(self.upstream.encode(), self.base_url.encode())
        if action is not None and action.rewrite is not None:
            content = action.rewrite(content)
        out = [
            (k.lower().encode("latin-1"), v.encode("latin-1"))
            for k, v in response.headers.items()
            if k.lower() not in {"content-length", "transfer-encoding", "content-encoding"}
        ]
        out.append((b"content-length", str(len(content)).encode()))
        await send({"type": "http.response.start", "status": response.status_code, "headers": out})
        if action is not None and action.cut:
            half = content[: len(content) // 2]
            await send({"type": "http.response.body", "body": half, "more_body": True})
            return  # uvicorn closes the connection: the client reads a short body
        await send({"type": "http.response.body", "body": content})


class _Asgi:
    """uvicorn tells ASGI 3 apps by an `async def __call__`; a bound method looks like ASGI 2."""

    def __init__(self, proxy: Proxy) -> None:
        self.proxy = proxy

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        await self.proxy._app(scope, receive, send)


def answer(status: int, payload: Any = None, **headers: str) -> Action:
    """An `Action` answering `status` with a JSON body (and headers, `_` for `-`)."""
    body = json.dumps(payload).encode() if payload is not None else b""
    return Action(
        status=status, body=body, headers={k.replace("_", "-"): v for k, v in headers.items()}
    )
