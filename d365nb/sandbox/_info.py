"""The sandbox contract: the JSON line ``d365nb sandbox`` prints, and `D365NB_SANDBOX`.

```python
info = SandboxInfo.from_env()        # None when D365NB_SANDBOX is unset
print(info.service_url, info.ca_cert)
```

`D365NB_SANDBOX` holds either that JSON object or the path of a file whose first line is
it (Binder's `start` script writes one).  The CLI, the setup panel's preset, notebooks and
tests all read a sandbox through `SandboxInfo`.  Standard library only: importing this
module never pulls the sandbox's server dependencies.
"""

from __future__ import annotations

import dataclasses
import json
import os
import weakref
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Protocol
from urllib.parse import urlsplit

from .._exceptions import ConfigError
from ._directory import (
    CONFIDENTIAL_CLIENT_ID,
    CONFIDENTIAL_CLIENT_SECRET,
    PUBLIC_CLIENT_ID,
    TENANT_ID,
)

__all__ = [
    "ADMIN_HEADER",
    "SANDBOX_ENV",
    "SANDBOX_HELP",
    "RunningSandbox",
    "SandboxInfo",
    "find_sandbox",
    "register",
    "running",
    "sandbox_info",
]

#: The one-line help of ``d365nb sandbox`` (here so that `d365nb.cli` can show it without
#: importing the server).
SANDBOX_HELP: Final = (
    "run a local stand-in for Entra ID and the Dataverse Web API over HTTPS; prints one "
    "JSON line (service_url, authority, token_uri, ca_cert, client ids, ...) on stdout"
)
#: The environment variable that describes a running sandbox: its JSON line, or a file.
SANDBOX_ENV: Final = "D365NB_SANDBOX"
#: The request header that carries `SandboxInfo.admin_secret` to the control routes.
ADMIN_HEADER: Final = "X-D365NB-Sandbox-Secret"
_REQUIRED: Final = ("service_url", "tenant", "public_client_id", "ca_cert")
_HINT: Final = (
    "Set D365NB_SANDBOX to the JSON line `d365nb sandbox` prints, or to a file holding it."
)


@dataclass(frozen=True)
class SandboxInfo:
    """What clients need to reach a running sandbox (the JSON line `d365nb sandbox` prints).

    `service_url`, `tenant`, `public_client_id` and `ca_cert` are required; the rest is
    derived or optional.  Secrets (`client_secret`, `admin_secret`) stay out of `repr()`.
    """

    service_url: str
    tenant: str
    public_client_id: str
    ca_cert: str
    base_url: str = ""
    authority: str | None = None
    token_uri: str | None = None
    auth_uri: str | None = None
    confidential_client_id: str | None = None
    client_secret: str | None = field(default=None, repr=False)
    approve_url: str | None = None
    device_login_url: str | None = None
    fno_service_url: str | None = None  # the F&O environment (served when started with fno=True)
    #: Sent as `ADMIN_HEADER` to the control routes (`/_sandbox/*`); per sandbox start.
    admin_secret: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if not self.base_url:
            object.__setattr__(self, "base_url", self.origin)

    @classmethod
    def from_mapping(cls, info: Mapping[str, Any]) -> SandboxInfo:
        """Read the sandbox's info dict; `ConfigError` names a missing key.

        **Parameters:**

        * **info** - the JSON object `d365nb sandbox` prints (`Sandbox.info()`); unknown
          keys are ignored.
        """
        missing = [k for k in _REQUIRED if not info.get(k)]
        if missing:
            raise ConfigError(
                f"The sandbox description lacks {', '.join(missing)}.",
                field=SANDBOX_ENV,
                hint=_HINT,
            )
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            value = info.get(f.name)
            if value:
                values[f.name] = str(value)
        return cls(**values)

    @classmethod
    def from_text(cls, value: str) -> SandboxInfo:
        """The sandbox `value` describes: its JSON object, or a file whose first line is it.

        **Parameters:**

        * **value** - the JSON object, or the path of a file holding it.
        """
        raw = value.strip()
        try:
            text = raw if raw.startswith("{") else Path(raw).expanduser().read_text("utf-8")
            lines = text.strip().splitlines()
            info = json.loads(lines[0]) if lines else None
        except (OSError, ValueError) as exc:
            raise ConfigError(
                f"{SANDBOX_ENV} cannot be read: {type(exc).__name__}: {exc}",
                field=SANDBOX_ENV,
                hint=_HINT,
            ) from exc
        if not isinstance(info, dict):
            raise ConfigError(
                f"The sandbox description in {SANDBOX_ENV} is not a JSON object.",
                field=SANDBOX_ENV,
                hint=_HINT,
            )
        return cls.from_mapping(info)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> SandboxInfo | None:
        """The sandbox `D365NB_SANDBOX` describes, or `None` when it is unset or empty.

        A description that cannot be read raises `ConfigError`.

        **Parameters:**

        * **environ** - where to look (default: `os.environ`).
        """
        env = os.environ if environ is None else environ
        raw = (env.get(SANDBOX_ENV) or "").strip()
        return cls.from_text(raw) if raw else None

    @property
    def origin(self) -> str:
        """`https://127.0.0.1:PORT`: the sandbox serves sign-in and Web API there."""
        parts = urlsplit(self.service_url)
        return f"{parts.scheme}://{parts.netloc}".lower()

    def to_dict(self) -> dict[str, str]:
        """The JSON object (keys with no value left out)."""
        return {
            f.name: value
            for f in dataclasses.fields(self)
            if (value := getattr(self, f.name)) is not None
        }

    def to_json(self) -> str:
        """The JSON line `d365nb sandbox` prints (without the newline)."""
        return json.dumps(self.to_dict())


def sandbox_info(base_url: str, ca_cert: str, *, admin_secret: str | None = None) -> SandboxInfo:
    """What clients need to reach a sandbox serving at `base_url`.

    **Parameters:**

    * **base_url** - the sandbox's origin, ``https://127.0.0.1:PORT``.
    * **ca_cert** - the path of the CA certificate clients must trust.
    * **admin_secret** - the secret its control routes take.
    """
    authority = f"{base_url}/{TENANT_ID}"
    return SandboxInfo(
        base_url=base_url,
        service_url=f"{base_url}/api/data/v9.2/",
        authority=authority,
        token_uri=f"{authority}/oauth2/v2.0/token",
        auth_uri=f"{authority}/oauth2/v2.0/authorize",
        tenant=TENANT_ID,
        ca_cert=ca_cert,
        public_client_id=PUBLIC_CLIENT_ID,
        confidential_client_id=CONFIDENTIAL_CLIENT_ID,
        client_secret=CONFIDENTIAL_CLIENT_SECRET,
        approve_url=f"{base_url}/_sandbox/devicecode/approve",
        device_login_url=f"{base_url}/devicelogin",
        fno_service_url=f"{base_url}/fno/data/",
        admin_secret=admin_secret,
    )


# -- sandboxes of this process ----------------------------------------------------------------


class RunningSandbox(Protocol):
    """What the registry needs of a `Sandbox` (this module does not import the server)."""

    @property
    def running(self) -> bool:
        """True until the sandbox stops."""

    def info(self) -> dict[str, str]:
        """The JSON line's values."""


_STARTED: list[weakref.ref[RunningSandbox]] = []


def register(sandbox: RunningSandbox) -> None:
    """Remember `sandbox` as started by this process (`running()` lists it until it stops)."""
    _STARTED.append(weakref.ref(sandbox))


def running() -> list[Any]:
    """Sandboxes (`Sandbox` handles) started by this process and still running, oldest first."""
    alive = [sb for ref in list(_STARTED) if (sb := ref()) is not None]
    _STARTED[:] = [weakref.ref(sb) for sb in alive]
    return [sb for sb in alive if sb.running]


def _sandboxes_in_process() -> list[RunningSandbox]:
    return running()


def find_sandbox(environ: Mapping[str, str] | None = None) -> SandboxInfo | None:
    """A running sandbox to offer as a preset, or `None`.

    Looked for, in order:

    1. a sandbox started in this process with `d365nb.sandbox.start()` (the most recent
       one still running);
    2. `D365NB_SANDBOX`: the JSON object `d365nb sandbox` prints on its first line, or the
       path of a file holding it (Binder's `start` script writes one).

    A description that cannot be read is ignored (the panel then offers no preset).

    **Parameters:**

    * **environ** - where to look for `D365NB_SANDBOX` (default: `os.environ`).
    """
    found = _sandboxes_in_process()
    if found:
        return SandboxInfo.from_mapping(found[-1].info())
    try:
        return SandboxInfo.from_env(environ)
    except ConfigError:
        return None
