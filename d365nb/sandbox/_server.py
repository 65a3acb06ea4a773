"""Running the sandbox: an HTTPS server on loopback, in a thread or a child process.

```python
with d365nb.sandbox.start(rows=200) as sb:
    app = msal.PublicClientApplication(sb.public_client_id, authority=sb.authority, ...)
```

`start()` binds the listening socket itself (so the port is known before the server
runs), makes sure the CA and server certificate exist in the data directory, and serves
the ASGI app with uvicorn.  `start(subprocess=True)` runs ``python -m d365nb.sandbox`` in a
child process instead and reads the JSON line it prints.
"""

from __future__ import annotations

import dataclasses
import difflib
import ipaddress
import json
import os
import secrets
import signal
import socket
import subprocess as _subprocess
import sys
import threading
import time
import warnings
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

import httpx

if TYPE_CHECKING:
    from .._client import Connection

from .._exceptions import ConfigError
from ._certs import CertificatePaths, ensure_certificates, ensure_private_dir
from ._connect import connect
from ._info import ADMIN_HEADER, SandboxInfo, register, running, sandbox_info
from ._options import SandboxOptions

__all__ = [
    "KEEP_ALIVE_SECONDS",
    "KnobChange",
    "Sandbox",
    "make_options",
    "running_sandboxes",
    "start",
    "wait_for_signal",
]

# Seeding 1,000,000 accounts in a fresh child takes about a minute on 2 cores.
_START_TIMEOUT = 300.0
# The knob that moves the identity service's clock (`/_sandbox/clock`); the others go to
# the Web API's `/_sandbox/knobs`.
_CLOCK_KNOB = "clock_offset"
# How long an idle HTTPS connection stays open (see `_ServerThread`).
KEEP_ALIVE_SECONDS = 240


def make_options(options: SandboxOptions | None = None, **knobs: Any) -> SandboxOptions:
    """`options` (or the defaults) with `knobs` applied, each checked by name.

    **Parameters:**

    * **options** - a starting point; `SandboxOptions()` when omitted.
    * **knobs** - `SandboxOptions` fields as keyword arguments.
    """
    names = [f.name for f in dataclasses.fields(SandboxOptions)]
    for name in knobs:
        if name not in names:
            close = difflib.get_close_matches(name, names, n=1)
            hint = f"Did you mean {close[0]!r}?" if close else f"Known options: {', '.join(names)}."
            raise ConfigError(f"Unknown sandbox option {name!r}.", field=name, hint=hint)
    if "data_dir" in knobs and knobs["data_dir"] is not None:
        knobs["data_dir"] = Path(knobs["data_dir"]).expanduser()
    return (options or SandboxOptions()).replace(**knobs)


def _display_host(host: str) -> str:
    """The host name clients use for a server bound to `host`."""
    if host in ("", "0.0.0.0", "::"):
        return "127.0.0.1"
    try:
        if ipaddress.ip_address(host).version == 6:
            return f"[{host}]"
    except ValueError:
        pass
    return host


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto=IPPROTO_TCP matters: asyncio sets TCP_NODELAY only on sockets whose proto says
    # TCP, and accepted sockets inherit the listener's.  Without it, Nagle's algorithm and
    # delayed ACKs stall every small response (~40 ms each), as no real service does.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if os.name == "posix":
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ConfigError(
            f"The sandbox cannot listen on {host}:{port}: {exc.strerror or exc}.",
            field="port",
            hint="Pick another port, or port=0 for a free one.",
        ) from exc
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def _make_server(config: Any) -> Any:
    import uvicorn

    class _Server(uvicorn.Server):  # type: ignore[misc]
        async def _wait_tasks_to_complete(self) -> None:
            # uvicorn has asked idle keep-alive connections to close; over TLS that waits
            # for the client's close_notify, which a pooled client never sends.  Abort
            # those at once (busy connections are not closing yet and finish normally).
            for connection in list(self.server_state.connections):
                transport = getattr(connection, "transport", None)
                if transport is not None and transport.is_closing():
                    transport.abort()
            await super()._wait_tasks_to_complete()

    return _Server(config)


class _ServerThread:
    """uvicorn serving `app` over TLS on an already bound socket, in a daemon thread."""

    def __init__(self, app: Any, *, sock: socket.socket, certs: CertificatePaths) -> None:
        import uvicorn

        config = uvicorn.Config(
            app,
            ssl_certfile=str(certs.server_cert),
            ssl_keyfile=str(certs.server_key),
            log_level="warning",
            access_log=False,
            lifespan="on",
            timeout_graceful_shutdown=5,
            # [UNVERIFIED] The service sits behind Azure load balancers that keep an idle
            # connection for minutes (4 by default).  uvicorn's 5 s would close it just
            # as a client waking from a 5 s Retry-After reuses it ("Server disconnected").
            timeout_keep_alive=KEEP_ALIVE_SECONDS,
            server_header=False,
            # Room for URLs past the Web API's 32 KB limit, so the app (not h11) answers
            # them with the service's JSON error.
            h11_max_incomplete_event_size=256 * 1024,
        )
        self._server = _make_server(config)
        self._sock = sock
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="d365nb-sandbox", daemon=True)

    def _run(self) -> None:
        try:
            self._server.run(sockets=[self._sock])
        except BaseException as exc:  # reported by start()
            self._error = exc

    def start(self) -> None:
        self._thread.start()
        deadline = time.monotonic() + _START_TIMEOUT
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(
                    "The sandbox server did not start; see the log above for the cause."
                ) from self._error
            time.sleep(0.01)

    def stop(self) -> None:
        self._server.should_exit = True
        if self._thread.is_alive():
            self._thread.join(timeout=15)
        self._sock.close()


class Sandbox:
    """A running sandbox: where it is, how to sign in to it, and how to stop it.

    Attributes hold what clients need: `base_url`, `service_url` (the Web API root),
    `authority`, `token_uri`, `auth_uri`, `tenant`, `ca_cert` (path of the CA certificate
    to trust), `public_client_id`, `confidential_client_id`, `client_secret` (a
    sandbox-only credential), `approve_url`, `device_login_url`, `fno_service_url` (the
    finance and operations environment, served when started with ``fno=True``) and `options`.
    Use it as a context manager, or call `stop()`.
    """

    base_url: str
    service_url: str
    authority: str
    token_uri: str
    auth_uri: str
    tenant: str
    ca_cert: str
    public_client_id: str
    confidential_client_id: str
    client_secret: str
    approve_url: str
    device_login_url: str
    fno_service_url: str  # finance and operations `/data/` root (served with fno=True)
    admin_secret: str | None

    def __init__(
        self,
        info: SandboxInfo | Mapping[str, str],
        *,
        options: SandboxOptions,
        server: _ServerThread | None = None,
        process: _subprocess.Popen[bytes] | None = None,
    ) -> None:
        described = info if isinstance(info, SandboxInfo) else SandboxInfo.from_mapping(info)
        self._info = described
        for item in dataclasses.fields(described):
            setattr(self, item.name, getattr(described, item.name))
        self.options = options
        self._server = server
        self._process = process
        self._stopped = False

    def __repr__(self) -> str:
        state = "stopped" if self._stopped else "running"
        mode = "subprocess" if self._process is not None else "thread"
        return f"<Sandbox {self.base_url} ({mode}, {state})>"

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        """True until `stop()` (or, for a child process, until it exits)."""
        if self._stopped:
            return False
        return self._process is None or self._process.poll() is None

    def info(self) -> dict[str, str]:
        """The connection values as a dict (the JSON line `d365nb sandbox` prints).

        `SandboxInfo.from_mapping(sb.info())` (or `sb.describe()`) gives the typed value.
        """
        return self._info.to_dict()

    def describe(self) -> SandboxInfo:
        """The connection values as a `SandboxInfo`."""
        return self._info

    def stop(self) -> None:
        """Stop the server (idempotent); a child process gets SIGTERM, then SIGKILL."""
        if self._stopped:
            return
        self._stopped = True
        if self._server is not None:
            self._server.stop()
        if self._process is not None:
            self._process.terminate()
            try:
                self._process.wait(timeout=15)
            except _subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
            if self._process.stdout is not None:
                self._process.stdout.close()

    # -- sandbox-only controls (over HTTPS, so they work for both thread and subprocess)

    def _control(
        self, path: str, body: Mapping[str, Any] | None, *, method: str = "POST"
    ) -> dict[str, Any]:
        if not self.running:
            raise RuntimeError("The sandbox is stopped; start a new one with sandbox.start().")
        headers = {ADMIN_HEADER: self.admin_secret} if self.admin_secret else {}
        with httpx.Client(verify=_ssl_context(self.ca_cert), trust_env=False) as client:
            response = client.request(
                method,
                f"{self.base_url}{path}",
                json=None if body is None else dict(body),
                headers=headers,
                timeout=120,
            )
        payload: dict[str, Any] = response.json()
        if response.status_code >= 400:
            error = payload.get("error")
            message = error.get("message") if isinstance(error, dict) else None
            raise ConfigError(
                payload.get("message")
                or message
                or f"The sandbox answered HTTP {response.status_code}.",
                hint=payload.get("hint"),
            )
        return payload

    def knobs(self, **changes: Any) -> KnobChange:
        """Change run-time knobs now; used as a context manager, put them back on exit.

        ```python
        with sb.knobs(clock_offset=3600):   # an hour later: every token has expired
            ...
        sb.knobs(latency_ms=50)              # stays until changed again
        ```

        **Parameters:**

        * **changes** - `clock_offset` (seconds the identity service's clock runs ahead:
          token, code and refresh-token expiry, without sleeping), and any Web API knob
          (`latency_ms`, `fault_503_rate`, the service-protection limits, ...; see
          ``GET /_sandbox/knobs``).  A bad name or value raises `ConfigError`.
        """
        previous: dict[str, Any] = {}
        webapi = {k: v for k, v in changes.items() if k != _CLOCK_KNOB}
        if webapi:
            current = self._control("/_sandbox/knobs/", None, method="GET")
            previous.update({k: current[k] for k in webapi if k in current})
            self._control("/_sandbox/knobs/", webapi)
        if _CLOCK_KNOB in changes:
            before = self._control("/_sandbox/clock", None, method="GET")["offset"]
            self._control("/_sandbox/clock", {"offset": changes[_CLOCK_KNOB]})
            previous[_CLOCK_KNOB] = before
        return KnobChange(self, previous)

    def approve(self, user_code: str, user: str | None = None) -> dict[str, Any]:
        """Approve the pending device code `user_code` as `user` (default: the first user).

        **Parameters:**

        * **user_code** - the code shown to the person (``flow["user_code"]``).
        * **user** - a seeded user: ``alex``, ``megan``, ``norole`` or a full UPN.
        """
        body: dict[str, Any] = {"user_code": user_code}
        if user is not None:
            body["user"] = user
        return self._control("/_sandbox/devicecode/approve", body)

    def decline(self, user_code: str) -> dict[str, Any]:
        """Decline the pending device code `user_code` (its poller gets
        ``authorization_declined``)."""
        return self._control("/_sandbox/devicecode/decline", {"user_code": user_code})

    def reset(self) -> None:
        """Re-seed the Web API's data (same rows and seed as at start)."""
        self._control("/_sandbox/reset", {})

    def connect(self, *, grant: str = "client_credentials", **settings: Any) -> Connection:
        """A `Connection` to this sandbox, configured for `grant` (see `d365nb.sandbox.connect`).

        ```python
        conn = sb.connect()                     # client credentials (application user)
        conn = sb.connect(grant="device_code")  # approve with sb.approve(code)
        ```
        """
        return connect(self._info, grant=grant, **settings)

    def revoke_refresh_tokens(self, user: str | None = None) -> int:
        """Revoke every refresh token (or only `user`'s); returns how many were revoked.

        **Parameters:**

        * **user** - a seeded user's name or UPN; all users when omitted.
        """
        body = {} if user is None else {"user": user}
        revoked: int = self._control("/_sandbox/refresh-tokens/revoke", body)["revoked"]
        return revoked


class KnobChange:
    """What `Sandbox.knobs()` changed; leaving its `with` block puts the old values back."""

    def __init__(self, sandbox: Sandbox, previous: Mapping[str, Any]) -> None:
        self.sandbox = sandbox
        self.previous = dict(previous)

    def __repr__(self) -> str:
        return f"<KnobChange restoring {sorted(self.previous)}>"

    def __enter__(self) -> KnobChange:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.sandbox.running:
            self.sandbox.knobs(**self.previous)


def running_sandboxes() -> list[Sandbox]:
    """Sandboxes started by this process and still running (the setup panel offers them)."""
    return running()


def _ssl_context(ca_cert: str) -> Any:
    import ssl

    return ssl.create_default_context(cafile=ca_cert)


def start(
    *,
    options: SandboxOptions | None = None,
    subprocess: bool = False,
    **knobs: Any,
) -> Sandbox:
    """Start a sandbox on loopback over HTTPS and return it once it answers.

    ```python
    with d365nb.sandbox.start(database=":memory:", rows=100) as sb:
        ...
    ```

    **Parameters:**

    * **options** - a `SandboxOptions`; `knobs` are applied on top of it.
    * **subprocess** - run the server in a child process (``python -m d365nb.sandbox``)
      instead of a thread of this process, e.g. for benchmarks that must not share the GIL.
    * **knobs** - `SandboxOptions` fields by name (`port`, `data_dir`, `rows`,
      `auto_approve`, `access_token_lifetime`, ...).  Unknown names raise `ConfigError`.
    """
    opts = make_options(options, **knobs)
    if subprocess:
        child = _start_subprocess(opts)
        register(child)
        return child
    from ._app import create_app, is_loopback
    from ._tokens import TokenService

    if not is_loopback(opts.host):
        warnings.warn(
            f"The sandbox listens on {opts.host}, so other machines can reach it: its test "
            "credentials are published and anyone who can connect can sign in and read its "
            "data. Its control routes need the admin secret from its JSON line.",
            RuntimeWarning,
            stacklevel=2,
        )

    host = opts.host
    certs = ensure_certificates(opts.data_dir, hosts=(_display_host(host).strip("[]"),))
    sock = _bind(host, opts.port)
    try:
        port = sock.getsockname()[1]
        base_url = f"https://{_display_host(host)}:{port}"
        tokens = TokenService.load(opts.data_dir, base_url=base_url)
        admin_secret = secrets.token_urlsafe(24)
        app = create_app(opts, base_url=base_url, tokens=tokens, admin_secret=admin_secret)
    except BaseException:
        sock.close()
        raise
    server = _ServerThread(app, sock=sock, certs=certs)
    server.start()
    info = sandbox_info(base_url, str(certs.ca_cert), admin_secret=admin_secret)
    sandbox = Sandbox(info, options=opts, server=server)
    register(sandbox)
    return sandbox


def _options_json(options: SandboxOptions) -> str:
    values = dataclasses.asdict(options)
    values["data_dir"] = str(options.data_dir)
    return json.dumps(values)


def _start_subprocess(options: SandboxOptions) -> Sandbox:
    ensure_private_dir(options.data_dir)
    log_path = options.data_dir / "sandbox.log"
    with open(log_path, "wb") as log:
        process = _subprocess.Popen(
            [sys.executable, "-m", "d365nb.sandbox", "--options-json", _options_json(options)],
            stdout=_subprocess.PIPE,
            stderr=log,
            stdin=_subprocess.DEVNULL,
        )
    stdout = process.stdout
    assert stdout is not None
    line: list[bytes] = []
    reader = threading.Thread(target=lambda: line.append(stdout.readline()), daemon=True)
    reader.start()
    reader.join(_START_TIMEOUT)
    try:
        info = json.loads(line[0]) if line else None
    except ValueError:
        info = None
    if not isinstance(info, dict) or process.poll() is not None:
        if process.poll() is None:
            process.kill()
        process.wait()
        stdout.close()
        tail = log_path.read_text(errors="replace")[-2000:]
        raise RuntimeError(
            f"The sandbox child process did not start. Its log ({log_path}) ends with:\n{tail}"
        )
    return Sandbox(info, options=options, process=process)


def wait_for_signal() -> None:
    """Block until SIGINT (Ctrl-C) or SIGTERM arrives (main thread only)."""
    stop = threading.Event()

    def _handler(signum: int, frame: object) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, _handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        while not stop.wait(0.5):
            pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
