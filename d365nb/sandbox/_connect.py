"""Connect to a sandbox: a `Connection` configured from its `SandboxInfo`.

The one way from a sandbox description to a client: `d365nb.sandbox.connect()`,
`Sandbox.connect()` and the notebooks all come here.  The client is imported when a
connection is made, so the sandbox's engine never imports it.

Two notebook conveniences live here too:

* `approve_as=` approves the connection's device code through the sandbox's approval
  route (`POST /_sandbox/devicecode/approve`), so a notebook never waits for a person, and
  stops within seconds, with the command to run, when the sandbox refuses;
* `token_cache=True` keeps tokens in a cache keyed by the sandbox's CA certificate: a
  second notebook on the same sandbox signs in silently, and a cached token can only go
  to a server holding a certificate of that CA (another sandbox, even on the same port,
  has its own CA and so its own cache).
"""

from __future__ import annotations

import hashlib
import os
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from .._exceptions import AuthError, ConfigError
from ._info import SandboxInfo

if TYPE_CHECKING:
    from .._client import Connection

__all__ = [
    "DeviceCodeApprover",
    "as_info",
    "connect",
    "connect_to",
    "sandbox_token_cache",
]

#: After the sandbox approved a device code, its token comes at the next poll: wait no longer.
APPROVED_WAIT: Final = 30.0
_COMMAND: Final = "d365nb sandbox --memory --auto-approve > sandbox.json"


def as_info(sandbox: Any) -> SandboxInfo:
    """`sandbox` as a `SandboxInfo`: a `SandboxInfo`, a `Sandbox`, its `info()` dict, or any
    object with the same attributes.

    **Parameters:**

    * **sandbox** - the sandbox's description.
    """
    if isinstance(sandbox, SandboxInfo):
        return sandbox
    if isinstance(sandbox, Mapping):
        return SandboxInfo.from_mapping(sandbox)
    info = getattr(sandbox, "info", None)
    if callable(info):
        described = info()
        return described if isinstance(described, SandboxInfo) else as_info(described)
    return SandboxInfo.from_mapping(vars(sandbox))


def sandbox_token_cache(
    info: SandboxInfo, token_cache: bool | str | os.PathLike[str]
) -> bool | Path:
    """The token cache folder for `info`'s sandbox: for `True`, a folder of the per-user
    cache named after the sandbox's CA certificate; a folder or `False` as given.

    Sandbox ports change between starts and msal keys its entries by bare host name, so
    the per-user cache could hand one sandbox's token to another.  Keyed by the CA (which
    the connection also trusts, and nothing else), a cached token reaches only the
    sandbox that issued it.

    **Parameters:**

    * **info** - the sandbox's description.
    * **token_cache** - `True` (per-user folder), a folder (used as it is), or `False`
      (memory only).
    """
    if token_cache is not True:
        return token_cache if token_cache is False else Path(os.fspath(token_cache))
    from .._tokencache import default_cache_dir

    try:
        pem = Path(info.ca_cert).read_bytes()
    except OSError as exc:
        raise ConfigError(
            f"The sandbox's CA certificate cannot be read: {type(exc).__name__}.",
            field="ca_cert",
            hint="Check that the sandbox is running and D365NB_SANDBOX describes it.",
        ) from None
    return default_cache_dir() / f"sandbox-{hashlib.sha256(pem).hexdigest()[:16]}"


class DeviceCodeApprover:
    """A connection's `prompt` that approves its own device code through the sandbox's
    approval route, as `user`, and says so in one line.

    When the sandbox refuses (or does not answer), the sign-in stops at once with
    `AuthError`, whose hint gives the command to run; after an approval the token is
    waited for at most `APPROVED_WAIT` seconds.

    **Parameters:**

    * **sandbox** - the `Sandbox` handle whose `approve()` to call.
    * **user** - the seeded user to approve as (`alex`, `megan`, `norole` or a UPN).
    """

    def __init__(self, sandbox: Any, *, user: str) -> None:
        self.sandbox = sandbox
        self.user = user

    def __repr__(self) -> str:
        return f"DeviceCodeApprover(user={self.user!r})"

    def __call__(self, item: Any) -> None:
        from .._auth import DeviceCode

        if not isinstance(item, DeviceCode):
            raise AuthError(
                "Only device-code sign-ins can be approved by the sandbox.",
                hint="Connect with grant='device_code', or leave approve_as= out.",
            )
        where = getattr(self.sandbox, "base_url", "the sandbox")
        _say(
            f"Sandbox sign-in: approving device code {item.user_code} as {self.user} "
            f"(POST {where}/_sandbox/devicecode/approve)."
        )
        try:
            answer = self.sandbox.approve(item.user_code, self.user)
        except ConfigError as exc:
            if not str(exc).startswith("No pending device code"):
                raise self._stop(item, where, exc) from None
            # A sandbox started with --auto-approve answered the code already.
            answer = {"user": "the sandbox's first user (it approves codes itself)"}
        except Exception as exc:  # no answer: stop now, say what to run
            raise self._stop(item, where, exc) from None
        item.expires_at = min(item.expires_at, time.time() + APPROVED_WAIT)
        _say(
            f"Approved as {answer.get('user', self.user)}; fetching the token "
            f"(waiting at most {APPROVED_WAIT:.0f} s)."
        )

    @staticmethod
    def _stop(item: Any, where: str, exc: BaseException) -> AuthError:
        """Stop waiting for `item` and say what to run instead."""
        item.cancel()
        return AuthError(
            f"The sandbox at {where} did not approve device code {item.user_code}: "
            f"{_first_line(exc)}",
            hint=f"Start the sandbox with automatic approval: `{_COMMAND}` (then point "
            "D365NB_SANDBOX at sandbox.json, restart the kernel and run this cell "
            "again), or unset D365NB_SANDBOX so the notebook starts its own sandbox.",
        )


def _say(line: str) -> None:
    print(line, file=sys.stdout, flush=True)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]


def connect(
    sandbox: Any,
    *,
    grant: str = "client_credentials",
    version: str = "v2",
    approve_as: str | None = None,
    service: str = "dataverse",
    **settings: Any,
) -> Connection:
    """A connection to `sandbox` with `grant`, using the sandbox's seeded app registrations.

    Client credentials use the confidential client (its application user); every other
    grant uses the public client.  `version="v1"` uses the v1 (`resource=`) endpoints.
    Tokens are kept in memory unless `token_cache=` says otherwise; `token_cache=True`
    keeps them in a cache of this sandbox's own (`sandbox_token_cache`).

    ```python
    conn = d365nb.sandbox.connect(sb)                        # the application user
    conn = d365nb.sandbox.connect(sb, grant="device_code")   # a person signs in
    conn = d365nb.sandbox.connect(sb, grant="device_code", approve_as="alex",
                                  token_cache=True)          # a notebook: no waiting
    ```

    **Parameters:**

    * **sandbox** - a `SandboxInfo`, a `Sandbox` or its `info()` dict.
    * **grant** - the grant type (`client_credentials`, `device_code`, `auth_code`, ...).
    * **version** - `v2` (scopes) or `v1` (`resource=`) identity endpoints.
    * **approve_as** - device code only: approve the code through the sandbox's approval
      route as this seeded user (`alex`, `megan`, `norole`); see `DeviceCodeApprover`.
    * **service** - `"dataverse"` (the Web API) or `"fno"`: the sandbox's finance and
      operations environment (started with `fno=True`); its resource is `<origin>/fno`.
    * **settings** - more `d365nb.connect` arguments (`token_cache=`, `max_concurrency=`,
      `retry=`, ...).
    """
    from .._connect import connect as connect_client

    info = as_info(sandbox)
    if approve_as is not None and grant != "device_code":
        raise ConfigError(
            f"approve_as= approves device codes; grant={grant!r} has none.",
            field="approve_as",
            hint="Pass grant='device_code', or leave approve_as= out.",
        )
    confidential = grant == "client_credentials"
    authority = info.authority or f"{info.base_url}/{info.tenant}"
    service_url = info.service_url
    if service == "fno":
        if not info.fno_service_url:
            raise ConfigError(
                "This sandbox serves no finance and operations environment.",
                field="service",
                hint="Start it with fno=True (d365nb sandbox --fno).",
            )
        service_url = info.fno_service_url
    values: dict[str, Any] = {
        "service_url": service_url,
        "service": service,
        "tenant": info.tenant,
        "client_id": info.confidential_client_id if confidential else info.public_client_id,
        "grant": grant,
        "token_uri": (
            info.token_uri or f"{authority}/oauth2/v2.0/token"
            if version == "v2"
            else f"{info.base_url}/{info.tenant}/oauth2/token"
        ),
        "auth_uri": (
            info.auth_uri or f"{authority}/oauth2/v2.0/authorize"
            if version == "v2"
            else f"{info.base_url}/{info.tenant}/oauth2/authorize"
        ),
    }
    if confidential:
        values["client_secret"] = info.client_secret
    values["verify"] = info.ca_cert
    if service == "fno":
        values.setdefault("metadata_cache", False)
    values.update(settings)
    values["token_cache"] = sandbox_token_cache(info, settings.get("token_cache", False))
    conn = connect_client(**values)
    if approve_as is not None:
        if not callable(getattr(sandbox, "approve", None)):
            raise ConfigError(
                "approve_as= needs a sandbox handle that can approve device codes.",
                field="approve_as",
                hint="Pass the Sandbox (or use d365nb.sandbox.connect, which attaches to "
                "a described sandbox itself).",
            )
        conn.prompt = DeviceCodeApprover(sandbox, user=approve_as)
    return conn


#: The name tests and benchmarks have used; the same function.
connect_to = connect
