"""How workers sign in without a secret ever travelling in a task graph.

`Login` is what a task carries: the connection's settings as a connection string without
secrets (`Settings.to_connection_string()`), the CA certificates the connection trusts
(public), and one of two ways to a token:

* `"token"` (the default): short-lived access tokens issued by the client process.  A
  `TokenRelay` thread there puts the connection's current token on the scheduler (Dask's
  metadata store, not the graph) and renews it before it expires, or when a worker asks
  (its token was refused); workers take it from there through `RelayCredential`.  Any
  grant works, and the client secret or refresh token stays in the client process.
* `"environment"`: workers resolve the settings with their own environment
  (`D365NB_CLIENT_SECRET`, ...) and sign in themselves, e.g. with client credentials.
  For long unattended jobs whose client process may go away.

A worker keeps one connection per `Login` (`worker_connection()`), with the cluster's
request budget (`_budget`) between its retry layer and the network.
"""

from __future__ import annotations

import ssl
import threading
import time
import uuid
import weakref
from dataclasses import dataclass, field
from typing import Any, Literal

from .._client import Connection
from .._connect import connect
from .._exceptions import AuthError, ConfigError
from ._budget import Budget, GatedTransport, gate_for
from ._internals import access_token, connection_by_id, run_sync, wrap_transport

__all__ = ["Credentials", "Login", "RelayCredential", "TokenRelay", "login_for"]

Credentials = Literal["token", "environment"]

_RELAY_KEY = "d365nb-token"
# Tokens are renewed when they have less than this to live (the engine refreshes its own at
# five minutes, so a worker's token never falls under the engine's margin).
_MIN_LIFE = 600.0
_RELAY_POLL = 1.0
_WAIT_FOR_NEW = 30.0


@dataclass(frozen=True)
class Login:
    """What a task needs to reach the service as the client's identity; nothing secret."""

    connection_string: str = field(repr=False)
    credentials: Credentials
    cadata: bytes | bool = field(repr=False)
    relay: str | None
    origin: str  # the client connection's id: tasks run in its own process use it
    timeout: float = 120.0
    max_concurrency: int = 16

    def __repr__(self) -> str:
        return f"Login(credentials={self.credentials!r}, relay={self.relay!r})"


def login_for(conn: Connection, credentials: Credentials, client: Any | None) -> Login:
    """The `Login` for tasks of `conn`; starts the token relay when tokens travel."""
    if credentials not in ("token", "environment"):
        raise ConfigError(
            f"credentials={credentials!r} is not valid.",
            field="credentials",
            hint="Use 'token' (access tokens from this process) or 'environment' (workers "
            "sign in with the secrets of their own environment).",
        )
    from ._internals import trusted_certificates

    relay = None
    if credentials == "token" and client is not None:
        relay = TokenRelay.start(conn, client).key
    return Login(
        connection_string=conn.settings.to_connection_string(include_secrets=False),
        credentials=credentials,
        cadata=trusted_certificates(conn),
        relay=relay,
        origin=conn.id,
        timeout=conn.timeout,
        max_concurrency=conn.max_concurrency,
    )


# -- the client side of the token relay -----------------------------------------------------


class TokenRelay:
    """Keeps a fresh access token of one connection on the scheduler, under one key."""

    _running: dict[tuple[str, str], TokenRelay] = {}
    _lock = threading.Lock()

    def __init__(self, conn: Connection, client: Any) -> None:
        self.key = uuid.uuid4().hex
        self._conn = weakref.ref(conn)
        self._client = client
        self._stop = threading.Event()
        self._published = 0.0  # expires_on of the token on the scheduler
        self._thread = threading.Thread(target=self._run, name="d365nb-token-relay", daemon=True)

    @classmethod
    def start(cls, conn: Connection, client: Any) -> TokenRelay:
        """The relay of `conn` for `client`'s cluster, started (and a token on it) once."""
        ident = (conn.id, str(client.scheduler.address))
        with cls._lock:
            relay = cls._running.get(ident)
            if relay is not None and relay._thread.is_alive():
                return relay
            relay = cls(conn, client)
            relay._publish(force=False)  # before any task can ask
            relay._thread.start()
            cls._running[ident] = relay
            return relay

    def stop(self) -> None:
        """Stop renewing (tokens already handed out live until they expire)."""
        self._stop.set()

    def _publish(self, *, force: bool) -> None:
        conn = self._conn()
        if conn is None:
            self._stop.set()
            return

        async def fresh() -> Any:
            if force:
                return await access_token(conn, min_life=float("inf"))
            return await access_token(conn, min_life=_MIN_LIFE)

        token = run_sync(fresh)
        if force or token.expires_on != self._published:
            self._client.set_metadata(
                [_RELAY_KEY, self.key], {"token": token.token, "expires_on": token.expires_on}
            )
            self._published = token.expires_on

    def _run(self) -> None:
        while not self._stop.wait(_RELAY_POLL):
            conn = self._conn()
            if (
                conn is None
                or getattr(conn, "_closed", False)
                or self._client.status
                in (
                    "closing",
                    "closed",
                )
            ):
                return
            try:
                wanted = self._client.get_metadata([_RELAY_KEY, self.key + ":want"], 0.0)
                stale = self._published - time.time() < _MIN_LIFE
                if stale or float(wanted) >= self._published:
                    self._publish(force=float(wanted) >= self._published)
            except Exception:  # the cluster or the service is away for a moment: next round
                continue


# -- the worker side ------------------------------------------------------------------------


class _Token:
    def __init__(self, token: str, expires_on: float) -> None:
        self.token = token
        self.expires_on = int(expires_on)

    def __repr__(self) -> str:
        return "_Token(<hidden>)"


class RelayCredential:
    """An azure-identity style credential whose tokens come from the client's relay."""

    def __init__(self, key: str) -> None:
        self.key = key
        self._last: str | None = None

    def __repr__(self) -> str:
        return f"RelayCredential({self.key!r})"

    def _read(self, client: Any) -> dict[str, Any] | None:
        value = client.get_metadata([_RELAY_KEY, self.key], None)
        return value if isinstance(value, dict) and "token" in value else None

    def get_token(self, *scopes: str, **kwargs: Any) -> _Token:
        from distributed import get_client

        client = get_client()
        entry = self._read(client)
        if entry is not None and entry["token"] == self._last:
            # Asked again for the token handed out last: it was refused or is old.  Ask
            # the client process for a new one and wait a little for it.
            client.set_metadata([_RELAY_KEY, self.key + ":want"], float(entry["expires_on"]))
            deadline = time.monotonic() + _WAIT_FOR_NEW
            while time.monotonic() < deadline:
                time.sleep(0.25)
                newer = self._read(client)
                if newer is not None and newer["token"] != self._last:
                    entry = newer
                    break
        if entry is None:
            raise AuthError(
                "No access token from the client process reached this worker.",
                hint="Create the distributed Client before d365nb.dask.read()/push(), keep "
                "the client process running while the job runs, or pass "
                "credentials='environment'.",
            )
        self._last = str(entry["token"])
        return _Token(self._last, float(entry["expires_on"]))


_CONNECTIONS: dict[tuple[Login, Budget], Connection] = {}
_CONNECTIONS_LOCK = threading.Lock()


def _ssl_context(cadata: bytes | bool) -> ssl.SSLContext | bool:
    if cadata is False:
        return False
    if cadata is True or not cadata:
        return True
    assert isinstance(cadata, bytes)
    return ssl.create_default_context(cadata=cadata)


def worker_connection(login: Login, budget: Budget) -> Connection:
    """The connection tasks of this process use for `login`, within `budget`.

    In the client's own process (Dask's threaded scheduler) that is the client's
    connection itself; elsewhere one connection per login and budget, built once.
    """
    gate = gate_for(budget)
    own = connection_by_id(login.origin)
    if own is not None and not getattr(own, "_closed", False) and gate.semaphore is None:
        return own
    key = (login, budget)
    with _CONNECTIONS_LOCK:
        conn = _CONNECTIONS.get(key)
        if conn is not None and not getattr(conn, "_closed", False):
            return conn
        options: dict[str, Any] = {
            "verify": _ssl_context(login.cadata),
            "token_cache": False,
            "timeout": login.timeout,
            "max_concurrency": login.max_concurrency,
        }
        if login.credentials == "token":
            if login.relay is None:
                raise AuthError(
                    "This job was built without a distributed Client, so no access token "
                    "can reach the workers.",
                    hint="Create the Client first, or pass credentials='environment'.",
                )
            options["credential"] = RelayCredential(login.relay)
        conn = connect(login.connection_string, **options)
        wrap_transport(conn, lambda inner: GatedTransport(inner, gate))
        _CONNECTIONS[key] = conn
        return conn
