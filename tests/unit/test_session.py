"""`Session.transport_wrapper`: one layer beneath the retries, in every per-loop client."""

from __future__ import annotations

import asyncio
import threading

import httpx
import pytest

from d365nb._config import Settings
from d365nb._session import Session
from d365nb._sync import run_sync
from d365nb._transport import RetryPolicy
from d365nb.sandbox import Sandbox
from d365nb.sandbox._connect import connect_to

API = "https://contoso.crm.dynamics.com/api/data/v9.2/"


def _session(**options: object) -> Session:
    settings = Settings.resolve(
        service_url="https://contoso.crm.dynamics.com",
        client_id="00000000-0000-0000-0000-000000000001",
        tenant="contoso.onmicrosoft.com",
        access_token="x",
    )
    return Session(settings, token_cache=False, **options)  # type: ignore[arg-type]


class Throttled(httpx.AsyncBaseTransport):
    """Stands where the network is: answers 429 once, then 200; counts what reaches it."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner
        self.requests: list[str] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request.headers.get("Authorization", ""))
        if len(self.requests) == 1:
            return httpx.Response(429, headers={"Retry-After": "0"}, request=request)
        return httpx.Response(200, json={"value": []}, request=request)

    async def aclose(self) -> None:
        await self.inner.aclose()


def test_the_wrapper_sits_beneath_the_retries_on_every_loop() -> None:
    built: list[Throttled] = []

    def wrap(inner: httpx.AsyncBaseTransport) -> httpx.AsyncBaseTransport:
        built.append(Throttled(inner))
        return built[-1]

    session = _session(
        transport_wrapper=wrap, retry=RetryPolicy(backoff_base=0.01, backoff_cap=0.01)
    )

    async def get() -> tuple[int, int, int]:
        response = await session.arequest("GET", "accounts")
        stats = session.transport_stats
        return response.status_code, stats.requests, stats.retries

    loops = [asyncio.new_event_loop(), asyncio.new_event_loop()]
    try:
        answers = [loop.run_until_complete(get()) for loop in loops]
        # One client per loop, each built over its own network transport, each wrapped.
        assert len(built) == 2
        assert built[0] is not built[1]
        assert all(isinstance(w.inner, httpx.AsyncHTTPTransport) for w in built)
        assert built[0].inner is not built[1].inner
        # The retry layer saw one request and retried it once; the wrapper saw both tries,
        # each with the bearer token (it sits beneath the auth hook too).
        assert answers == [(200, 1, 1), (200, 1, 1)]
        assert [w.requests for w in built] == [["Bearer x", "Bearer x"]] * 2
    finally:
        for loop in loops:
            loop.run_until_complete(session.aclose())
            loop.close()


def test_the_wrapper_can_be_set_until_the_first_request() -> None:
    seen: list[httpx.AsyncBaseTransport] = []

    def wrap(inner: httpx.AsyncBaseTransport) -> httpx.AsyncBaseTransport:
        seen.append(inner)
        return Throttled(inner)

    session = _session(retry=RetryPolicy(backoff_base=0.01, backoff_cap=0.01))
    assert session.transport_wrapper is None
    session.transport_wrapper = wrap
    assert session.transport_wrapper is wrap

    async def main() -> None:
        try:
            assert (await session.arequest("GET", API + "accounts")).status_code == 200
            assert len(seen) == 1
            with pytest.raises(RuntimeError, match="before the connection's first request"):
                session.transport_wrapper = None
            assert session.transport_wrapper is wrap
        finally:
            await session.aclose()

    asyncio.run(main())


def test_no_wrapper_leaves_the_network_transport_beneath_the_retries() -> None:
    session = _session()

    async def main() -> None:
        try:
            stats = session.transport_stats
            assert (stats.requests, stats.attempts) == (0, 0)
        finally:
            await session.aclose()

    asyncio.run(main())


class Counting(httpx.AsyncBaseTransport):
    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner
        self.statuses: list[int] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        self.statuses.append(response.status_code)
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()


@pytest.mark.sandbox
def test_the_wrapper_carries_real_requests_from_two_loops(sandbox: Sandbox) -> None:
    built: list[Counting] = []

    def wrap(inner: httpx.AsyncBaseTransport) -> httpx.AsyncBaseTransport:
        built.append(Counting(inner))
        return built[-1]

    conn = connect_to(sandbox)
    conn.transport_wrapper = wrap

    async def ask() -> int:
        await conn.arequest("GET", "WhoAmI")
        return conn.transport_stats.attempts

    other = asyncio.new_event_loop()
    thread = threading.Thread(target=other.run_forever, daemon=True)
    thread.start()
    try:
        # The blocking API's loop, then a loop of this test's own.
        attempts = [run_sync(ask()), asyncio.run_coroutine_threadsafe(ask(), other).result(60)]
    finally:
        conn.close()  # closes the clients of both (running) loops
        other.call_soon_threadsafe(other.stop)
        thread.join(10)
        other.close()
    assert len(built) == 2
    assert [w.statuses for w in built] == [[200], [200]]
    assert attempts == [1, 1]
