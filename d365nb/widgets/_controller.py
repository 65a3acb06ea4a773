"""The setup panel's sign-in, with no widgets: a small state machine over the form.

`SetupController` adds to `SetupForm` (the fields, steps and checks) the sign-in itself,
which a user interface (the ipywidgets panel in `_panel.py`, or a test) drives:

```
editing --sign_in()--> starting --> device_code | browser | paste --> testing --> connected
   ^                      |                |                             |
   +------- cancel() / error <-------------+-----------------------------+
connected --sign_out()--> editing
```

On a finance and operations Service URL the connection is an `FnoConnection` and the
test step reads the user's companies (default first) and data entities instead of
Dataverse's WhoAmI and tables.

Secrets (the client secret, pasted tokens, the pasted redirect address) live only in this
object's private `_secrets` and `_pasted`; the interface hands them over and forgets them,
and nothing this object shows (statuses, problems, the log) ever contains one.  Long work
runs as `asyncio` tasks on the running loop: callbacks only schedule them, so the kernel
stays usable while a device code is polled.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Mapping
from typing import Any, Final, Literal
from urllib.parse import parse_qsl, urlsplit

from .._auth import AuthCodeFlow, DeviceCode
from .._client import Connection, WhoAmI
from .._config import Settings
from .._exceptions import AuthError, ConfigError, ODataError
from .._fno_client import FnoConnection
from .._loopback import LoopbackReceiver
from ._explain import Problem, describe_error
from ._form import DEFAULT_REDIRECT_URI, STEPS, SetupForm

__all__ = ["SetupController"]

State = Literal[
    "editing", "starting", "device_code", "browser", "paste", "testing", "connected", "error"
]

_TABLES_SHOWN: Final = 8
# Tables whose read privilege nearly every role grants: one row read tests the role.
_PROBE_TABLES: Final = ("account", "contact", "systemuser")
_LOOPBACK_TIMEOUT: Final = 600.0


class SetupController(SetupForm):
    """State and actions of the setup panel, without any widget.

    Usage:

    ```python
    ctl = SetupController(environ={})
    ctl.set_value("service_url", "https://contoso.api.crm.dynamics.com/api/data/v9.2/")
    ctl.set_value("client_id", "00001111-aaaa-2222-bbbb-3333cccc4444")
    task = ctl.start_sign_in()        # schedules sign_in() on the running loop
    ctl.device_code.user_code         # show it; the task polls
    await task; ctl.state == "connected"; ctl.connection
    ```

    **Parameters:**

    * **environ** - where `D365NB_*` pre-fill values come from; `os.environ` when omitted.
    * **profile** - a saved profile to pre-fill from (else `D365NB_PROFILE`).
    * **profile_path** - the profile file; `D365NB_CONFIG` or the per-user default.
    * **sandbox** - a `SandboxInfo`, a `Sandbox` or its info dict to offer as a preset;
      `None` looks for one (`find_sandbox`); `False` offers none.
    * **verify** - TLS trust for real environments (`True`, or a CA file path).  A
      sandbox's own CA is used for its address automatically.
    * **token_cache** - passed to `Connection` (`True`: the per-user token cache).
    * **values** - field values that win over the environment and the profile.
    """

    def __init__(
        self,
        *,
        environ: Mapping[str, str] | None = None,
        profile: str | None = None,
        profile_path: str | os.PathLike[str] | None = None,
        sandbox: Any = None,
        verify: bool | str | os.PathLike[str] = True,
        token_cache: bool | str | os.PathLike[str] = True,
        values: Mapping[str, str | None] | None = None,
    ) -> None:
        self.verify = verify
        self.token_cache = token_cache
        self.state: State = "editing"
        self.warning: Problem | None = None  # signed in, but something the user should fix
        self.device_code: DeviceCode | None = None
        self.auth_flow: AuthCodeFlow | None = None
        self.connection: Connection | None = None
        self.whoami: WhoAmI | None = None
        self.tables: list[tuple[str, str]] = []
        self.table_count = 0
        self.companies: list[str] = []  # F&O: the companies the user can read, default first
        self.driver_string = ""  # shown only after `show_connection_string()`, never a secret
        self.task: asyncio.Task[None] | None = None
        self._redirect: asyncio.Future[str] | None = None
        self._pasted: list[str] = []  # pasted redirect addresses and their codes: scrubbed
        self._cancelling = False
        super().__init__(
            environ=environ,
            profile=profile,
            profile_path=profile_path,
            sandbox=sandbox,
            values=values,
        )

    # -- secrets -----------------------------------------------------------------------

    def _all_secrets(self) -> list[str]:
        found = [*super()._all_secrets(), *self._pasted]
        if self.connection is not None:
            current = self.connection.auth.current
            if current is not None:
                found.append(current.token)
        return found

    def _edited_now(self) -> None:
        super()._edited_now()
        if not self.busy and self.state == "error":
            self.state = "editing"

    def _verify_for(self, settings: Settings) -> bool | str | os.PathLike[str]:
        sb = self.sandbox
        if sb is not None:
            parts = urlsplit(settings.api_root)
            if f"{parts.scheme}://{parts.netloc}".lower() == sb.origin:
                return sb.ca_cert
        return self.verify

    # -- what the sign-in step explains -----------------------------------------------

    @property
    def grant_explanation(self) -> tuple[str, tuple[str, ...]] | None:
        """The grant the fields mean and why, with one-line notes on fields not used.

        `None` while the fields do not make valid settings (their problems show instead).
        """
        try:
            settings = Settings(**self.settings_values())
        except ConfigError:
            return None
        return f"Grant {settings.grant}: {settings.grant_reason}", settings.notes

    def show_connection_string(self) -> str:
        """Put the vendor driver's connection string for this sign-in in `driver_string`.

        An explicit action: the string (settings only, never a secret or token) is made
        when asked, for a JDBC/ODBC driver, and forgotten at sign-out or the next sign-in.
        """
        if self.connection is None or self.state != "connected":
            self.problem = Problem(
                "There is no connection string before signing in.",
                "Sign in first; the button then shows it.",
            )
            self._emit("state")
            return ""
        self.driver_string = self.connection.connection_string(tokens=False)
        self._emit("state")
        return self.driver_string

    # -- sign-in -----------------------------------------------------------------------

    @property
    def busy(self) -> bool:
        """True while a sign-in or test is under way."""
        return self.state in ("starting", "device_code", "browser", "paste", "testing")

    def start_sign_in(self) -> asyncio.Task[None]:
        """Schedule `sign_in()` on the running loop and return its task (for callbacks).

        Raises `RuntimeError` when no loop runs in this thread.
        """
        loop = asyncio.get_running_loop()
        if self.task is not None and not self.task.done():
            return self.task
        self.task = loop.create_task(self.sign_in())
        return self.task

    async def sign_in(self) -> None:
        """Build the connection, sign in with the chosen method, then test it.

        Never raises for sign-in or service errors: they become `problem` (and the log).
        """
        if self.busy:
            return
        self.problem = None
        self.notice = ""
        self._cancelling = False
        self._set_state("starting")
        try:
            settings = Settings(**self.settings_values())  # ConfigError names field and fix
            # A connection handed out earlier stays usable: it is not closed here.
            kind = FnoConnection if settings.service == "fno" else Connection
            conn = kind(
                settings,
                verify=self._verify_for(settings),
                token_cache=False if self._using_sandbox else self.token_cache,
            )
            self.connection = conn
            self.whoami = None
            self.warning = None
            self.tables = []
            self.companies = []
            self.driver_string = ""
            self._log(
                f"Signing in to {settings.org_url} with grant {settings.grant} "
                f"({settings.version} endpoints): {settings.grant_reason}"
            )
            for note in settings.notes:
                self._log(f"Note: {note}")
            await self._authenticate(conn)
            self._log("Signed in.")
            await self._test(conn)
        except asyncio.CancelledError:
            await self._cancelled()
            raise
        except Exception as exc:  # every failure is shown, none escapes a callback
            if self._cancelling:
                await self._cancelled()
                return
            self._cleanup_flow()
            await self._release()
            self._fail(exc, signing_in=True)

    async def _cancelled(self) -> None:
        self._cleanup_flow()
        await self._release()
        self.notice = "Sign-in cancelled."
        self._log(self.notice)
        self._set_state("editing")

    async def _release(self) -> None:
        """Close the network resources of a connection that was not handed out."""
        if self.connection is not None:
            try:
                await self.connection.aclose()
            except Exception as exc:  # closing must never hide the real outcome
                self._log(f"Closing the connection failed: {type(exc).__name__}")

    async def _authenticate(self, conn: Connection) -> None:
        method = self.method
        if method in ("device_code", "auth_code"):
            try:
                await conn.auth.token()  # a cached refresh token signs in silently
                self._log("Signed in silently with a cached token.")
                return
            except AuthError:
                pass
        if method == "device_code":
            code = await conn.auth.start_device_code()
            self.device_code = code
            self._log(f"Device code issued; open {code.verification_uri} to enter it.")
            self._set_state("device_code")
            await conn.auth.finish_device_code(code, on_tick=lambda _: self._emit("tick"))
            self.device_code = None  # the code leaves the display once signed in
        elif method == "auth_code" and self.auth_code_mode == "browser":
            receiver = LoopbackReceiver()
            try:
                flow = await conn.auth.start_auth_code(
                    redirect_uri=receiver.redirect_uri, form_post=True
                )
                self.auth_flow = flow
                self._set_state("browser")
                params = await self._wait_loopback(receiver)
            finally:
                await asyncio.to_thread(receiver.close)
            self._log("The browser sent the sign-in answer back.")
            await conn.auth.finish_auth_code(flow, params)
            self.auth_flow = None
        elif method == "auth_code":
            redirect = self.values.get("redirect_uri") or DEFAULT_REDIRECT_URI
            flow = await conn.auth.start_auth_code(redirect_uri=redirect, form_post=False)
            self.auth_flow = flow
            self._redirect = asyncio.get_running_loop().create_future()
            self._set_state("paste")
            pasted = await self._redirect
            self._redirect = None
            try:
                await conn.auth.finish_auth_code(flow, pasted)
            finally:
                pasted = ""
            self.auth_flow = None
        else:
            await conn.auth.token()

    async def _wait_loopback(self, receiver: Any) -> dict[str, str]:
        deadline = time.monotonic() + _LOOPBACK_TIMEOUT
        while time.monotonic() < deadline:
            params: dict[str, str] | None = await asyncio.to_thread(receiver.wait, 0.5)
            if params is not None:
                return params
        raise AuthError(
            "No answer from the browser sign-in in time.",
            hint="Sign in again, or choose 'Paste the redirected URL' if the browser runs on "
            "another machine than the kernel (JupyterHub, Binder).",
        )

    @property
    def waiting_for_redirect(self) -> bool:
        """True while paste mode waits for the redirected address."""
        return self._redirect is not None and not self._redirect.done()

    def submit_redirect(self, url: str) -> None:
        """Hand over the address the browser landed on (paste mode); it is not kept."""
        text = (url or "").strip()
        if not text:
            return
        params = dict(parse_qsl(urlsplit(text).query or urlsplit(text).fragment))
        for key in ("code", "state", "session_state"):
            if params.get(key):
                self._pasted.append(params[key])
        self._pasted.append(text)
        if self._redirect is None or self._redirect.done():
            self.problem = Problem(
                "No browser sign-in is waiting for an address.",
                "Press Sign in first; it shows the link to open.",
            )
            self._emit("state")
            return
        self._redirect.set_result(text)

    async def _test(self, conn: Connection) -> None:
        self._set_state("testing")
        if isinstance(conn, FnoConnection):
            await self._test_fno(conn)
            return
        self.whoami = await conn.awhoami()
        self._log(
            f"WhoAmI: user {self.whoami.user_id}, organization {self.whoami.organization_id}."
        )
        response = await conn.arequest(
            "GET", "EntityDefinitions", params={"$select": "LogicalName,EntitySetName"}
        )
        items = response.json().get("value", [])
        pairs = sorted(
            (str(i.get("LogicalName")), str(i.get("EntitySetName")))
            for i in items
            if i.get("EntitySetName")
        )
        self.table_count = len(pairs)
        self.tables = pairs[:_TABLES_SHOWN]
        self._log(f"{self.table_count} tables visible.")
        await self._try_read(conn, dict(pairs))
        self._set_state("connected")

    async def _test_fno(self, conn: FnoConnection) -> None:
        """F&O: who, the companies (default first: `whoami()` orders them), the entities."""
        self.whoami = who = await conn.awhoami()
        self.companies = list(conn.company_ids)
        self._log(
            f"Signed in to finance and operations as {who.name or who.user_id}; companies: "
            f"{', '.join(self.companies) or 'none'} (default {who.business_unit_id or '?'})."
        )
        entities = await conn.atables()
        pairs = sorted(zip(entities["entity"], entities["entity_set"], strict=True))
        self.table_count = len(pairs)
        self.tables = [(str(a), str(b)) for a, b in pairs[:_TABLES_SHOWN]]
        self._log(f"{self.table_count} data entities visible.")
        if not self.companies:
            self.warning = Problem(
                "Signed in, but no company is visible to this user.",
                "Give the F&O user a security role in at least one company (System "
                "administration > Users > Assign roles).",
            )
        self._set_state("connected")

    async def _try_read(self, conn: Connection, sets: Mapping[str, str]) -> None:
        """Read one row of a common table: a missing security role shows here, as a warning."""
        logical = next((name for name in _PROBE_TABLES if name in sets), None)
        if logical is None:
            return
        try:
            await conn.arequest("GET", sets[logical], params={"$top": "1"})
            self._log(f"Read one row of {sets[logical]}.")
        except ODataError as exc:
            self.warning = describe_error(
                exc, secrets=self._all_secrets(), grant=self.grant, service=self.service
            )
            self._log(f"Reading {sets[logical]} failed: {self.warning.sentence}")
            self._log(self.warning.detail)

    def cancel(self) -> None:
        """Stop a sign-in under way (device code, browser or paste).

        A device code is cancelled the way `DeviceCode.cancel` documents (its poll ends
        within a second, so no request is cut off halfway); other waits are cancelled.
        """
        self._cancelling = True
        if self.device_code is not None and self.state == "device_code":
            self.device_code.cancel()
        elif self.task is not None and not self.task.done():
            self.task.cancel()
        elif self.busy:
            self._cleanup_flow()
            self._set_state("editing")

    def sign_out(self) -> None:
        """Forget the tokens and go back to editing (fields are kept, secrets too)."""
        if self.connection is not None:
            self.connection.sign_out()
            self._emit("signed_out")
        self.connection = None
        self.whoami = None
        self.tables = []
        self.table_count = 0
        self.companies = []
        self.driver_string = ""
        self.problem = None
        self.notice = "Signed out."
        self._log(self.notice)
        self.step = STEPS.index("sign_in")
        self._set_state("editing")

    def switch(self) -> None:
        """Keep the current connection but go back to the first step to set up another."""
        self.problem = None
        self.notice = ""
        self.step = 0
        self._set_state("editing")

    def _cleanup_flow(self) -> None:
        self.device_code = None
        self.auth_flow = None
        if self._redirect is not None and not self._redirect.done():
            self._redirect.cancel()
        self._redirect = None

    def _fail(self, exc: BaseException, *, signing_in: bool = False) -> None:
        if not signing_in:
            super()._fail(exc)
            return
        self._note_problem(exc)
        self._set_state("error")

    def _set_state(self, state: State) -> None:
        self.state = state
        if state == "connected":
            self.step = STEPS.index("test")
        self._emit("state")
