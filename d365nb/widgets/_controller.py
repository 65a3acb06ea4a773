"""The setup panel's logic, with no widgets: fields, validation, steps, sign-in, errors.

`SetupController` is a small state machine that a user interface (the ipywidgets panel in
`_panel.py`, or a test) drives:

```
editing --sign_in()--> starting --> device_code | browser | paste --> testing --> connected
   ^                      |                |                             |
   +------- cancel() / error <-------------+-----------------------------+
connected --sign_out()--> editing
```

Every check comes from `check_fields` (the same code `Settings` runs), so the panel and
`d365nb.connect()` never disagree.  Secrets (the client secret, pasted tokens, the pasted
redirect address) live only in this object's private `_secrets`; the interface hands them
over and forgets them, and nothing this object shows (statuses, problems, the log) ever
contains one.  Long work runs as `asyncio` tasks on the running loop: callbacks only
schedule them, so the kernel stays usable while a device code is polled.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import sys
import time
import traceback
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal, cast
from urllib.parse import parse_qsl, urlsplit

from .._analysis import Analysis, check_fields
from .._config import Settings
from .._exceptions import AuthError, ConfigError, D365Error, ODataError, TransportError
from .._fields import ENV_CONFIG, ENV_PREFIX, ENV_PROFILE, FIELDS, SECRET_FIELDS, redact

if TYPE_CHECKING:
    from .._auth import AuthCodeFlow, DeviceCode
    from .._client import Connection, WhoAmI

__all__ = [
    "METHODS",
    "SANDBOX_ENV",
    "STEPS",
    "FieldStatus",
    "Problem",
    "SandboxInfo",
    "SetupController",
    "describe_error",
    "find_sandbox",
]

Method = Literal["device_code", "auth_code", "client_credentials", "token"]
State = Literal[
    "editing", "starting", "device_code", "browser", "paste", "testing", "connected", "error"
]

#: The steps, in the order of the vendor guides.
STEPS: Final[tuple[str, ...]] = ("service", "app", "endpoints", "scope", "sign_in", "test")
STEP_TITLES: Final[dict[str, str]] = {
    "service": "Service URL",
    "app": "App registration",
    "endpoints": "Endpoints",
    "scope": "Scope",
    "sign_in": "Sign-in method",
    "test": "Test connection",
}
#: Which fields each step shows (secrets included: they have a status too).
STEP_FIELDS: Final[dict[str, tuple[str, ...]]] = {
    "service": ("service_url",),
    "app": ("tenant", "client_id", "client_secret"),
    "endpoints": ("auth_uri", "token_uri"),
    "scope": ("scope",),
    "sign_in": ("redirect_uri", "access_token", "refresh_token"),
    "test": (),
}
#: Sign-in methods, in the order the panel offers them.
METHODS: Final[tuple[str, ...]] = ("device_code", "auth_code", "client_credentials", "token")
METHOD_TITLES: Final[dict[str, str]] = {
    "device_code": "Device code",
    "auth_code": "Browser (authorization code)",
    "client_credentials": "Client secret (app only)",
    "token": "Existing token",
}
#: The environment variable that describes a running sandbox (see `find_sandbox`).
SANDBOX_ENV: Final = "D365NB_SANDBOX"
DEFAULT_REDIRECT_URI: Final = "http://localhost"
_TABLES_SHOWN: Final = 8
# Tables whose read privilege nearly every role grants: one row read tests the role.
_PROBE_TABLES: Final = ("account", "contact", "systemuser")
_LOOPBACK_TIMEOUT: Final = 600.0
_SUGGESTED: Final = ("auth_uri", "token_uri", "scope")
_TEXT_FIELDS: Final = tuple(name for name in FIELDS if name not in SECRET_FIELDS)


# -- small value types --------------------------------------------------------------------


@dataclass(frozen=True)
class FieldStatus:
    """How one field looks right now: `ok` is True (tick), False (problem) or None (empty)."""

    ok: bool | None
    message: str = ""


@dataclass(frozen=True)
class Problem:
    """An error as the panel shows it: one sentence with the fix, and the detail for the log.

    `field` names the setting to correct (the panel jumps to its step) when there is one.
    """

    message: str
    hint: str = ""
    detail: str = ""
    field: str | None = None

    @property
    def sentence(self) -> str:
        """`message` and `hint` as one line."""
        return f"{self.message} {self.hint}".strip()


@dataclass(frozen=True)
class SandboxInfo:
    """What the panel needs to offer a running sandbox as a preset.

    Built from the JSON line `d365nb sandbox` prints (`Sandbox.info()`), see `find_sandbox`.
    """

    service_url: str
    tenant: str
    public_client_id: str
    ca_cert: str
    token_uri: str | None = None
    auth_uri: str | None = None
    confidential_client_id: str | None = None
    client_secret: str | None = field(default=None, repr=False)
    device_login_url: str | None = None

    @classmethod
    def from_mapping(cls, info: Mapping[str, Any]) -> SandboxInfo:
        """Read the sandbox's info dict; `ConfigError` names a missing key."""
        missing = [
            k for k in ("service_url", "tenant", "public_client_id", "ca_cert") if not info.get(k)
        ]
        if missing:
            raise ConfigError(
                f"The sandbox description lacks {', '.join(missing)}.",
                field=SANDBOX_ENV,
                hint="Set D365NB_SANDBOX to the JSON line `d365nb sandbox` prints, or to a file "
                "holding it.",
            )

        def opt(key: str) -> str | None:
            value = info.get(key)
            return str(value) if value else None

        return cls(
            service_url=str(info["service_url"]),
            tenant=str(info["tenant"]),
            public_client_id=str(info["public_client_id"]),
            ca_cert=str(info["ca_cert"]),
            token_uri=opt("token_uri"),
            auth_uri=opt("auth_uri"),
            confidential_client_id=opt("confidential_client_id"),
            client_secret=opt("client_secret"),
            device_login_url=opt("device_login_url"),
        )

    @property
    def origin(self) -> str:
        """`https://127.0.0.1:PORT`: the sandbox serves sign-in and Web API there."""
        parts = urlsplit(self.service_url)
        return f"{parts.scheme}://{parts.netloc}".lower()


def find_sandbox(environ: Mapping[str, str] | None = None) -> SandboxInfo | None:
    """A running sandbox to offer as a preset, or `None`.

    Looked for, in order:

    1. a sandbox started in this process with `d365nb.sandbox.start()` (the most recent
       one still running);
    2. `D365NB_SANDBOX`: the JSON object `d365nb sandbox` prints on its first line, or the
       path of a file holding it (Binder's `start` script writes one).

    A description that cannot be read is ignored (the panel then offers no preset).
    """
    running = _sandboxes_in_process()
    if running:
        return SandboxInfo.from_mapping(running[-1].info())
    env = os.environ if environ is None else environ
    raw = (env.get(SANDBOX_ENV) or "").strip()
    if not raw:
        return None
    try:
        text = raw if raw.startswith("{") else Path(raw).expanduser().read_text("utf-8")
        info = json.loads(text.strip().splitlines()[0] if text.strip() else "")
        return SandboxInfo.from_mapping(info) if isinstance(info, dict) else None
    except (OSError, ValueError, ConfigError, IndexError):
        return None


def _sandboxes_in_process() -> list[Any]:
    """Running `Sandbox` objects of this process (only if the sandbox was ever imported)."""
    module = sys.modules.get("d365nb.sandbox._server")
    if module is None:
        return []
    registry = getattr(module, "running_sandboxes", None)
    if callable(registry):
        return [sb for sb in registry() if getattr(sb, "running", False)]
    cls = getattr(module, "Sandbox", None)
    if cls is None:
        return []
    found = [obj for obj in gc.get_objects() if isinstance(obj, cls)]
    return [sb for sb in found if sb.running]


# -- errors --------------------------------------------------------------------------------

_NOT_A_MEMBER = "0x80072560"
# AADSTS codes -> the field to correct (the panel jumps to its step).
_AADSTS_FIELDS: Final[dict[str, str]] = {
    "AADSTS7000215": "client_secret",
    "AADSTS7000222": "client_secret",
    "AADSTS7000218": "client_secret",
    "AADSTS700016": "client_id",
    "AADSTS90002": "tenant",
    "AADSTS50059": "tenant",
    "AADSTS50011": "redirect_uri",
    "AADSTS500113": "redirect_uri",
    "AADSTS70011": "scope",
    "AADSTS901002": "token_uri",
    "AADSTS500011": "service_url",
    "AADSTS53003": "grant",
}


def describe_error(
    exc: BaseException, *, secrets: Iterable[str | None] = (), grant: str | None = None
) -> Problem:
    """An exception as one sentence with its fix, plus a scrubbed detail for the log.

    **Parameters:**

    * **exc** - what was raised.
    * **secrets** - values that must not appear in the result (passed to `redact`).
    * **grant** - the grant in use, to tell "no application user" from "no role".
    """
    hidden = [s for s in secrets if s]
    detail = redact("".join(traceback.format_exception(type(exc), exc, exc.__traceback__)), hidden)
    field_name: str | None = None
    if isinstance(exc, ConfigError):
        message, hint, field_name = exc.message, exc.hint or "", exc.field
    elif isinstance(exc, AuthError):
        message, hint = exc.message, exc.hint or ""
        field_name = _AADSTS_FIELDS.get(exc.code or "")
        extra = [f"code {exc.code}" if exc.code else "", f"error {exc.error}" if exc.error else ""]
        if exc.correlation_id:
            extra.append(f"correlation id {exc.correlation_id}")
        detail = f"{type(exc).__name__} ({', '.join(x for x in extra if x)})\n{detail}"
    elif isinstance(exc, ODataError):
        message, hint = _odata_sentence(exc, grant)
        detail = (
            f"HTTP {exc.status} {exc.code or ''} {exc.service_message}"
            + (f" (request id {exc.request_id})" if exc.request_id else "")
            + f"\n{detail}"
        )
    elif isinstance(exc, TransportError):
        message, hint = exc.message, exc.hint or ""
        if "CERTIFICATE_VERIFY_FAILED" in detail or "certificate verify failed" in detail:
            message = "The service's TLS certificate is not trusted."
            hint = (
                "For the local sandbox use its preset (it trusts the sandbox's CA); behind a "
                "corporate proxy pass verify='path/to/ca.pem' to d365nb.setup()."
            )
    elif isinstance(exc, D365Error):
        message, hint = exc.message, exc.hint or ""
    else:
        message = f"Unexpected {type(exc).__name__}: {_first_line(str(exc))}"
        hint = "The details below say where it happened; please report it if it persists."
    return Problem(
        message=redact(message, hidden),
        hint=redact(hint, hidden),
        detail=detail,
        field=field_name,
    )


def _odata_sentence(exc: ODataError, grant: str | None) -> tuple[str, str]:
    app = grant == "client_credentials"
    if exc.code == _NOT_A_MEMBER or (exc.status == 401 and app):
        who = "This app" if app else "Your user"
        fix = (
            "add an application user for this app's Client ID in the Power Platform admin "
            "center (Environment > Settings > Users + permissions > Application users) and "
            "give it a security role."
            if app
            else "ask an admin to add your user to this environment (Power Platform admin "
            "center > Environment > Settings > Users) with a security role."
        )
        return f"{who} is signed in but is not a user of this environment (HTTP {exc.status}).", (
            fix[0].upper() + fix[1:]
        )
    if exc.status == 401:
        return (
            "The service refused the token (HTTP 401).",
            "Check that the Service URL is the environment you signed in for (the token's "
            "audience), then sign in again.",
        )
    if exc.status == 403:
        who = "The application user" if app else "Your user"
        return (
            f"{who} lacks a security role for this (HTTP 403).",
            "Ask an admin to assign a security role (e.g. Basic User) in the Power Platform "
            "admin center > Environment > Settings > Users + permissions.",
        )
    return exc.message, exc.hint or ""


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else ""


# -- the controller ------------------------------------------------------------------------


class SetupController:
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
        self._environ: Mapping[str, str] = os.environ if environ is None else environ
        self.profile_path = profile_path
        self.verify = verify
        self.token_cache = token_cache
        self.values: dict[str, str] = {}
        self._secrets: dict[str, str] = {}
        self.secret_sources: dict[str, str] = {}
        self._edited: set[str] = set()
        self.method: Method = "device_code"
        self.endpoint_version: Literal["v2", "v1"] = "v2"
        self.auth_code_mode: Literal["browser", "paste"] = "browser"
        self.state: State = "editing"
        self.step = 0
        self.problem: Problem | None = None
        self.warning: Problem | None = None  # signed in, but something the user should fix
        self.notice = ""
        self.log: list[str] = []
        self.device_code: DeviceCode | None = None
        self.auth_flow: AuthCodeFlow | None = None
        self.connection: Connection | None = None
        self.whoami: WhoAmI | None = None
        self.tables: list[tuple[str, str]] = []
        self.table_count = 0
        self.task: asyncio.Task[None] | None = None
        self._redirect: asyncio.Future[str] | None = None
        self._pasted: list[str] = []  # pasted redirect addresses and their codes: scrubbed
        self._cancelling = False
        self._using_sandbox = False
        self._suggestions: dict[str, str] = {}
        self.resource = ""  # derived from the Service URL ('' until it is valid)
        self._listeners: list[Callable[[str], None]] = []
        if sandbox is False:
            self.sandbox: SandboxInfo | None = None
        elif sandbox is None:
            self.sandbox = find_sandbox(self._environ)
        elif isinstance(sandbox, SandboxInfo):
            self.sandbox = sandbox
        elif isinstance(sandbox, Mapping):
            self.sandbox = SandboxInfo.from_mapping(sandbox)
        else:
            self.sandbox = SandboxInfo.from_mapping(sandbox.info())
        self._prefill(profile, values or {})

    # -- listeners ---------------------------------------------------------------------

    def subscribe(self, callback: Callable[[str], None]) -> None:
        """Call `callback(what)` after every change (`what` says roughly what changed)."""
        self._listeners.append(callback)

    def _emit(self, what: str) -> None:
        for callback in list(self._listeners):
            callback(what)

    def _log(self, line: str) -> None:
        stamp = time.strftime("%H:%M:%S")
        for text in redact(line, self._all_secrets()).rstrip().splitlines():
            self.log.append(f"{stamp} {text}")

    # -- pre-fill ----------------------------------------------------------------------

    def _prefill(self, profile: str | None, values: Mapping[str, str | None]) -> None:
        from .._profile import load_profile

        raw: dict[str, str] = {}
        for name in FIELDS:
            value = (self._environ.get(ENV_PREFIX + name.upper()) or "").strip()
            if value:
                raw[name] = value
                if name in SECRET_FIELDS:
                    self.secret_sources[name] = "environment"
        chosen = profile or (self._environ.get(ENV_PROFILE) or "").strip() or None
        if chosen:
            path = self.profile_path or (self._environ.get(ENV_CONFIG) or None)
            try:
                raw.update(load_profile(chosen, path=path))
                self.notice = f"Loaded profile {chosen!r}."
            except ConfigError as exc:
                self.problem = describe_error(exc)
        for key, given in values.items():
            if given is not None:
                raw[key] = given
        self._apply(raw)

    def _apply(self, raw: Mapping[str, str]) -> None:
        for key, value in raw.items():
            if key in SECRET_FIELDS:
                self._secrets[key] = value
                self.secret_sources.setdefault(key, "given")
            elif key in _TEXT_FIELDS:
                self.values[key] = value.strip()
                if key in _SUGGESTED:
                    self._edited.add(key)
        grant = self.values.pop("grant", None)
        if grant:
            self._method_from_grant(grant)
        for key in ("auth_uri", "token_uri"):
            if "/oauth2/token" in self.values.get(
                key, ""
            ) or "/oauth2/authorize" in self.values.get(key, ""):
                self.endpoint_version = "v1"
        if self.values.get("redirect_uri"):
            self.auth_code_mode = "paste"
        elif _remote_kernel():
            self.auth_code_mode = "paste"
        if not grant:
            if "access_token" in self._secrets or "refresh_token" in self._secrets:
                self.method = "token"
            elif "client_secret" in self._secrets:
                self.method = "client_credentials"
        self._refresh_suggestions()

    def _method_from_grant(self, grant: str) -> None:
        problems = check_fields({"grant": grant}, partial=True)
        if "grant" in problems:
            self.problem = Problem(message=problems["grant"], field="grant")
            return
        word = Analysis({"grant": grant}, partial=True).values["grant"]  # config's spelling
        mapped = {"access_token": "token", "refresh_token": "token"}.get(word or "", word)
        self.method = cast(Method, mapped or "device_code")

    # -- fields ------------------------------------------------------------------------

    @property
    def grant(self) -> str:
        """The grant the chosen method uses."""
        if self.method == "token":
            return "access_token" if "access_token" in self._secrets else "refresh_token"
        return self.method

    def suggestion(self, name: str) -> str:
        """What `auth_uri`, `token_uri` or `scope` are derived to ('' when unknown)."""
        return self._suggestions.get(name, "")

    def _refresh_suggestions(self) -> None:
        base = {k: self.values.get(k) for k in ("service_url", "tenant", "api_version")}
        base["grant"] = self.grant
        if self.grant == "client_credentials":
            base["client_secret"] = "x"  # only its presence matters for derivation
        elif self.grant in ("access_token", "refresh_token"):
            base[self.grant] = "x"
        derived = Analysis(base, partial=True).derived
        suggestions: dict[str, str] = {}
        if derived is not None:
            path = "oauth2/v2.0" if self.endpoint_version == "v2" else "oauth2"
            suggestions["auth_uri"] = f"{derived.authority}/{path}/authorize"
            suggestions["token_uri"] = f"{derived.authority}/{path}/token"
            suggestions["scope"] = "" if self.endpoint_version == "v1" else " ".join(derived.scopes)
            self.resource = derived.resource
        else:
            self.resource = ""
        self._suggestions = suggestions
        for name in _SUGGESTED:
            if name not in self._edited:
                value = suggestions.get(name, "")
                if value:
                    self.values[name] = value
                else:
                    self.values.pop(name, None)

    def set_value(self, name: str, text: str | None) -> None:
        """Set a non-secret field from what the user typed (`''` or `None` clears it).

        Clearing `auth_uri`, `token_uri` or `scope`, or typing exactly the derived value,
        makes it follow the other fields again.
        """
        if name in SECRET_FIELDS:
            raise ValueError(f"{name} is a secret: use set_secret()")
        if name not in _TEXT_FIELDS:
            raise ValueError(f"unknown field {name!r}")
        value = (text or "").strip()
        if name in _SUGGESTED:
            if not value or value == self.suggestion(name):
                self._edited.discard(name)
            else:
                self._edited.add(name)
        if value:
            self.values[name] = value
        else:
            self.values.pop(name, None)
        if name == "token_uri" and value:
            # A pasted token endpoint says which version is meant; nothing typed is rewritten.
            path = urlsplit(value.split()[-1]).path.lower()
            if "/oauth2/v2.0/" in path:
                self._set_version("v2", emit=False, rewrite=False)
            elif "/oauth2/" in path:
                self._set_version("v1", emit=False, rewrite=False)
        self._edited_now()
        self._refresh_suggestions()
        self._emit("values")

    def set_secret(self, name: str, text: str | None) -> None:
        """Keep a secret in memory (never in a widget); `''` or `None` forgets it."""
        if name not in SECRET_FIELDS:
            raise ValueError(f"{name} is not a secret field")
        value = (text or "").strip()
        if value:
            self._secrets[name] = value
            self.secret_sources[name] = "typed"
            if name in ("access_token", "refresh_token"):
                self.method = "token"
        else:
            self._secrets.pop(name, None)
            self.secret_sources.pop(name, None)
        self._edited_now()
        self._refresh_suggestions()
        self._emit("values")

    def _edited_now(self) -> None:
        """A change by the user: an old error or notice no longer applies."""
        if not self.busy:
            self.problem = None
            self.notice = ""
            if self.state == "error":
                self.state = "editing"

    def has_secret(self, name: str) -> bool:
        """True when a value for secret field `name` is held."""
        return name in self._secrets

    def set_method(self, method: str) -> None:
        """Choose the sign-in method: one of `METHODS`."""
        if method not in METHODS:
            raise ValueError(f"unknown sign-in method {method!r}; use one of {METHODS}")
        self.method = cast(Method, method)
        self._edited_now()
        self._refresh_suggestions()
        self._emit("method")

    def set_auth_code_mode(self, mode: str) -> None:
        """`'browser'` (loopback, browser on this machine) or `'paste'` (remote kernels)."""
        if mode not in ("browser", "paste"):
            raise ValueError("mode is 'browser' or 'paste'")
        self.auth_code_mode = cast(Literal["browser", "paste"], mode)
        self._emit("method")

    def set_endpoint_version(self, version: str) -> None:
        """`'v2'` (Microsoft identity platform, scopes) or `'v1'` (`resource=`)."""
        self._set_version(version, emit=True)

    def _set_version(self, version: str, *, emit: bool, rewrite: bool = True) -> None:
        if version not in ("v2", "v1"):
            raise ValueError("version is 'v2' or 'v1'")
        if version == self.endpoint_version:
            return
        self.endpoint_version = cast(Literal["v2", "v1"], version)
        if version == "v1":
            self._edited.discard("scope")
        for name in ("auth_uri", "token_uri"):
            value = self.values.get(name, "")
            if rewrite and name in self._edited and value:
                self.values[name] = (
                    value.replace("/oauth2/v2.0/", "/oauth2/")
                    if version == "v1"
                    else value.replace("/oauth2/", "/oauth2/v2.0/", 1)
                    if "/oauth2/v2.0/" not in value
                    else value
                )
        self._refresh_suggestions()
        if emit:
            self._emit("values")

    def settings_values(self) -> dict[str, str]:
        """Every field as `Settings` takes it: typed values, derived ones left out, secrets."""
        out: dict[str, str] = {}
        for name, value in self.values.items():
            if name in _SUGGESTED and name not in self._edited:
                continue
            if name == "redirect_uri" and self.method != "auth_code":
                continue
            out[name] = value
        if self.endpoint_version == "v1" and "token_uri" not in out:
            out["token_uri"] = self.suggestion("token_uri")
            if self.suggestion("auth_uri"):
                out["auth_uri"] = self.suggestion("auth_uri")
        if self.endpoint_version == "v1":
            out.pop("scope", None)
        out["grant"] = self.grant
        for name, value in self._secrets.items():
            if name == "client_secret" and self.method not in ("client_credentials", "auth_code"):
                continue  # a public-client sign-in must not turn confidential by accident
            if name in ("access_token", "refresh_token") and self.method != "token":
                continue
            out[name] = value
        return {k: v for k, v in out.items() if v}

    def problems(self, *, partial: bool = True) -> dict[str, str]:
        """Field → message with the fix, from `check_fields` (secrets never quoted)."""
        return check_fields(self.settings_values(), partial=partial)

    def status(self, name: str) -> FieldStatus:
        """The live status of one field: a tick, a problem, or nothing yet."""
        problems = self.problems(partial=True)
        if name in problems:
            return FieldStatus(False, problems[name])
        if name in SECRET_FIELDS:
            if name not in self._secrets:
                return FieldStatus(None, "")
            source = self.secret_sources.get(name, "given")
            where = "from the environment" if source == "environment" else "kept in memory only"
            return FieldStatus(True, f"set ({where}; never saved in the notebook)")
        value = self.values.get(name)
        if not value:
            return FieldStatus(None, "")
        if name in _SUGGESTED and name not in self._edited:
            return FieldStatus(True, "derived; edit to override")
        if name == "service_url":
            return FieldStatus(True, f"resource {self.resource}")
        return FieldStatus(True, "")

    def step_problems(self, step: int) -> dict[str, str]:
        """What keeps step `step` (an index into `STEPS`) from being left with Next."""
        names = STEP_FIELDS[STEPS[step]]
        problems = {k: v for k, v in self.problems(partial=True).items() if k in names}
        if STEPS[step] == "service" and not self.values.get("service_url"):
            problems.setdefault(
                "service_url",
                "The Service URL is required: use the Web API URL, e.g. "
                "https://org.api.crm.dynamics.com/api/data/v9.2/",
            )
        return problems

    def can_advance(self) -> bool:
        """True when Next may leave the current step."""
        return self.step < len(STEPS) - 1 and not self.step_problems(self.step)

    def go_to(self, step: int) -> None:
        """Show step `step` (Back/Next and jumps to a field with a problem)."""
        self.step = max(0, min(step, len(STEPS) - 1))
        self._emit("step")

    def step_of(self, name: str | None) -> int | None:
        """The step that shows field `name`."""
        for index, step in enumerate(STEPS):
            if name in STEP_FIELDS[step]:
                return index
        if name == "grant":
            return STEPS.index("sign_in")
        return None

    # -- secrets -----------------------------------------------------------------------

    def _all_secrets(self) -> list[str]:
        found = list(self._secrets.values())
        if self.connection is not None:
            current = self.connection.auth.current
            if current is not None:
                found.append(current.token)
        return found

    # -- sandbox and profiles ----------------------------------------------------------

    def use_sandbox(self, *, method: str | None = None) -> None:
        """Fill every field from the detected sandbox (one click in the panel).

        The public client for user sign-in (device code by default); the confidential
        client and its sandbox-only secret for `method="client_credentials"`.
        """
        sb = self.sandbox
        if sb is None:
            raise ConfigError(
                "No running sandbox was found.",
                field=SANDBOX_ENV,
                hint="Start one with d365nb.sandbox.start() (or `d365nb sandbox` and set "
                "D365NB_SANDBOX), then run d365nb.setup() again.",
            )
        chosen = method or (
            "client_credentials" if self.method == "client_credentials" else "device_code"
        )
        self.values = {"service_url": sb.service_url, "tenant": sb.tenant}
        self._edited.clear()
        self._secrets.clear()
        self.secret_sources.clear()
        self.endpoint_version = "v2"
        if chosen == "client_credentials" and sb.confidential_client_id and sb.client_secret:
            self.values["client_id"] = sb.confidential_client_id
            self._secrets["client_secret"] = sb.client_secret
            self.secret_sources["client_secret"] = "sandbox"
        else:
            self.values["client_id"] = sb.public_client_id
        if chosen == "auth_code":
            self.values["redirect_uri"] = DEFAULT_REDIRECT_URI
        self.method = cast(Method, chosen)
        self._using_sandbox = True
        self.problem = None
        self.notice = "Filled in the local sandbox's details."
        self._refresh_suggestions()
        self._emit("values")

    def _verify_for(self, settings: Settings) -> bool | str | os.PathLike[str]:
        sb = self.sandbox
        if sb is not None:
            parts = urlsplit(settings.api_root)
            if f"{parts.scheme}://{parts.netloc}".lower() == sb.origin:
                return sb.ca_cert
        return self.verify

    def save_profile(self, name: str) -> Path:
        """Save the fields (never a secret or token) as profile `name`; returns the file."""
        try:
            settings = Settings(**self.settings_values())
            path = settings.save_profile(name, path=self.profile_path)
        except ConfigError as exc:
            self._fail(exc)
            raise
        self.notice = f"Saved profile {name!r} in {path} (no secrets)."
        self._log(self.notice)
        self._emit("notice")
        return path

    def profiles(self) -> list[str]:
        """Names of the saved profiles ([] when the file cannot be read)."""
        from .._profile import list_profiles

        try:
            return list_profiles(path=self.profile_path)
        except ConfigError:
            return []

    def load_profile(self, name: str) -> None:
        """Replace the fields with profile `name` (secrets already held are kept)."""
        from .._profile import load_profile

        try:
            loaded = load_profile(name, path=self.profile_path)
        except ConfigError as exc:
            self._fail(exc)
            return
        self.values = {}
        self._edited.clear()
        self.endpoint_version = "v2"
        self.method = "device_code"
        self._apply(loaded)
        self.notice = f"Loaded profile {name!r}."
        self.problem = None
        self._emit("values")

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
            from .._client import Connection

            # A connection handed out earlier stays usable: it is not closed here.
            conn = Connection(
                settings,
                verify=self._verify_for(settings),
                token_cache=False if self._using_sandbox else self.token_cache,
            )
            self.connection = conn
            self.whoami = None
            self.warning = None
            self.tables = []
            self._log(
                f"Signing in to {settings.org_url} with grant {settings.grant} "
                f"({settings.version} endpoints)."
            )
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
            from .._loopback import LoopbackReceiver

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

    async def _try_read(self, conn: Connection, sets: Mapping[str, str]) -> None:
        """Read one row of a common table: a missing security role shows here, as a warning."""
        logical = next((name for name in _PROBE_TABLES if name in sets), None)
        if logical is None:
            return
        try:
            await conn.arequest("GET", sets[logical], params={"$top": "1"})
            self._log(f"Read one row of {sets[logical]}.")
        except ODataError as exc:
            self.warning = describe_error(exc, secrets=self._all_secrets(), grant=self.grant)
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
        problem = describe_error(
            exc, secrets=[*self._all_secrets(), *self._pasted], grant=self.grant
        )
        self.problem = problem
        self._log(f"Error: {problem.sentence}")
        self._log(problem.detail)
        step = self.step_of(problem.field)
        if step is not None:
            self.step = step
        if signing_in:
            self._set_state("error")
        else:
            self._emit("state")

    def _set_state(self, state: State) -> None:
        self.state = state
        if state == "connected":
            self.step = STEPS.index("test")
        self._emit("state")


def _remote_kernel() -> bool:
    from .._client import _remote_kernel as remote

    return remote()
