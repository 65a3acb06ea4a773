"""Tests for d365nb.sandbox._limits: service-protection limits, latency and faults."""

from __future__ import annotations

import asyncio
import base64
import json
import random
import ssl
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
import trustme
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from d365nb._exceptions import ConfigError
from d365nb.sandbox._limits import KNOBS, ROWS_HEADER, ServiceProtection
from d365nb.sandbox._options import SandboxOptions

API = "https://sandbox.test/api/data/v9.2"


def token(oid: str = "user-1", appid: str = "app-1") -> str:
    """An unsigned JWT: the middleware only reads its payload."""

    def part(data: dict[str, Any]) -> str:
        raw = base64.urlsafe_b64encode(json.dumps(data).encode()).decode()
        return raw.rstrip("=")

    return f"{part({'alg': 'RS256', 'typ': 'JWT'})}.{part({'oid': oid, 'appid': appid})}.sig"


def auth(oid: str = "user-1", appid: str = "app-1") -> dict[str, str]:
    return {"Authorization": f"Bearer {token(oid, appid)}"}


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class RecordingSleep:
    """Records the latency the middleware asks for, without waiting."""

    def __init__(self) -> None:
        self.calls: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


class Inner:
    """A tiny stand-in for the Web API app."""

    def __init__(self, clock: FakeClock | None = None) -> None:
        self.clock = clock
        self.release = asyncio.Event()
        self.holding = 0
        self.writes = 0
        self.app = Starlette(
            routes=[
                Route("/api/data/v9.2/WhoAmI", self.whoami),
                Route("/api/data/v9.2/rows/{n:int}", self.rows),
                Route("/api/data/v9.2/work/{ms:int}", self.work),
                Route("/api/data/v9.2/hold", self.hold),
                Route("/api/data/v9.2/accounts", self.create, methods=["POST"]),
            ]
        )

    async def whoami(self, request: Request) -> Response:
        return JSONResponse({"UserId": "22cc22cc-dd33-ee44-ff55-66aa66aa66aa"})

    async def rows(self, request: Request) -> Response:
        n = request.path_params["n"]
        rows = [{"accountid": str(i), "name": f"Account {i}"} for i in range(n)]
        return JSONResponse({"value": rows}, headers={ROWS_HEADER: str(n)})

    async def work(self, request: Request) -> Response:
        assert self.clock is not None
        self.clock.advance(request.path_params["ms"] / 1000)
        return JSONResponse({"value": []})

    async def hold(self, request: Request) -> Response:
        self.holding += 1
        await self.release.wait()
        return JSONResponse({"value": []})

    async def create(self, request: Request) -> Response:
        self.writes += 1
        return Response(status_code=204, headers={"OData-EntityId": f"{API}/accounts(1)"})


def make(
    clock: FakeClock | None = None, sleep: RecordingSleep | None = None, **knobs: Any
) -> tuple[ServiceProtection, Inner, httpx.AsyncClient]:
    clock = clock or FakeClock()
    inner = Inner(clock)
    middleware = ServiceProtection(
        inner.app, SandboxOptions(**knobs), clock=clock, sleep=sleep or RecordingSleep()
    )
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=middleware), base_url=API)
    return middleware, inner, client


# -- number of requests -------------------------------------------------------------------


@pytest.mark.asyncio
async def test_429_after_max_requests_with_code_message_and_retry_after() -> None:
    _, _, client = make(max_requests_per_window=3, dop_hint=6)
    async with client:
        remaining = []
        for _ in range(3):
            r = await client.get("/WhoAmI", headers=auth())
            assert r.status_code == 200
            assert r.headers["x-ms-dop-hint"] == "6"
            remaining.append(r.headers["x-ms-ratelimit-burst-remaining-xrm-requests"])
        assert remaining == ["2", "1", "0"]

        r = await client.get("/WhoAmI", headers=auth())
    assert r.status_code == 429
    assert r.headers["Retry-After"] == "300"
    assert r.headers["Content-Type"] == "application/json; odata.metadata=minimal"
    assert r.headers["OData-Version"] == "4.0"
    assert r.headers["x-ms-dop-hint"] == "6"
    assert r.json() == {
        "error": {
            "code": "0x80072322",
            "message": "Number of requests exceeded the limit of 3 over time window of "
            "300 seconds.",
        }
    }


@pytest.mark.asyncio
async def test_window_slides() -> None:
    clock = FakeClock()
    _, _, client = make(clock, max_requests_per_window=3, window_seconds=300)
    async with client:
        for _ in range(3):
            assert (await client.get("/WhoAmI", headers=auth())).status_code == 200
            clock.advance(100)  # requests at t=0, 100, 200
        clock.advance(-50)  # t=250
        r = await client.get("/WhoAmI", headers=auth())
        assert r.status_code == 429
        assert r.headers["Retry-After"] == "50"  # the t=0 request leaves at t=300
        clock.advance(50)
        assert (await client.get("/WhoAmI", headers=auth())).status_code == 200
        assert (await client.get("/WhoAmI", headers=auth())).status_code == 429


@pytest.mark.asyncio
async def test_retry_after_override() -> None:
    _, _, client = make(max_requests_per_window=1, retry_after_seconds=7)
    async with client:
        await client.get("/WhoAmI", headers=auth())
        r = await client.get("/WhoAmI", headers=auth())
    assert (r.status_code, r.headers["Retry-After"]) == (429, "7")


@pytest.mark.asyncio
async def test_users_are_limited_separately() -> None:
    _, _, client = make(max_requests_per_window=2)
    async with client:
        for _ in range(2):
            assert (await client.get("/WhoAmI", headers=auth("alice"))).status_code == 200
        assert (await client.get("/WhoAmI", headers=auth("alice"))).status_code == 429
        bob = await client.get("/WhoAmI", headers=auth("bob"))
        assert bob.status_code == 200
        assert bob.headers["x-ms-ratelimit-burst-remaining-xrm-requests"] == "1"
        # the same user through another application is another connection
        other_app = await client.get("/WhoAmI", headers=auth("alice", "app-2"))
        assert other_app.status_code == 200


@pytest.mark.asyncio
async def test_requests_without_token_pass_through_untouched() -> None:
    _, _, client = make(max_requests_per_window=1, fault_503_rate=1.0, latency_ms=100)
    async with client:
        for headers in ({}, {"Authorization": "Bearer not-a-jwt"}, {"Authorization": "Basic x"}):
            r = await client.get("/WhoAmI", headers=headers)
            assert r.status_code == 200
            assert "x-ms-dop-hint" not in r.headers


# -- execution time -----------------------------------------------------------------------


@pytest.mark.asyncio
async def test_execution_time_limit_applies_after_it_is_exceeded() -> None:
    clock = FakeClock()
    _, _, client = make(clock, max_execution_seconds_per_window=1.0, window_seconds=60)
    async with client:
        first = await client.get("/work/600", headers=auth())
        assert first.status_code == 200
        assert first.headers["x-ms-ratelimit-time-remaining-xrm-requests"] == "0.40"
        # 1.2 s in total: the request that crosses the budget still runs
        assert (await client.get("/work/600", headers=auth())).status_code == 200
        r = await client.get("/work/600", headers=auth())
        assert r.status_code == 429
        assert r.json()["error"]["code"] == "0x80072321"
        # dropping the first run (ended t=0.6) brings the total under budget at t=60.6
        assert r.headers["Retry-After"] == "60"
        clock.advance(59.4)
        assert (await client.get("/work/1", headers=auth())).status_code == 200


@pytest.mark.asyncio
async def test_execution_time_message_matches_the_reference() -> None:
    _, _, client = make()  # Dataverse defaults: 1,200 s per 300 s
    async with client:
        await client.get("/work/1200001", headers=auth())
        r = await client.get("/WhoAmI", headers=auth())
    assert r.status_code == 429
    assert r.json()["error"]["message"] == (
        "Combined execution time of incoming requests exceeded limit of 1,200,000  "
        "milliseconds over time window of 300 seconds. Decrease number of concurrent "
        "requests or reduce the duration of requests and try again later."
    )


# -- concurrency --------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_concurrency_limit_refuses_immediately() -> None:
    _, inner, client = make(max_concurrent_requests=2)
    async with client:
        held = [asyncio.create_task(client.get("/hold", headers=auth())) for _ in range(2)]
        for _ in range(100):
            if inner.holding == 2:
                break
            await asyncio.sleep(0)
        assert inner.holding == 2
        r = await client.get("/hold", headers=auth())
        assert r.status_code == 429
        assert r.headers["Retry-After"] == "1"
        assert r.json() == {
            "error": {
                "code": "0x80072326",
                "message": "Number of concurrent requests exceeded the limit of 2.",
            }
        }
        other = await client.get("/WhoAmI", headers=auth("someone-else"))
        assert other.status_code == 200
        inner.release.set()
        assert [t.status_code for t in await asyncio.gather(*held)] == [200, 200]
        assert (await client.get("/hold", headers=auth())).status_code == 200


# -- latency ------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_latency_per_request_and_per_row() -> None:
    sleep = RecordingSleep()
    _, _, client = make(sleep=sleep, latency_ms=20, latency_per_row_ms=0.5)
    async with client:
        r = await client.get("/rows/10", headers=auth())
        assert len(r.json()["value"]) == 10
        assert ROWS_HEADER not in r.headers
        assert sleep.calls == [pytest.approx(0.02), pytest.approx(0.005)]
        sleep.calls.clear()
        await client.get("/rows/0", headers=auth())
        assert sleep.calls == [pytest.approx(0.02)]
        sleep.calls.clear()
        await client.get("/WhoAmI")  # no token: untouched
        assert sleep.calls == []


@pytest.mark.asyncio
async def test_no_latency_by_default() -> None:
    sleep = RecordingSleep()
    _, _, client = make(sleep=sleep)
    async with client:
        await client.get("/rows/10", headers=auth())
    assert sleep.calls == []


# -- faults -------------------------------------------------------------------------------


async def _statuses(seed: int, n: int) -> list[int]:
    _, _, client = make(fault_503_rate=0.3, fault_seed=seed)
    async with client:
        return [(await client.get("/WhoAmI", headers=auth())).status_code for _ in range(n)]


@pytest.mark.asyncio
async def test_503_share_is_deterministic_with_a_seed() -> None:
    first = await _statuses(11, 200)
    assert first == await _statuses(11, 200)
    assert first != await _statuses(12, 200)
    draws = random.Random(11)
    expected = [503 if draws.random() < 0.3 else 200 for _ in range(200)]
    assert first == expected
    assert 40 <= first.count(503) <= 80


@pytest.mark.asyncio
async def test_503_response_shape() -> None:
    _, _, client = make(fault_503_rate=1.0, retry_after_seconds=0)
    async with client:
        r = await client.get("/WhoAmI", headers=auth())
    assert r.status_code == 503
    assert r.headers["Retry-After"] == "0"
    assert r.headers["Content-Type"] == "application/json; odata.metadata=minimal"
    assert set(r.json()["error"]) == {"code", "message"}


# -- runtime knobs ------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_configure_changes_a_running_middleware() -> None:
    middleware, _, client = make()
    async with client:
        assert (await client.get("/WhoAmI", headers=auth())).status_code == 200
        middleware.configure(max_requests_per_window=1)
        assert (await client.get("/WhoAmI", headers=auth())).status_code == 429
        middleware.reset()
        assert (await client.get("/WhoAmI", headers=auth())).status_code == 200


def test_configure_rejects_unknown_and_bad_knobs() -> None:
    middleware, _, _ = make()
    with pytest.raises(ConfigError, match="Unknown sandbox knob 'port'") as info:
        middleware.configure(port=1)
    assert info.value.field == "port"
    with pytest.raises(ConfigError, match="fault_drop_rate"):
        middleware.configure(fault_503_rate=0.6, fault_drop_rate=0.6)
    with pytest.raises(ConfigError, match="max_requests_per_window"):
        middleware.configure(max_requests_per_window=0)
    assert middleware.options == SandboxOptions()
    with pytest.raises(ConfigError):
        ServiceProtection(Inner().app, SandboxOptions(window_seconds=0))


@pytest.mark.asyncio
async def test_knobs_endpoint() -> None:
    middleware, _, client = make(max_requests_per_window=1)
    knobs = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=middleware.knobs_app), base_url="https://sandbox.test"
    )
    async with client, knobs:
        r = await knobs.get("/_sandbox/knobs")
        assert r.status_code == 200
        assert set(r.json()) == KNOBS
        assert r.json()["max_requests_per_window"] == 1

        r = await knobs.post("/_sandbox/knobs", json={"latency_ms": 5, "dop_hint": 8})
        assert (r.status_code, r.json()["latency_ms"], r.json()["dop_hint"]) == (200, 5, 8)
        assert middleware.options.latency_ms == 5

        r = await knobs.post("/_sandbox/knobs", json={"nope": 1})
        assert r.status_code == 400
        assert "Unknown sandbox knob 'nope'" in r.json()["error"]["message"]
        assert (await knobs.post("/_sandbox/knobs", content=b"[1]")).status_code == 400
        assert (await knobs.put("/_sandbox/knobs")).status_code == 405

        await client.get("/WhoAmI", headers=auth())
        assert (await client.get("/WhoAmI", headers=auth())).status_code == 429
        assert (await knobs.delete("/_sandbox/knobs")).status_code == 204
        assert (await client.get("/WhoAmI", headers=auth())).status_code == 200


# -- over real HTTPS ----------------------------------------------------------------------


class _Server(uvicorn.Server):
    def install_signal_handlers(self) -> None:  # running off the main thread
        pass


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[trustme.CA, Path, Path]]:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    folder = tmp_path_factory.mktemp("tls")
    key_path, cert_path = folder / "key.pem", folder / "cert.pem"
    cert.private_key_pem.write_to_path(str(key_path))
    cert.cert_chain_pems[0].write_to_path(str(cert_path))
    yield ca, key_path, cert_path


@pytest.fixture(scope="module")
def https_server(
    tls: tuple[trustme.CA, Path, Path],
) -> Iterator[tuple[str, ServiceProtection, Inner]]:
    _, key_path, cert_path = tls
    inner = Inner()
    middleware = ServiceProtection(inner.app, SandboxOptions())
    config = uvicorn.Config(
        middleware,
        host="127.0.0.1",
        port=0,
        ssl_keyfile=str(key_path),
        ssl_certfile=str(cert_path),
        log_level="critical",
        lifespan="off",
        ws="none",
    )
    server = _Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"https://127.0.0.1:{port}/api/data/v9.2", middleware, inner
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest_asyncio.fixture
async def https_client(
    tls: tuple[trustme.CA, Path, Path], https_server: tuple[str, ServiceProtection, Inner]
) -> AsyncIterator[httpx.AsyncClient]:
    ca = tls[0]
    context = ssl.create_default_context()
    ca.configure_trust(context)
    url, middleware, _ = https_server
    middleware.configure(**{name: getattr(SandboxOptions(), name) for name in KNOBS})
    middleware.reset()
    async with httpx.AsyncClient(verify=context, base_url=url) as client:
        yield client


@pytest.mark.asyncio
async def test_dropped_connection_is_a_transport_error(
    https_client: httpx.AsyncClient, https_server: tuple[str, ServiceProtection, Inner]
) -> None:
    _, middleware, inner = https_server
    middleware.configure(fault_drop_rate=1.0)
    writes = inner.writes
    # httpx: RemoteProtocolError (short body); ReadError if TLS ends without close_notify
    with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
        await https_client.post("/accounts", json={"name": "x"}, headers=auth())
    assert inner.writes == writes + 1  # the write happened; only the answer was lost
    with pytest.raises(httpx.TransportError):
        await https_client.get("/rows/50", headers=auth())
    middleware.configure(fault_drop_rate=0.0)
    r = await https_client.post("/accounts", json={"name": "x"}, headers=auth())
    assert r.status_code == 204


@pytest.mark.asyncio
async def test_throttling_over_https(
    https_client: httpx.AsyncClient, https_server: tuple[str, ServiceProtection, Inner]
) -> None:
    _, middleware, _ = https_server
    middleware.configure(max_requests_per_window=2, retry_after_seconds=3)
    statuses = [(await https_client.get("/WhoAmI", headers=auth())).status_code for _ in range(3)]
    assert statuses == [200, 200, 429]
    r = await https_client.get("/WhoAmI", headers=auth())
    assert r.headers["Retry-After"] == "3"
    assert r.json()["error"]["code"] == "0x80072322"
