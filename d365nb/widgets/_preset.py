"""The setup panel's sandbox preset: which local sandbox to offer, and how it is described.

`find_sandbox` looks for a sandbox started in this process (the sandbox package's own
registry, `running_sandboxes()`), then for `D365NB_SANDBOX` (the JSON line `d365nb sandbox`
prints, or a file holding it).  `SandboxInfo` is what the panel takes from either.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

from .._exceptions import ConfigError

__all__ = ["SANDBOX_ENV", "SandboxInfo", "find_sandbox"]

#: The environment variable that describes a running sandbox (see `find_sandbox`).
SANDBOX_ENV: Final = "D365NB_SANDBOX"


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
    """Running `Sandbox` objects of this process, from the sandbox package's registry.

    Only when the sandbox was ever imported: a process that never imported it runs none,
    and importing it here would pull in its server stack (starlette, uvicorn).
    """
    module = sys.modules.get("d365nb.sandbox._server")
    if module is None:
        return []
    return list(module.running_sandboxes())
