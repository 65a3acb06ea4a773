"""Dataverse service-protection limits, injected latency and injected faults.

`ServiceProtection` is a pure ASGI middleware that wraps the sandbox's Web API app:

```python
app = ServiceProtection(webapi_app, options)
routes = [Mount("/_sandbox/knobs", app.knobs_app), Mount("/api/data/v9.2", app)]
```

What it does, per request carrying a bearer token (reference/dataverse-protocol.md §8):

* **Limits per user** (the token's `oid` + `appid`/`azp` claims, read without checking
  the signature: the inner app verifies the token).  A 300-second *sliding* window holds
  the number of requests (6,000) and their combined execution time (1,200 s); both are
  applied only once exceeded, so the request that crosses a limit still runs.  The
  number of concurrent requests (52) is checked immediately.  Over a limit: `429` with
  `Retry-After` (integer seconds) and the Dataverse error body and code.
* **Headers on every response**: `x-ms-dop-hint`,
  `x-ms-ratelimit-burst-remaining-xrm-requests` and
  `x-ms-ratelimit-time-remaining-xrm-requests`.
* **Latency**: `latency_ms` before each request, plus `latency_per_row_ms` for each row
  the inner app reports in the `ROWS_HEADER` response header (which is removed).
* **Faults**, drawn from `random.Random(fault_seed)`, one draw per request: a
  `fault_503_rate` share answered `503`, and a `fault_drop_rate` share whose connection
  is cut after the headers and half of the body (the inner app still ran, as when a
  real connection breaks after the server did the work).

Requests without a bearer token, and non-HTTP scopes, pass through untouched.

Knobs change at run time with `configure(**changes)`, or over HTTP through `knobs_app`
(`GET` shows them, `POST {"latency_ms": 50}` changes them, `DELETE` clears the counters).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import math
import random
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from typing import Any

from .._exceptions import ConfigError
from ._options import SandboxOptions

__all__ = ["KNOBS", "ROWS_HEADER", "ServiceProtection"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

ROWS_HEADER = "x-sandbox-rows"
"""Response header in which the inner app reports how many rows it returned or wrote.

The middleware multiplies it by `latency_per_row_ms`, then removes the header.
"""

KNOBS = frozenset(
    {
        "aggregate_record_limit",
        "dop_hint",
        "fault_503_rate",
        "fault_drop_rate",
        "fault_seed",
        "latency_ms",
        "latency_per_row_ms",
        "max_concurrent_requests",
        "max_execution_seconds_per_window",
        "max_requests_per_window",
        "retry_after_seconds",
        "window_seconds",
    }
)
"""The `SandboxOptions` fields that `ServiceProtection.configure` may change."""

_ROWS_HEADER_BYTES = ROWS_HEADER.encode("latin-1")
_JSON = b"application/json; odata.metadata=minimal"

# Error codes (Web API hex form) and messages: [MS] PA/api-limits.
_CODE_REQUESTS = "0x80072322"  # -2147015902
_CODE_EXECUTION = "0x80072321"  # -2147015903
_CODE_CONCURRENCY = "0x80072326"  # -2147015898


@dataclass
class _Bucket:
    """One user's counters."""

    starts: deque[float] = field(default_factory=deque)  # admission times
    runs: deque[tuple[float, float]] = field(default_factory=deque)  # (end time, duration)
    in_flight: int = 0
    execution: float = 0.0  # sum of the durations in `runs`

    def prune(self, now: float, window: float) -> None:
        horizon = now - window
        while self.starts and self.starts[0] <= horizon:
            self.starts.popleft()
        while self.runs and self.runs[0][0] <= horizon:
            self.execution -= self.runs.popleft()[1]
        if not self.runs:
            self.execution = 0.0  # no float drift once empty


def _window_text(seconds: float) -> str:
    return str(int(seconds)) if float(seconds).is_integer() else str(seconds)


def _user_key(scope: Scope) -> str | None:
    """`oid|appid` from the bearer token, or `None` when there is no readable token."""
    for name, value in scope.get("headers", ()):
        if name.lower() != b"authorization":
            continue
        scheme, _, token = value.decode("latin-1").partition(" ")
        if scheme.lower() != "bearer" or token.count(".") != 2:
            return None
        payload = token.split(".")[1]
        try:
            claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        except (binascii.Error, ValueError):
            return None
        if not isinstance(claims, dict):
            return None
        user = claims.get("oid") or claims.get("sub")
        if not user:
            return None
        return f"{user}|{claims.get('appid') or claims.get('azp') or ''}"
    return None


def _error_body(code: str, message: str) -> bytes:
    return json.dumps({"error": {"code": code, "message": message}}).encode("utf-8")


class ServiceProtection:
    """ASGI middleware: Dataverse service-protection limits, latency and faults.

    Usage:

    ```python
    protected = ServiceProtection(webapi_app, SandboxOptions(max_requests_per_window=100))
    protected.configure(latency_ms=50, fault_503_rate=0.1)
    ```

    **Parameters:**

    * **app** - the inner ASGI app (the sandbox's Web API).
    * **options** - the sandbox's options; only the fields in `KNOBS` are used.
    * **clock** - *(optional)* monotonic clock in seconds, for tests.
    * **sleep** - *(optional)* coroutine function used for latency, for tests.
    """

    def __init__(
        self,
        app: ASGIApp,
        options: SandboxOptions,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
    ) -> None:
        self.app = app
        self._clock = clock
        self._sleep = sleep
        self._buckets: dict[str, _Bucket] = {}
        _validate(options)
        self._options = options
        self._random = random.Random(options.fault_seed)

    # -- runtime knobs -------------------------------------------------------------------

    @property
    def options(self) -> SandboxOptions:
        """The options in force."""
        return self._options

    def knobs(self) -> dict[str, Any]:
        """The current value of every knob in `KNOBS`."""
        return {name: getattr(self._options, name) for name in sorted(KNOBS)}

    def configure(self, **changes: Any) -> None:
        """Change knobs on a running sandbox (any field named in `KNOBS`).

        Counters are kept (call `reset()` to clear them); changing `fault_seed`
        restarts the fault sequence.  Raises `ConfigError` for an unknown knob or a
        value out of range, and then changes nothing.
        """
        unknown = sorted(set(changes) - KNOBS)
        if unknown:
            raise ConfigError(
                f"Unknown sandbox knob {unknown[0]!r}.",
                field=unknown[0],
                hint=f"Knobs that can change at run time: {', '.join(sorted(KNOBS))}.",
            )
        options = self._options.replace(**changes)
        _validate(options)
        self._options = options
        if "fault_seed" in changes:
            self._random = random.Random(options.fault_seed)

    def reset(self) -> None:
        """Forget every user's request and execution-time history."""
        for bucket in self._buckets.values():
            bucket.starts.clear()
            bucket.runs.clear()
            bucket.execution = 0.0

    @property
    def knobs_app(self) -> ASGIApp:
        """An ASGI app to mount (e.g. at `/_sandbox/knobs`) for changing knobs over HTTP.

        `GET` answers the knobs as JSON; `POST` with a JSON object applies it with
        `configure()` and answers the new knobs (`400` with a Dataverse-style error body
        for a bad knob); `DELETE` calls `reset()` and answers `204`.
        """
        return self._knobs_endpoint

    async def _knobs_endpoint(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        method = scope["method"]
        status, body = 200, b""
        if method == "POST":
            raw = bytearray()
            while True:
                message = await receive()
                raw += message.get("body", b"")
                if not message.get("more_body"):
                    break
            try:
                changes = json.loads(bytes(raw) or b"{}")
                if not isinstance(changes, dict):
                    raise ConfigError("The knobs body must be a JSON object.")
                self.configure(**changes)
            except (ValueError, TypeError) as exc:
                status, body = 400, _error_body("0x0", str(exc))
        elif method == "DELETE":
            self.reset()
            status = 204
        elif method != "GET":
            status, body = 405, _error_body("0x0", f"Method {method} is not allowed.")
        if status == 200:
            body = json.dumps(self.knobs()).encode("utf-8")
        headers = [(b"content-type", b"application/json")] if body else []
        headers.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    # -- the middleware ----------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        key = _user_key(scope)
        if key is None:
            await self.app(scope, receive, send)
            return
        options = self._options
        now = self._clock()
        bucket = self._buckets.setdefault(key, _Bucket())
        bucket.prune(now, options.window_seconds)

        refusal = self._check(bucket, options, now)
        if refusal is not None:
            status, code, message, retry_after = refusal
            await self._error(send, options, bucket, status, code, message, retry_after)
            return

        bucket.starts.append(now)
        bucket.in_flight += 1
        try:
            draw = self._random.random()
            if draw < options.fault_503_rate:
                # [UNVERIFIED] Dataverse's 503 body: shaped like every other error, with the
                # platform's generic "unexpected error" code.
                retry = 1 if options.retry_after_seconds is None else options.retry_after_seconds
                await self._error(
                    send,
                    options,
                    bucket,
                    503,
                    "0x80040216",
                    "The service is temporarily unavailable. Try again later.",
                    retry,
                )
                return
            drop = draw < options.fault_503_rate + options.fault_drop_rate
            if options.latency_ms > 0:
                await self._sleep(options.latency_ms / 1000)
            await self._forward(scope, receive, send, bucket, options, now, drop=drop)
        finally:
            bucket.in_flight -= 1
            end = self._clock()
            bucket.runs.append((end, end - now))
            bucket.execution += end - now

    def _check(
        self, bucket: _Bucket, options: SandboxOptions, now: float
    ) -> tuple[int, str, str, float] | None:
        """`(status, code, message, retry_after)` when the request must be refused."""
        window = options.window_seconds
        if bucket.in_flight >= options.max_concurrent_requests:
            # [UNVERIFIED] Retry-After for the concurrency limit: not documented; one
            # second lets the requests in flight finish.
            return (
                429,
                _CODE_CONCURRENCY,
                "Number of concurrent requests exceeded the limit of "
                f"{options.max_concurrent_requests}.",
                1.0,
            )
        if len(bucket.starts) >= options.max_requests_per_window:
            # Free again when enough of the oldest requests leave the window.
            excess = len(bucket.starts) - options.max_requests_per_window
            retry = bucket.starts[excess] + window - now
            return (
                429,
                _CODE_REQUESTS,
                "Number of requests exceeded the limit of "
                f"{options.max_requests_per_window} over time window of "
                f"{_window_text(window)} seconds.",
                retry,
            )
        budget = options.max_execution_seconds_per_window
        if bucket.execution > budget:
            total, retry = bucket.execution, 0.0
            for end, duration in bucket.runs:
                total -= duration
                retry = end + window - now
                if total <= budget:
                    break
            # The doc's message has two spaces before "milliseconds" [MS] PA/api-limits.
            return (
                429,
                _CODE_EXECUTION,
                "Combined execution time of incoming requests exceeded limit of "
                f"{round(budget * 1000):,}  milliseconds over time window of "
                f"{_window_text(window)} seconds. Decrease number of concurrent requests or "
                "reduce the duration of requests and try again later.",
                retry,
            )
        return None

    def _limit_headers(
        self, options: SandboxOptions, bucket: _Bucket, elapsed: float = 0.0
    ) -> list[tuple[bytes, bytes]]:
        # [MS] PA/api-limits documents the two x-ms-ratelimit headers as diagnostics and
        # x-ms-dop-hint (PA/send-parallel-requests) as present on responses; the sandbox
        # sends all three on every response.  [UNVERIFIED] units of the time header:
        # seconds (a user saw ~960 against a 1,200-second budget).
        requests_left = max(0, options.max_requests_per_window - len(bucket.starts))
        time_left = max(0.0, options.max_execution_seconds_per_window - bucket.execution - elapsed)
        return [
            (b"x-ms-ratelimit-burst-remaining-xrm-requests", str(requests_left).encode()),
            (b"x-ms-ratelimit-time-remaining-xrm-requests", f"{time_left:.2f}".encode()),
            (b"x-ms-dop-hint", str(options.dop_hint).encode()),
        ]

    async def _error(
        self,
        send: Send,
        options: SandboxOptions,
        bucket: _Bucket,
        status: int,
        code: str,
        message: str,
        retry_after: float,
    ) -> None:
        if status == 429 and options.retry_after_seconds is not None:
            retry_after = options.retry_after_seconds
        body = _error_body(code, message)
        # Every Web API answer carries its request id, the refused ones too.
        req_id = str(uuid.uuid4()).encode()
        headers = [
            (b"retry-after", str(max(0, math.ceil(retry_after))).encode()),
            (b"content-type", _JSON),
            (b"odata-version", b"4.0"),
            (b"req_id", req_id),
            (b"x-ms-service-request-id", req_id),
            (b"content-length", str(len(body)).encode()),
            *self._limit_headers(options, bucket),
        ]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def _forward(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        bucket: _Bucket,
        options: SandboxOptions,
        started: float,
        *,
        drop: bool,
    ) -> None:
        held: Message | None = None  # the response start, when dropping
        chunks: list[bytes] = []

        async def wrapped_send(message: Message) -> None:
            nonlocal held
            if message["type"] == "http.response.start":
                headers: list[tuple[bytes, bytes]] = []
                rows = 0
                for name, value in message.get("headers", ()):
                    if name.lower() == _ROWS_HEADER_BYTES:
                        try:
                            rows = max(0, int(value))
                        except ValueError:
                            rows = 0
                    else:
                        headers.append((name, value))
                if rows and options.latency_per_row_ms > 0:
                    await self._sleep(rows * options.latency_per_row_ms / 1000)
                elapsed = self._clock() - started
                headers += self._limit_headers(options, bucket, elapsed)
                message = {**message, "headers": headers}
                if drop:
                    held = message
                    return
            elif drop and message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))
                return
            await send(message)

        await self.app(scope, receive, wrapped_send)
        if drop and held is not None:
            await self._cut(send, held, b"".join(chunks))

    @staticmethod
    async def _cut(send: Send, start: Message, body: bytes) -> None:
        """Send the headers and half of the body, then stop without finishing.

        uvicorn then logs "ASGI callable returned without completing response." and
        closes the connection; the client reads a short body and raises (httpx:
        `RemoteProtocolError`).  A response that may not have a body (204, 304) is sent
        as a 200 with a placeholder body so that there is something to cut: the client
        never gets to see that status, because reading the response fails.
        """
        status = start["status"]
        if status in (204, 304) or status < 200 or not body:
            status, body = 200, b" " * 64
        headers = [(n, v) for n, v in start["headers"] if n.lower() != b"content-length"]
        headers.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send(
            {"type": "http.response.body", "body": body[: len(body) // 2], "more_body": True}
        )


def _validate(options: SandboxOptions) -> None:
    """Raise `ConfigError` for a knob value the middleware cannot use."""
    checks: list[tuple[str, bool, str]] = [
        ("window_seconds", options.window_seconds > 0, "must be greater than 0"),
        ("max_requests_per_window", options.max_requests_per_window >= 1, "must be at least 1"),
        (
            "max_execution_seconds_per_window",
            options.max_execution_seconds_per_window > 0,
            "must be greater than 0",
        ),
        ("max_concurrent_requests", options.max_concurrent_requests >= 1, "must be at least 1"),
        ("dop_hint", options.dop_hint >= 1, "must be at least 1"),
        ("aggregate_record_limit", options.aggregate_record_limit >= 1, "must be at least 1"),
        (
            "retry_after_seconds",
            options.retry_after_seconds is None or options.retry_after_seconds >= 0,
            "must be 0 or more, or None",
        ),
        ("latency_ms", options.latency_ms >= 0, "must be 0 or more"),
        ("latency_per_row_ms", options.latency_per_row_ms >= 0, "must be 0 or more"),
        ("fault_503_rate", 0 <= options.fault_503_rate <= 1, "must be between 0 and 1"),
        ("fault_drop_rate", 0 <= options.fault_drop_rate <= 1, "must be between 0 and 1"),
        (
            "fault_drop_rate",
            options.fault_503_rate + options.fault_drop_rate <= 1,
            "plus fault_503_rate must not exceed 1",
        ),
    ]
    for name, ok, rule in checks:
        if not ok:
            value = getattr(options, name)
            raise ConfigError(f"Sandbox knob {name}={value!r}: {rule}.", field=name)
