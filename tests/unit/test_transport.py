"""Retry policy, RetryTransport edge cases (httpx.MockTransport), host pinning, AdaptiveLimiter."""

from __future__ import annotations

import asyncio
import datetime as dt
import random
from collections.abc import AsyncIterator, Callable

import httpx
import pytest

from d365nb import ThrottledError, TransportError
from d365nb._transport import (
    DEFAULT_RETRY_POLICY,
    IDEMPOTENT_EXTENSION,
    AdaptiveLimiter,
    RetryPolicy,
    RetryTransport,
    check_same_origin,
    parse_retry_after,
    retry_delay,
)

ORIGIN = "https://contoso.crm.dynamics.com"
API = ORIGIN + "/api/data/v9.2/"
NO_JITTER = RetryPolicy(jitter=0.0)

# --- RetryPolicy / parse_retry_after / retry_delay ----------------------------------------


def test_policy_is_a_value_object() -> None:
    assert RetryPolicy() == DEFAULT_RETRY_POLICY
    assert RetryPolicy(max_attempts=3) != RetryPolicy()
    assert hash(RetryPolicy()) == hash(RetryPolicy())
    assert repr(RetryPolicy(max_attempts=3)).startswith("RetryPolicy(max_attempts=3, ")
    assert "retry_statuses=[429, 503]" in repr(RetryPolicy())


@pytest.mark.parametrize("kwargs", [{"max_attempts": 0}, {"jitter": 1.5}, {"backoff_base": -1}])
def test_policy_refuses_nonsense(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        RetryPolicy(**kwargs)  # type: ignore[arg-type]


NOW = dt.datetime(2024, 1, 1, 12, 0, 0, tzinfo=dt.timezone.utc)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("34", 34.0),
        (" 2.5 ", 2.5),
        ("0", 0.0),
        ("Mon, 01 Jan 2024 12:00:12 GMT", 12.0),
        ("Mon, 01 Jan 2024 11:00:00 GMT", 0.0),
        (None, None),
        ("", None),
        ("soon", None),
        ("-5", None),
        ("nan", None),
        ("inf", None),
        ("Mon, 99 Foo 2024", None),
    ],
)
def test_parse_retry_after(value: str | None, expected: float | None) -> None:
    assert parse_retry_after(value, now=NOW) == expected


def delay(**kwargs: object) -> float | None:
    options: dict[str, object] = {
        "status": 429,
        "headers": {},
        "attempt": 1,
        "method": "GET",
        "policy": NO_JITTER,
    }
    options.update(kwargs)
    return retry_delay(**options)  # type: ignore[arg-type]


def test_retry_after_is_honoured_exactly_for_any_method() -> None:
    assert delay(headers={"Retry-After": "12"}) == 12.0
    assert delay(headers={"retry-after": "12"}, method="POST") == 12.0
    assert delay(status=503, headers=httpx.Headers({"Retry-After": "3"}), method="POST") == 3.0


def test_retry_after_is_capped() -> None:
    assert delay(headers={"Retry-After": "99999"}) == DEFAULT_RETRY_POLICY.retry_after_cap


def test_garbage_retry_after_falls_back_to_backoff() -> None:
    assert delay(headers={"Retry-After": "later"}, attempt=1) == 1.0
    assert delay(headers={"Retry-After": "later"}, attempt=3) == 4.0
    assert delay(headers=None, attempt=20, policy=RetryPolicy(jitter=0, max_attempts=99)) == 60.0


def test_jitter_only_shortens_backoff_and_is_seeded() -> None:
    policy = RetryPolicy(jitter=0.5)
    values = {delay(policy=policy, attempt=4, rng=random.Random(seed)) for seed in range(20)}
    assert all(v is not None and 4.0 <= v <= 8.0 for v in values)
    assert len(values) > 1
    again = delay(policy=policy, attempt=4, rng=random.Random(7))
    assert again == delay(policy=policy, attempt=4, rng=random.Random(7))


def test_no_retry_after_last_attempt() -> None:
    assert delay(attempt=DEFAULT_RETRY_POLICY.max_attempts) is None
    assert delay(attempt=1, policy=RetryPolicy(max_attempts=1)) is None


@pytest.mark.parametrize(
    ("status", "method", "retried"),
    [
        (429, "POST", True),
        (503, "PATCH", True),
        (500, "GET", True),
        (502, "DELETE", True),
        (504, "PUT", True),
        (500, "POST", False),
        (502, "PATCH", False),
        (400, "GET", False),
        (404, "GET", False),
        (412, "PATCH", False),
        (200, "GET", False),
    ],
)
def test_which_statuses_are_retried(status: int, method: str, retried: bool) -> None:
    assert (delay(status=status, method=method) is not None) is retried


def test_marked_post_is_retried_like_an_idempotent_request() -> None:
    assert delay(status=500, method="POST", idempotent=True) == 1.0
    assert delay(status=500, method="GET", idempotent=False) is None


def make_error(kind: type[httpx.TransportError]) -> httpx.TransportError:
    return kind("boom", request=httpx.Request("GET", API))


@pytest.mark.parametrize(
    ("kind", "method", "retried"),
    [
        (httpx.ReadError, "GET", True),
        (httpx.ReadTimeout, "GET", True),
        (httpx.RemoteProtocolError, "DELETE", True),
        (httpx.ReadError, "POST", False),
        (httpx.WriteError, "PATCH", False),
        (httpx.ConnectError, "POST", True),  # never reached the service
        (httpx.ConnectTimeout, "POST", True),
        (httpx.UnsupportedProtocol, "GET", False),
        (httpx.LocalProtocolError, "GET", False),
    ],
)
def test_network_errors(kind: type[httpx.TransportError], method: str, retried: bool) -> None:
    got = delay(status=None, headers=None, method=method, error=make_error(kind))
    assert (got is not None) is retried


def test_no_status_and_no_error_is_not_retried() -> None:
    assert delay(status=None, headers=None) is None


# --- check_same_origin ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        API + "accounts?$skiptoken=x",
        "https://CONTOSO.crm.dynamics.com:443/api/data/v9.2/",
        "/api/data/v9.2/accounts",
        "accounts?$top=1",
    ],
)
def test_same_origin_passes(url: str) -> None:
    check_same_origin(url, API)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://evil.example/api/data/v9.2/accounts", "https://evil.example:443"),
        ("http://contoso.crm.dynamics.com/api/data/v9.2/", "http://contoso.crm.dynamics.com:80"),
        ("https://contoso.crm.dynamics.com:8443/", "https://contoso.crm.dynamics.com:8443"),
        ("https://contoso.crm.dynamics.com.evil.example/", "contoso.crm.dynamics.com.evil.example"),
        ("//evil.example/x", "evil.example"),
    ],
)
def test_other_origins_are_refused_with_the_host_named(url: str, shown: str) -> None:
    with pytest.raises(TransportError, match="token never leaves") as info:
        check_same_origin(url, API)
    assert shown in str(info.value)


# --- RetryTransport --------------------------------------------------------------------


class Recorder:
    """Fake sleep and on_wait callback that record what they were asked."""

    def __init__(self) -> None:
        self.sleeps: list[float] = []
        self.waits: list[tuple[float, str]] = []

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)

    def on_wait(self, seconds: float, reason: str) -> None:
        self.waits.append((seconds, reason))


def client_for(
    handler: Callable[[httpx.Request], httpx.Response],
    recorder: Recorder,
    *,
    policy: RetryPolicy = NO_JITTER,
    limiter: AdaptiveLimiter | None = None,
) -> tuple[httpx.AsyncClient, RetryTransport]:
    transport = RetryTransport(
        httpx.MockTransport(handler),
        origin=ORIGIN,
        policy=policy,
        sleep=recorder.sleep,
        on_wait=recorder.on_wait,
        limiter=limiter,
        rng=random.Random(0),
    )
    return httpx.AsyncClient(transport=transport, follow_redirects=False), transport


def scripted(
    *responses: httpx.Response | Exception,
) -> tuple[Callable[..., httpx.Response], list[httpx.Request]]:
    seen: list[httpx.Request] = []
    queue = list(responses)

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        item = queue.pop(0)
        if isinstance(item, Exception):
            raise item
        return item

    return handler, seen


@pytest.mark.asyncio
async def test_429_then_200_waits_retry_after_and_reports() -> None:
    handler, seen = scripted(
        httpx.Response(429, headers={"Retry-After": "12"}, json={"error": {"code": "0x80072322"}}),
        httpx.Response(200, json={"value": []}),
    )
    recorder = Recorder()
    client, transport = client_for(handler, recorder)
    async with client:
        response = await client.get(API + "accounts")
    assert response.status_code == 200 and response.json() == {"value": []}
    assert len(seen) == 2
    assert recorder.sleeps == [12.0]
    assert recorder.waits == [(12.0, "throttled by the service")]
    assert (transport.stats.throttled, transport.stats.retries, transport.stats.waited) == (
        1,
        1,
        12.0,
    )


@pytest.mark.asyncio
async def test_garbage_retry_after_uses_backoff() -> None:
    handler, _ = scripted(
        httpx.Response(429, headers={"Retry-After": "tomorrow-ish"}),
        httpx.Response(429),
        httpx.Response(204),
    )
    recorder = Recorder()
    client, _ = client_for(handler, recorder)
    async with client:
        response = await client.get(API + "WhoAmI")
    assert response.status_code == 204
    assert recorder.sleeps == [1.0, 2.0]


@pytest.mark.asyncio
async def test_budget_exhausted_on_429_raises_throttled_error() -> None:
    handler, seen = scripted(*[httpx.Response(429, headers={"Retry-After": "30"})] * 3)
    recorder = Recorder()
    client, transport = client_for(handler, recorder, policy=RetryPolicy(max_attempts=3))
    async with client:
        with pytest.raises(ThrottledError) as info:
            await client.get(API + "accounts")
    assert info.value.retry_after == 30.0
    assert "after 3 attempts and 60 s of waiting" in str(info.value)
    assert "Wait 30 s" in str(info.value)
    assert len(seen) == 3 and recorder.sleeps == [30.0, 30.0]
    assert transport.stats.throttled == 3


@pytest.mark.asyncio
async def test_total_wait_budget_stops_before_a_long_wait() -> None:
    handler, seen = scripted(httpx.Response(429, headers={"Retry-After": "120"}))
    recorder = Recorder()
    client, _ = client_for(handler, recorder, policy=RetryPolicy(max_total_wait=60))
    async with client:
        with pytest.raises(ThrottledError) as info:
            await client.get(API + "accounts")
    assert info.value.retry_after == 120.0
    assert recorder.sleeps == [] and len(seen) == 1


@pytest.mark.asyncio
async def test_exhausted_503_returns_the_last_response() -> None:
    handler, _ = scripted(httpx.Response(503), httpx.Response(503, text="down"))
    recorder = Recorder()
    client, _ = client_for(handler, recorder, policy=RetryPolicy(max_attempts=2, jitter=0))
    async with client:
        response = await client.get(API + "accounts")
    assert response.status_code == 503 and response.text == "down"
    assert recorder.waits == [(1.0, "the service answered HTTP 503")]


@pytest.mark.asyncio
async def test_network_error_on_get_is_retried() -> None:
    handler, seen = scripted(httpx.ReadError("connection reset"), httpx.Response(200, text="ok"))
    recorder = Recorder()
    client, _ = client_for(handler, recorder)
    async with client:
        response = await client.get(API + "accounts")
    assert response.text == "ok" and len(seen) == 2
    assert recorder.waits == [(1.0, "network error (ReadError)")]


@pytest.mark.asyncio
async def test_network_error_on_post_is_not_retried() -> None:
    handler, seen = scripted(httpx.ReadError("connection reset"), httpx.Response(201))
    recorder = Recorder()
    client, _ = client_for(handler, recorder)
    async with client:
        with pytest.raises(
            TransportError, match="POST contoso.crm.dynamics.com failed after 1 attempt: ReadError"
        ) as info:
            await client.post(API + "accounts", json={"name": "A"})
    assert isinstance(info.value.__cause__, httpx.ReadError)
    assert len(seen) == 1 and recorder.sleeps == []


class StreamingTransport(httpx.AsyncBaseTransport):
    """Reads the body from `request.stream` on every attempt, as a network transport does."""

    def __init__(self, *outcomes: httpx.Response | Exception) -> None:
        self.outcomes = list(outcomes)
        self.bodies: list[bytes] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        assert isinstance(request.stream, httpx.AsyncByteStream)
        self.bodies.append(b"".join([chunk async for chunk in request.stream]))
        outcome = self.outcomes.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome


@pytest.mark.asyncio
async def test_marked_post_is_retried_and_resends_the_same_body() -> None:
    inner = StreamingTransport(httpx.ReadError("reset"), httpx.Response(500), httpx.Response(204))
    recorder = Recorder()
    transport = RetryTransport(inner, origin=ORIGIN, policy=NO_JITTER, sleep=recorder.sleep)
    payload = b'{"accountid": "00000000-0000-0000-0000-000000000001", "name": "A"}'

    async def body() -> AsyncIterator[
        bytes
    ]:  # a one-shot streaming body: it must be buffered to be sent again
        yield payload[:20]
        yield payload[20:]

    async with httpx.AsyncClient(transport=transport) as client:
        request = client.build_request("POST", API + "accounts", content=body())
        request.extensions[IDEMPOTENT_EXTENSION] = True
        response = await client.send(request)
    assert response.status_code == 204
    assert inner.bodies == [payload, payload, payload]
    assert recorder.sleeps == [1.0, 2.0]


@pytest.mark.asyncio
async def test_network_errors_exhausted_raise_transport_error() -> None:
    handler, seen = scripted(*[httpx.ConnectError("refused")] * 2)
    recorder = Recorder()
    client, _ = client_for(handler, recorder, policy=RetryPolicy(max_attempts=2, jitter=0))
    async with client:
        with pytest.raises(TransportError, match="after 2 attempts: ConnectError") as info:
            await client.get(API + "accounts")
    assert isinstance(info.value.__cause__, httpx.ConnectError)
    assert len(seen) == 2


@pytest.mark.asyncio
async def test_other_hosts_are_refused_before_sending() -> None:
    handler, seen = scripted(httpx.Response(200))
    client, _ = client_for(handler, Recorder())
    async with client:
        with pytest.raises(TransportError, match="evil.example") as info:
            await client.get(
                "https://evil.example/steal", headers={"Authorization": "Bearer secret-token"}
            )
    assert seen == []
    assert "secret-token" not in str(info.value)


@pytest.mark.asyncio
async def test_redirect_raises_a_clear_error() -> None:
    handler, _ = scripted(httpx.Response(302, headers={"Location": "https://login.example/x"}))
    client, _ = client_for(handler, Recorder())
    async with client:
        with pytest.raises(TransportError, match=r"redirect \(302\) to login.example") as info:
            await client.get(API + "accounts")
    assert "Service URL" in str(info.value)


@pytest.mark.asyncio
async def test_not_modified_is_not_a_redirect() -> None:
    handler, _ = scripted(httpx.Response(304))
    client, _ = client_for(handler, Recorder())
    async with client:
        assert (await client.get(API + "accounts(1)")).status_code == 304


@pytest.mark.asyncio
async def test_transport_feeds_the_limiter() -> None:
    handler, _ = scripted(
        httpx.Response(429, headers={"Retry-After": "1", "x-ms-dop-hint": "3"}),
        httpx.Response(200),
    )
    limiter = AdaptiveLimiter(initial=4, maximum=10)
    client, _ = client_for(handler, Recorder(), limiter=limiter)
    async with client:
        await client.get(API + "accounts")
    assert limiter.dop_hint == 3
    assert limiter.limit == 2  # halved by the 429, then one healthy answer


def test_default_inner_transport_is_httpx() -> None:
    transport = RetryTransport(origin=ORIGIN)
    assert isinstance(transport._transport, httpx.AsyncHTTPTransport)
    assert transport.policy == DEFAULT_RETRY_POLICY


# --- AdaptiveLimiter ---------------------------------------------------------------------


def test_limiter_grows_additively_while_healthy() -> None:
    limiter = AdaptiveLimiter(initial=2, maximum=5)
    limits = []
    for _ in range(14):
        limiter.observe(200, {})
        limits.append(limiter.limit)
    assert limits == [2, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 5, 5]


def test_limiter_halves_on_429_but_not_below_minimum() -> None:
    limiter = AdaptiveLimiter(initial=16, maximum=32)
    limiter.observe(429, {})
    assert limiter.limit == 8
    for _ in range(5):
        limiter.observe(429, {})
    assert limiter.limit == 1
    limiter = AdaptiveLimiter(initial=16, maximum=32, minimum=4)
    for _ in range(5):
        limiter.observe(429, {})
    assert limiter.limit == 4


def test_limiter_honours_the_dop_hint_and_the_user_cap() -> None:
    limiter = AdaptiveLimiter(initial=8, maximum=20)
    limiter.observe(200, {"x-ms-dop-hint": "4"})
    assert (limiter.limit, limiter.ceiling) == (4, 4)
    for _ in range(50):
        limiter.observe(200, {})
    assert limiter.limit == 4
    limiter.observe(200, {"x-ms-dop-hint": "50"})
    assert limiter.ceiling == 20
    limiter.observe(200, {"x-ms-dop-hint": "garbage"})
    assert limiter.dop_hint == 50


def test_limiter_starts_at_a_known_dop_hint_and_reports_new_ones() -> None:
    seen: list[int] = []
    limiter = AdaptiveLimiter(initial=16, maximum=16, dop_hint=3, on_hint=seen.append)
    assert (limiter.limit, limiter.ceiling) == (3, 3)
    limiter.observe(200, {"x-ms-dop-hint": "3"})
    limiter.observe(200, {"x-ms-dop-hint": "6"})
    limiter.observe(200, {"x-ms-dop-hint": "6"})
    assert seen == [6] and limiter.ceiling == 6
    assert AdaptiveLimiter(initial=16, maximum=8, dop_hint=12).limit == 8  # the cap wins
    assert AdaptiveLimiter(initial=16, maximum=16, dop_hint=0).limit == 16  # not a hint


@pytest.mark.parametrize(
    "headers",
    [
        {"x-ms-ratelimit-burst-remaining-xrm-requests": "40"},
        {"X-MS-RateLimit-Time-Remaining-xrm-Requests": "12.5"},
        {"x-ms-ratelimit-time-remaining-xrm-requests": "1,0"},
    ],
)
def test_limiter_slows_down_before_the_service_refuses(headers: dict[str, str]) -> None:
    limiter = AdaptiveLimiter(initial=8)
    limiter.observe(200, headers)
    assert limiter.limit == 4


def test_limiter_ignores_plenty_of_budget() -> None:
    limiter = AdaptiveLimiter(initial=2)
    limiter.observe(
        200,
        {
            "x-ms-ratelimit-burst-remaining-xrm-requests": "7500",
            "x-ms-ratelimit-time-remaining-xrm-requests": "960",
        },
    )
    assert limiter.limit == 2


@pytest.mark.asyncio
async def test_one_cut_per_burst_of_in_flight_429s() -> None:
    limiter = AdaptiveLimiter(initial=8, maximum=8)
    for _ in range(8):
        await limiter.acquire()
    # Eight requests were in flight; all come back 429.  One cut, not eight.
    for _ in range(8):
        limiter.observe(429, {})
        limiter.release()
    assert limiter.limit == 4 and limiter.active == 0
    limiter.observe(429, {})  # a new 429, from a request sent under the new limit
    assert limiter.limit == 2


@pytest.mark.asyncio
async def test_limiter_bounds_concurrency_and_wakes_waiters() -> None:
    limiter = AdaptiveLimiter(initial=2, maximum=4)
    peak = 0
    gates = [asyncio.Event() for _ in range(6)]

    async def work(i: int) -> None:
        nonlocal peak
        async with limiter:
            peak = max(peak, limiter.active)
            await gates[i].wait()
            limiter.observe(200, {})

    tasks = [asyncio.create_task(work(i)) for i in range(6)]
    await asyncio.sleep(0)
    assert limiter.active == 2
    for gate in gates:
        gate.set()
        await asyncio.sleep(0)
    await asyncio.wait_for(asyncio.gather(*tasks), timeout=5)
    assert peak <= 4 and limiter.active == 0
    assert "AdaptiveLimiter(limit=" in repr(limiter)


@pytest.mark.asyncio
async def test_cancelled_waiter_does_not_lose_the_slot() -> None:
    limiter = AdaptiveLimiter(initial=1, maximum=1)
    await limiter.acquire()
    first = asyncio.create_task(limiter.acquire())
    second = asyncio.create_task(limiter.acquire())
    await asyncio.sleep(0)
    limiter.release()  # wakes `first` ...
    first.cancel()  # ... which is cancelled before it runs
    await asyncio.wait_for(second, timeout=5)
    assert limiter.active == 1


def test_limiter_refuses_bad_bounds() -> None:
    with pytest.raises(ValueError):
        AdaptiveLimiter(minimum=5, maximum=2)


def test_module_exports_are_sorted_and_present() -> None:
    import d365nb._transport as module

    assert module.__all__ == sorted(module.__all__)
    assert all(hasattr(module, name) for name in module.__all__)


def test_limiter_remembers_the_budget_and_the_429s_it_saw() -> None:
    limiter = AdaptiveLimiter(initial=16, maximum=16)
    assert (limiter.burst_remaining, limiter.throttled) == (None, 0)
    limiter.observe(200, {"x-ms-ratelimit-burst-remaining-xrm-requests": "5990"})
    limiter.observe(429, {"x-ms-ratelimit-burst-remaining-xrm-requests": "0"})
    assert (limiter.burst_remaining, limiter.throttled) == (0, 1)


@pytest.mark.asyncio
async def test_a_session_starts_its_limiter_at_the_users_cap() -> None:
    from d365nb._config import Settings
    from d365nb._session import Session

    settings = Settings.resolve(
        service_url="https://contoso.crm.dynamics.com",
        client_id="00000000-0000-0000-0000-000000000001",
        tenant="contoso.onmicrosoft.com",
        access_token="x",
    )
    session = Session(settings, token_cache=False, max_concurrency=12)
    try:
        assert (session.limiter.limit, session.limiter.ceiling) == (12, 12)
        session.limiter.observe(200, {"x-ms-dop-hint": "4"})
        assert session.limiter.limit == 4
    finally:
        await session.aclose()
