"""Retries, throttling, host pinning and adaptive concurrency around httpx's async transport.

Decisions are pure functions and small value objects (`RetryPolicy`, `retry_delay()`,
`check_same_origin()`, `AdaptiveLimiter.observe()`); `RetryTransport` is the thin I/O shell
that wraps another `httpx.AsyncBaseTransport`, in the way httpx's docs suggest for custom
transports ("wrap the default HTTP implementation").

```python
transport = RetryTransport(
    httpx.AsyncHTTPTransport(http2=True),
    origin="https://contoso.crm.dynamics.com",
    policy=RetryPolicy(max_attempts=5),
    on_wait=lambda seconds, reason: print(f"{reason}, waiting {seconds:.0f} s"),
)
client = httpx.AsyncClient(transport=transport, follow_redirects=False)
```
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import email.utils
import logging
import math
import random
import ssl
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from types import TracebackType

import httpx

from ._exceptions import ThrottledError, TransportError
from ._tokens import known_transport_error

__all__ = [
    "AdaptiveLimiter",
    "DEFAULT_RETRY_POLICY",
    "IDEMPOTENT_EXTENSION",
    "RetryPolicy",
    "RetryTransport",
    "TransportStats",
    "check_same_origin",
    "parse_retry_after",
    "retry_delay",
]

logger = logging.getLogger("d365nb")

#: Set `request.extensions[IDEMPOTENT_EXTENSION] = True` on a request that is safe to send
#: twice even though its method is not (a create that carries a client-generated key).
IDEMPOTENT_EXTENSION = "d365nb.idempotent"

_IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})
# Failures that happen before a single byte of the request reached the service: retrying
# them is safe for every method.
_NOT_SENT_ERRORS: tuple[type[BaseException], ...] = (
    httpx.ConnectError,
    httpx.ConnectTimeout,
    httpx.PoolTimeout,
)
# Failures after the request may have reached the service: retried for idempotent requests.
_NETWORK_ERRORS: tuple[type[BaseException], ...] = (
    httpx.NetworkError,
    httpx.TimeoutException,
    httpx.RemoteProtocolError,
)
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_DEFAULT_PORTS = {"http": 80, "https": 443}


@dataclasses.dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to retry; a value object (`==`, readable repr, hashable).

    | example | meaning |
    | --- | --- |
    | `RetryPolicy()` | up to 8 attempts and 10 minutes of waiting in total |
    | `RetryPolicy(max_attempts=1)` | never retry |
    | `RetryPolicy(max_total_wait=60)` | give up once a retry would push waiting past 60 s |

    **Parameters:**

    * **max_attempts** - attempts in total, the first one included.
    * **max_total_wait** - seconds of waiting one request may spend across its retries.
    * **backoff_base**, **backoff_cap** - exponential backoff `base * 2**(attempt-1)`,
      capped, used when the service gives no usable `Retry-After`.
    * **jitter** - fraction (0-1) taken off backoff delays at random, so parallel
      requests do not retry in lockstep.  `Retry-After` values are honoured exactly.
    * **retry_after_cap** - longest single `Retry-After` honoured; longer (or absurd)
      values are cut to it.
    * **retry_statuses** - statuses retried for every method (429, 503: the service did
      not process the request).
    * **idempotent_retry_statuses** - statuses retried only for idempotent requests.
    """

    max_attempts: int = 8
    max_total_wait: float = 600.0
    backoff_base: float = 1.0
    backoff_cap: float = 60.0
    jitter: float = 0.25
    retry_after_cap: float = 300.0
    retry_statuses: frozenset[int] = frozenset({429, 503})
    idempotent_retry_statuses: frozenset[int] = frozenset({500, 502, 504})

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("RetryPolicy.max_attempts must be at least 1.")
        if not 0.0 <= self.jitter <= 1.0:
            raise ValueError("RetryPolicy.jitter must be between 0 and 1.")
        if min(self.max_total_wait, self.backoff_base, self.backoff_cap) < 0:
            raise ValueError("RetryPolicy waits must not be negative.")
        object.__setattr__(self, "retry_statuses", frozenset(self.retry_statuses))
        object.__setattr__(
            self, "idempotent_retry_statuses", frozenset(self.idempotent_retry_statuses)
        )

    def __repr__(self) -> str:
        return (
            f"RetryPolicy(max_attempts={self.max_attempts}, "
            f"max_total_wait={self.max_total_wait:g}, backoff_base={self.backoff_base:g}, "
            f"backoff_cap={self.backoff_cap:g}, jitter={self.jitter:g}, "
            f"retry_after_cap={self.retry_after_cap:g}, "
            f"retry_statuses={sorted(self.retry_statuses)}, "
            f"idempotent_retry_statuses={sorted(self.idempotent_retry_statuses)})"
        )


DEFAULT_RETRY_POLICY = RetryPolicy()


def parse_retry_after(value: str | None, *, now: dt.datetime | None = None) -> float | None:
    """Seconds to wait from a `Retry-After` value (delta-seconds or HTTP-date), else `None`.

    Garbage, negative and non-finite values give `None` (the caller falls back to backoff);
    a date in the past gives `0.0`.

    **Parameters:**

    * **value** - the header value, or `None` when the header is absent.
    * **now** - the current time for HTTP-dates (tests pass a fixed one).
    """
    if value is None:
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        return seconds if math.isfinite(seconds) and seconds >= 0 else None
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:  # pragma: no cover - older Pythons returned None
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.timezone.utc)
    current = now or dt.datetime.now(dt.timezone.utc)
    return max(0.0, (when - current).total_seconds())


def _is_idempotent(method: str, idempotent: bool | None) -> bool:
    return idempotent if idempotent is not None else method.upper() in _IDEMPOTENT_METHODS


def retry_delay(
    *,
    status: int | None,
    headers: Mapping[str, str] | None,
    attempt: int,
    method: str,
    policy: RetryPolicy,
    error: BaseException | None = None,
    rng: random.Random | None = None,
    idempotent: bool | None = None,
    now: dt.datetime | None = None,
) -> float | None:
    """Seconds to wait before the next attempt, or `None` when the request must not be retried.

    **Parameters:**

    * **status** - the response status, or `None` when the attempt failed with `error`.
    * **headers** - the response headers (`Retry-After` is read), or `None`.
    * **attempt** - the 1-based number of the attempt that just failed.
    * **method** - the HTTP method; GET, HEAD, OPTIONS, PUT, DELETE, TRACE are idempotent.
    * **policy** - the `RetryPolicy`.
    * **error** - the network error of a failed attempt (an `httpx.TransportError`).
    * **rng** - randomness for jitter (tests pass a seeded `random.Random`).
    * **idempotent** - override the method's idempotency (a POST with a client key: True).
    * **now** - the current time, for HTTP-date `Retry-After` values.
    """
    if attempt >= policy.max_attempts:
        return None
    safe = _is_idempotent(method, idempotent)
    if status is None:
        if error is None or certificate_failure(error):
            return None
        if not (
            isinstance(error, _NOT_SENT_ERRORS) or (safe and isinstance(error, _NETWORK_ERRORS))
        ):
            return None
    elif not (
        status in policy.retry_statuses or (safe and status in policy.idempotent_retry_statuses)
    ):
        return None
    if status is not None and headers is not None:
        after = parse_retry_after(_header(headers, "retry-after"), now=now)
        if after is not None:
            return min(after, policy.retry_after_cap)
    backoff = min(policy.backoff_cap, policy.backoff_base * 2.0 ** (attempt - 1))
    return backoff * (1.0 - policy.jitter * (rng or random).random())


def _unreachable(exc: httpx.TransportError, request: httpx.Request) -> TransportError | None:
    """The Web API out of reach (DNS, refused, TLS, proxy): the cause and the fix; else `None`.

    Time-outs and broken connections keep the retry layer's own text (method, attempts).
    """
    if isinstance(exc, httpx.TimeoutException):
        return None
    return known_transport_error(exc, str(request.url), service="Web API", setting="Service URL")


def certificate_failure(error: BaseException) -> bool:
    """True when `error` (or what caused it) is a failed TLS certificate verification.

    Such a failure is not transient: retrying it only delays the message that tells the
    user to trust the right CA.
    """
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        if isinstance(current, ssl.SSLCertVerificationError):
            return True
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return "CERTIFICATE_VERIFY_FAILED" in str(error)


def _header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    if value is None and not isinstance(headers, httpx.Headers):
        lowered = {k.lower(): v for k, v in headers.items()}
        value = lowered.get(name)
    return value


def _origin(url: httpx.URL) -> tuple[str, str, int | None]:
    scheme = url.scheme.lower()
    return scheme, url.host.lower(), url.port or _DEFAULT_PORTS.get(scheme)


def check_same_origin(url: str | httpx.URL, origin: str | httpx.URL) -> None:
    """Raise `TransportError` unless `url` has the scheme, host and port of `origin`.

    A relative URL (no scheme, no host) passes: it resolves against the origin.

    **Parameters:**

    * **url** - where a request, a redirect or an `@odata.nextLink` points.
    * **origin** - the configured service URL (`https://contoso.crm.dynamics.com`).
    """
    target, home = httpx.URL(url), httpx.URL(origin)
    if not target.scheme and not target.host:
        return
    if _origin(target) == _origin(home):
        return
    scheme, host, port = _origin(target)
    raise TransportError(
        f"Refused to send a request to {scheme}://{host}:{port}: d365nb only talks to the "
        f"configured service {home.scheme}://{home.host}, so that the sign-in token never "
        "leaves it.",
        hint="If the service really moved, set service_url to the new address.",
    )


@dataclasses.dataclass
class TransportStats:
    """Counters kept by a `RetryTransport` (mutable; read them for progress and reports)."""

    requests: int = 0
    attempts: int = 0
    retries: int = 0
    throttled: int = 0
    waited: float = 0.0


_OnWait = Callable[[float, str], object]


class RetryTransport(httpx.AsyncBaseTransport):
    """An `httpx.AsyncBaseTransport` that retries, waits out throttling and pins the host.

    Every attempt is checked against `origin` first; a request to any other scheme, host or
    port raises `TransportError` before anything is sent.  Responses 429 and 503 are retried
    after `Retry-After`; 500/502/504 and network errors only for idempotent requests (or
    those marked with `request.extensions["d365nb.idempotent"] = True`).  Redirects raise
    `TransportError` (the client must use `follow_redirects=False`).

    **Parameters:**

    * **transport** - the transport to wrap (default `httpx.AsyncHTTPTransport()`).
    * **origin** - the service URL whose scheme, host and port alone may be contacted;
      `None` turns host pinning off (only for token endpoints on another host).
    * **policy** - the `RetryPolicy`.
    * **on_wait** - called as `on_wait(seconds, reason)` before each wait, e.g. to show
      "throttled by the service, waiting 12 s".
    * **limiter** - an `AdaptiveLimiter` fed with every response's status and headers.
    * **sleep** - the coroutine used to wait (tests inject a fake).
    * **rng** - randomness for backoff jitter.
    """

    def __init__(
        self,
        transport: httpx.AsyncBaseTransport | None = None,
        *,
        origin: str | httpx.URL | None,
        policy: RetryPolicy = DEFAULT_RETRY_POLICY,
        on_wait: _OnWait | None = None,
        limiter: AdaptiveLimiter | None = None,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self._transport = transport if transport is not None else httpx.AsyncHTTPTransport()
        self._origin = httpx.URL(origin) if origin is not None else None
        self.policy = policy
        self._on_wait = on_wait
        self._limiter = limiter
        self._sleep = sleep
        self._rng = rng or random.Random()
        self.stats = TransportStats()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self._origin is not None:
            check_same_origin(request.url, self._origin)
        self.stats.requests += 1
        # Buffer the body once so that every attempt sends the very same bytes.
        await request.aread()
        idempotent = request.extensions.get(IDEMPOTENT_EXTENSION)
        waited = 0.0
        attempt = 0
        last_retry_after: float | None = None
        while True:
            attempt += 1
            self.stats.attempts += 1
            try:
                response = await self._transport.handle_async_request(request)
                try:
                    # Read the body here, inside the retry loop: a connection dropped
                    # mid-body is then retried like any other network error.
                    await response.aread()
                except BaseException:
                    await response.aclose()
                    raise
            except httpx.TransportError as exc:
                delay = retry_delay(
                    status=None,
                    headers=None,
                    attempt=attempt,
                    method=request.method,
                    policy=self.policy,
                    error=exc,
                    rng=self._rng,
                    idempotent=idempotent,
                )
                reason = f"network error ({type(exc).__name__})"
                if certificate_failure(exc):
                    raise _unreachable(exc, request) or TransportError(
                        f"{request.method} {request.url.host}: the service's TLS certificate "
                        f"could not be verified ({exc}).",
                        hint="If you trust this service (a corporate proxy, the sandbox), pass "
                        "verify='path/to/ca.pem' with its CA certificate; never verify=False.",
                    ) from exc
                if delay is None or waited + delay > self.policy.max_total_wait:
                    raise _unreachable(exc, request) or TransportError(
                        f"{request.method} {request.url.host} failed after {attempt} "
                        f"attempt{'s' if attempt > 1 else ''}: {type(exc).__name__}: {exc}",
                        hint="Check the network connection and the Service URL, then run "
                        "the cell again.",
                    ) from exc
            else:
                status = response.status_code
                if self._limiter is not None:
                    self._limiter.observe(status, response.headers)
                if status in _REDIRECTS:
                    await response.aclose()
                    location = response.headers.get("location", "")
                    target = httpx.URL(location).host or "another address"
                    raise TransportError(
                        f"The service answered {request.method} {request.url.path} with a "
                        f"redirect ({status}) to {target}; "
                        "d365nb does not follow redirects so that the sign-in token stays "
                        "on the configured host.",
                        hint="Use the environment's own URL as Service URL, e.g. "
                        "https://yourorg.crm.dynamics.com (https, no path).",
                    )
                if status == 429:
                    self.stats.throttled += 1
                    last_retry_after = parse_retry_after(response.headers.get("retry-after"))
                delay = retry_delay(
                    status=status,
                    headers=response.headers,
                    attempt=attempt,
                    method=request.method,
                    policy=self.policy,
                    rng=self._rng,
                    idempotent=idempotent,
                )
                if delay is None or waited + delay > self.policy.max_total_wait:
                    if status == 429 and 429 in self.policy.retry_statuses:
                        await response.aclose()
                        raise ThrottledError(
                            "The service kept refusing requests (HTTP 429, service "
                            f"protection limits) after {attempt} attempt"
                            f"{'s' if attempt > 1 else ''} and {waited:.0f} s of waiting.",
                            retry_after=last_retry_after,
                            hint="Wait "
                            + (f"{last_retry_after:.0f} s" if last_retry_after else "a minute")
                            + " and run the cell again, or read with lower concurrency.",
                        )
                    return response
                with contextlib.suppress(httpx.HTTPError):
                    await response.aread()  # drain the small error body: keep the connection
                await response.aclose()
                reason = (
                    "throttled by the service"
                    if status == 429
                    else f"the service answered HTTP {status}"
                )
            self.stats.retries += 1
            self.stats.waited += delay
            waited += delay
            logger.info(
                "%s %s: %s, retrying in %.1f s", request.method, request.url.path, reason, delay
            )
            if self._on_wait is not None:
                self._on_wait(delay, reason)
            await self._sleep(delay)

    async def aclose(self) -> None:
        await self._transport.aclose()


class AdaptiveLimiter:
    """Adaptive concurrency: `async with limiter:` around each request; feed `observe()`.

    The limit starts at `initial` (a `Session` starts it at the user's cap, so the first
    requests are not held back; the service's `x-ms-dop-hint` lowers it with the first
    answer) and grows by one for every `limit` healthy responses (additive increase),
    halves on a 429 or when the service's rate-limit headers run low (multiplicative
    decrease), and never exceeds `maximum` nor the service's
    `x-ms-dop-hint`.  Responses to requests that were already in flight when the limit was
    cut do not cut it again.  The logic is deterministic: no clocks.

    **Parameters:**

    * **initial** - the starting limit.
    * **maximum** - the user's cap.
    * **minimum** - the floor (at least 1).
    * **low_requests** - slow down when `x-ms-ratelimit-burst-remaining-xrm-requests`
      falls to this many remaining requests.
    * **low_seconds** - slow down when `x-ms-ratelimit-time-remaining-xrm-requests` falls
      to this much remaining execution time.
    * **dop_hint** - the service's `x-ms-dop-hint` as last seen (e.g. by an earlier
      process): the limit starts no higher, before any answer says it again.
    * **on_hint** - called with each new `x-ms-dop-hint` value (to remember it).
    """

    def __init__(
        self,
        *,
        initial: int = 2,
        maximum: int = 32,
        minimum: int = 1,
        low_requests: int = 100,
        low_seconds: float = 60.0,
        dop_hint: int | None = None,
        on_hint: Callable[[int], None] | None = None,
    ) -> None:
        if not 1 <= minimum <= maximum:
            raise ValueError("AdaptiveLimiter needs 1 <= minimum <= maximum.")
        self.maximum = maximum
        self.minimum = minimum
        self.low_requests = low_requests
        self.low_seconds = low_seconds
        self.dop_hint: int | None = dop_hint if dop_hint is not None and dop_hint >= 1 else None
        self._on_hint = on_hint
        #: The service's last `x-ms-ratelimit-burst-remaining-xrm-requests`, if it sent one.
        self.burst_remaining: int | None = None
        #: How many 429s this limiter has seen.
        self.throttled = 0
        self._limit = max(minimum, min(initial, self.ceiling))
        self._active = 0
        self._healthy = 0
        self._ignore = 0  # responses still due from before the last decrease
        self._waiters: deque[asyncio.Future[None]] = deque()

    @property
    def limit(self) -> int:
        """How many requests may run at once now."""
        return self._limit

    @property
    def active(self) -> int:
        """How many requests hold a slot now."""
        return self._active

    @property
    def ceiling(self) -> int:
        """The highest limit allowed: the user's maximum or the service's hint, if lower."""
        if self.dop_hint is None:
            return self.maximum
        return max(self.minimum, min(self.maximum, self.dop_hint))

    def __repr__(self) -> str:
        return (
            f"AdaptiveLimiter(limit={self._limit}, active={self._active}, "
            f"ceiling={self.ceiling}, minimum={self.minimum})"
        )

    def observe(self, status: int, headers: Mapping[str, str] | None = None) -> None:
        """Update the limit from one response's status and headers."""
        headers = headers or {}
        hint = _number(_header(headers, "x-ms-dop-hint"))
        if hint is not None and hint >= 1 and int(hint) != self.dop_hint:
            self.dop_hint = int(hint)
            if self._on_hint is not None:
                with contextlib.suppress(Exception):  # remembering is a nicety
                    self._on_hint(self.dop_hint)
        burst = _number(_header(headers, "x-ms-ratelimit-burst-remaining-xrm-requests"))
        if burst is not None:
            self.burst_remaining = int(burst)
        if status == 429:
            self.throttled += 1
        # [UNVERIFIED] unit of the time header: Microsoft documents a 1,200 s budget per
        # 5 minutes and users report values like 960, so it is read as seconds.
        seconds = _number(_header(headers, "x-ms-ratelimit-time-remaining-xrm-requests"))
        running_low = (burst is not None and burst <= self.low_requests) or (
            seconds is not None and seconds <= self.low_seconds
        )
        if status == 429 or running_low:
            self._decrease()
        elif status < 500:
            if self._ignore:
                self._ignore -= 1
            else:
                self._healthy += 1
                if self._healthy >= self._limit:
                    self._healthy = 0
                    self._limit += 1
        self._limit = max(self.minimum, min(self._limit, self.ceiling))
        self._wake()

    def _decrease(self) -> None:
        if self._ignore:
            self._ignore -= 1
            return
        self._limit = max(self.minimum, self._limit // 2)
        self._healthy = 0
        # The other requests now in flight were sent under the old limit: their answers
        # say nothing about the new one.
        self._ignore = max(0, self._active - 1)

    def _wake(self) -> None:
        free = self._limit - self._active
        for waiter in list(self._waiters):
            if free <= 0:
                break
            if not waiter.done():
                waiter.set_result(None)
                free -= 1

    async def acquire(self) -> None:
        """Wait for a free slot and take it."""
        while self._active >= self._limit:
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            except BaseException:
                self._waiters.remove(waiter)
                self._wake()  # pass on a wake-up this cancelled waiter may have taken
                raise
            self._waiters.remove(waiter)
        self._active += 1

    def release(self) -> None:
        """Give a slot back."""
        self._active -= 1
        self._wake()

    async def __aenter__(self) -> AdaptiveLimiter:
        await self.acquire()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


def _number(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        number = float(value.strip().replace(",", ""))
    except ValueError:
        return None
    return number if math.isfinite(number) else None
