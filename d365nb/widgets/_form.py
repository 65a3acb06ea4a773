"""The setup panel's form, with no widgets: field values, secrets, suggestions, steps.

`SetupForm` holds what the user typed (secrets apart, in memory only), derives the
endpoints and scope from the other fields with the settings layer's own analysis, checks
every field with `check_fields` (the same code `Settings` runs, so the panel and
`d365nb.connect()` never disagree), walks the steps, fills in the sandbox preset, and
saves and loads profiles.  `SetupController` (in `_controller.py`) adds sign-in on top.
"""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Final, Literal, cast
from urllib.parse import urlsplit

from .. import _profile
from .._analysis import Analysis, check_fields
from .._config import Settings
from .._environment import remote_kernel
from .._exceptions import ConfigError
from .._fields import ENV_CONFIG, ENV_PREFIX, ENV_PROFILE, FIELDS, SECRET_FIELDS, redact
from ..sandbox._info import SANDBOX_ENV, SandboxInfo, find_sandbox
from ._explain import FIELD_LABELS, FieldStatus, Problem, describe_error, form_words

__all__ = [
    "DEFAULT_REDIRECT_URI",
    "METHODS",
    "METHOD_TITLES",
    "STEPS",
    "STEP_FIELDS",
    "STEP_TITLES",
    "Method",
    "SetupForm",
]

Method = Literal["device_code", "auth_code", "client_credentials", "token"]

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
    "app": ("tenant", "client_id"),
    "endpoints": ("auth_uri", "token_uri"),
    "scope": ("scope",),
    # The secret sits with the method that needs it (client secret, confidential browser).
    "sign_in": ("client_secret", "redirect_uri", "access_token", "refresh_token"),
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
DEFAULT_REDIRECT_URI: Final = "http://localhost"
_SUGGESTED: Final = ("auth_uri", "token_uri", "scope")
_TEXT_FIELDS: Final = tuple(name for name in FIELDS if name not in SECRET_FIELDS)
#: The log keeps this many lines (the oldest go first).
LOG_LINES: Final = 200
# The fields an endpoint's tenant can contradict (the settings layer marks the tenant).
_ENDPOINTS: Final = ("token_uri", "auth_uri")


class SetupForm:
    """The fields of the setup panel and the steps that show them, without any widget.

    **Parameters:**

    * **environ** - where `D365NB_*` pre-fill values come from; `os.environ` when omitted.
    * **profile** - a saved profile to pre-fill from (else `D365NB_PROFILE`).
    * **profile_path** - the profile file; `D365NB_CONFIG` or the per-user default.
    * **sandbox** - a `SandboxInfo`, a `Sandbox` or its info dict to offer as a preset;
      `None` looks for one (`find_sandbox`); `False` offers none.
    * **values** - field values that win over the environment and the profile.
    """

    def __init__(
        self,
        *,
        environ: Mapping[str, str] | None = None,
        profile: str | None = None,
        profile_path: str | os.PathLike[str] | None = None,
        sandbox: Any = None,
        values: Mapping[str, str | None] | None = None,
    ) -> None:
        self._environ: Mapping[str, str] = os.environ if environ is None else environ
        self.profile_path = profile_path
        self.values: dict[str, str] = {}
        self._secrets: dict[str, str] = {}
        self.secret_sources: dict[str, str] = {}
        self._edited: set[str] = set()
        self.method: Method = "device_code"
        self.endpoint_version: Literal["v2", "v1"] = "v2"
        self.auth_code_mode: Literal["browser", "paste"] = "browser"
        self.step = 0
        self.problem: Problem | None = None
        self.notice = ""
        self.log: list[str] = []  # the last LOG_LINES lines
        self.log_count = 0  # lines ever logged (the panel redraws when it changes)
        self._edits: dict[str, int] = {}  # field -> when it was last set (a tick of _clock)
        self._clock = itertools.count(1)
        self._using_sandbox = False
        self._suggestions: dict[str, str] = {}
        self.resource = ""  # derived from the Service URL ('' until it is valid)
        self.service = ""  # "dataverse" or "fno", from the Service URL ('' until valid)
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
            self.log_count += 1
        del self.log[:-LOG_LINES]

    # -- pre-fill ----------------------------------------------------------------------

    def _prefill(self, profile: str | None, values: Mapping[str, str | None]) -> None:
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
                raw.update(_profile.load_profile(chosen, path=path))
                self.notice = f"Loaded profile {chosen!r}."
            except ConfigError as exc:
                self.problem = describe_error(exc)
        for key, given in values.items():
            if given is not None:
                raw[key] = given
        self._apply(raw)

    def _apply(self, raw: Mapping[str, str]) -> None:
        for key, value in raw.items():
            self._touch(key)
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
        elif remote_kernel():
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
            self.service = derived.service
        else:
            self.resource = ""
            self.service = ""
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
        self._touch(name)
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
            self._touch(name)
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

    def _touch(self, name: str) -> None:
        """Note that field `name` was just set (a contradiction is marked on the later one)."""
        self._edits[name] = next(self._clock)

    def _edited_now(self) -> None:
        """A change by the user: an old error or notice no longer applies."""
        if not self.busy:
            self.problem = None
            self.notice = ""

    def has_secret(self, name: str) -> bool:
        """True when a value for secret field `name` is held."""
        return name in self._secrets

    def set_method(self, method: str) -> None:
        """Choose the sign-in method: one of `METHODS`."""
        if method not in METHODS:
            raise ValueError(f"unknown sign-in method {method!r}; use one of {METHODS}")
        self.method = cast(Method, method)
        self._follow_sandbox_client()
        self._edited_now()
        self._refresh_suggestions()
        self._emit("method")

    def _follow_sandbox_client(self) -> None:
        """With the sandbox preset in force, use the client that fits the method.

        Signing in as the app takes the sandbox's confidential client and its secret; a
        user sign-in takes the public client.  A Client ID or secret the user typed stays.
        """
        sb = self.sandbox
        if sb is None or not self._using_sandbox:
            return
        if self.values.get("client_id") not in (sb.public_client_id, sb.confidential_client_id):
            return
        from_sandbox = self.secret_sources.get("client_secret", "sandbox") == "sandbox"
        if self.method == "client_credentials" and sb.confidential_client_id and sb.client_secret:
            self.values["client_id"] = sb.confidential_client_id
            if from_sandbox:
                self._secrets["client_secret"] = sb.client_secret
                self.secret_sources["client_secret"] = "sandbox"
        else:
            self.values["client_id"] = sb.public_client_id
            if from_sandbox and "client_secret" in self._secrets:
                del self._secrets["client_secret"]
                del self.secret_sources["client_secret"]

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
        """Field → message with the fix, in the panel's words (secrets never quoted).

        The checks are `check_fields`'s.  A Tenant that contradicts a typed Token URI or
        Auth URI is marked on whichever of them was set last: the step where the
        contradiction appeared is the one that cannot be left.
        """
        values = self.settings_values()
        found = {
            name: form_words(text) for name, text in check_fields(values, partial=partial).items()
        }
        typed = [name for name in _ENDPOINTS if name in values]
        tenant = values.get("tenant")
        alone = check_fields({"tenant": tenant}, partial=True) if tenant else {"tenant": ""}
        if "tenant" in found and typed and "tenant" not in alone:
            later = max(typed, key=lambda name: self._edits.get(name, 0))
            if self._edits.get(later, 0) > self._edits.get("tenant", 0):
                found.setdefault(later, found.pop("tenant"))
        return found

    def shows(self, name: str) -> bool:
        """True when the panel shows field `name` for the chosen sign-in method."""
        if name == "client_secret":
            return self.method in ("client_credentials", "auth_code")
        if name == "redirect_uri":
            return self.method == "auth_code" and self.auth_code_mode == "paste"
        if name in ("access_token", "refresh_token"):
            return self.method == "token"
        return True

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
        names = [name for name in STEP_FIELDS[STEPS[step]] if self.shows(name)]
        problems = {k: v for k, v in self.problems(partial=True).items() if k in names}
        if STEPS[step] == "service" and not self.values.get("service_url"):
            problems.setdefault(
                "service_url",
                "The Service URL is required: use the Web API URL, e.g. "
                "https://org.api.crm.dynamics.com/api/data/v9.2/",
            )
        return problems

    def step_status(self) -> FieldStatus:
        """Whether Next may leave the current step, and if not what to do.

        `ok` is False when a field of the step is marked with a problem, None when a
        required field is still empty (nothing is marked yet), True otherwise.
        """
        problems = self.step_problems(self.step)
        if not problems:
            return FieldStatus(True, "")
        if any(self.status(name).ok is False for name in problems):
            return FieldStatus(False, "Correct the field marked above to continue.")
        empty = " and the ".join(FIELD_LABELS.get(name, name) for name in problems)
        return FieldStatus(None, f"Enter the {empty} to continue.")

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

    @property
    def busy(self) -> bool:
        """True while a sign-in or test is under way (never, for the form alone)."""
        return False

    def _all_secrets(self) -> list[str]:
        """Every value that must not appear in what the form shows or logs."""
        return list(self._secrets.values())

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
        try:
            return _profile.list_profiles(path=self.profile_path)
        except ConfigError:
            return []

    def load_profile(self, name: str) -> None:
        """Replace the fields with profile `name` (secrets already held are kept)."""
        try:
            loaded = _profile.load_profile(name, path=self.profile_path)
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

    def _fail(self, exc: BaseException) -> None:
        """Show `exc` as the current problem (and in the log); jump to its field's step."""
        self._note_problem(exc)
        self._emit("state")

    def _note_problem(self, exc: BaseException) -> None:
        problem = describe_error(
            exc, secrets=self._all_secrets(), grant=self.grant, service=self.service
        )
        self.problem = problem
        self._log(f"Error: {problem.sentence}")
        self._log(problem.detail)
        step = self.step_of(problem.field)
        if step is not None:
            self.step = step
