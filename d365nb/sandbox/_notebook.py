"""The one way in from a notebook: `notebook()` finds (or starts) a sandbox, `connect()`
signs in to it.

```python
import d365nb.sandbox

sb = d365nb.sandbox.notebook(rows=500)                 # $D365NB_SANDBOX's, else a new one
conn = d365nb.sandbox.connect(sb, grant="device_code", approve_as="alex", token_cache=True)
conn.sign_in()   # the token cache, else a device code approved through the sandbox's route
```

`approve_as=` makes a notebook independent of `--auto-approve`: it approves its own code
(or stops at once with the command to run); `token_cache=True` lets the next notebook on
the same sandbox sign in silently (see `d365nb.sandbox._connect`).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._connect import as_info, connect as connect_to
from ._info import SandboxInfo
from ._options import SandboxOptions
from ._server import Sandbox, start

if TYPE_CHECKING:
    from .._client import Connection

__all__ = ["attach", "connect", "notebook"]


def connect(
    sandbox: Any,
    *,
    grant: str = "client_credentials",
    version: str = "v2",
    approve_as: str | None = None,
    service: str = "dataverse",
    **settings: Any,
) -> Connection:
    """A connection to `sandbox` (a `Sandbox`, a `SandboxInfo` or its dict); see
    `d365nb.sandbox._connect.connect` for the parameters.  With `approve_as=` and a
    described (not started here) sandbox, a handle is attached first, so the notebook
    can approve its own device code.
    """
    if approve_as is not None and not callable(getattr(sandbox, "approve", None)):
        sandbox = attach(as_info(sandbox))
    return connect_to(
        sandbox, grant=grant, version=version, approve_as=approve_as, service=service, **settings
    )


connect.__doc__ = connect_to.__doc__


def notebook(rows: int = 500, **knobs: Any) -> Sandbox:
    """The sandbox a notebook should use: `$D365NB_SANDBOX`'s, else a new one in this kernel.

    A new one keeps its data in memory, approves device codes itself and stops with the
    kernel.  `rows` and `knobs` (`SandboxOptions` fields) apply only to a new one.

    **Parameters:**

    * **rows** - accounts to seed in a new sandbox (contacts, opportunities and leads
      scale with it).
    * **knobs** - other `SandboxOptions` fields, e.g. `latency_ms=20`.
    """
    info = SandboxInfo.from_env()
    if info is not None:
        return attach(info)
    knobs.setdefault("database", ":memory:")
    knobs.setdefault("auto_approve", True)
    return start(rows=rows, **knobs)


def attach(info: SandboxInfo) -> Sandbox:
    """A `Sandbox` handle for a sandbox running elsewhere (another process, Binder).

    Its controls (`reset()`, `approve()`) work over HTTPS; `stop()` leaves the other
    process running.

    **Parameters:**

    * **info** - the sandbox's description.
    """
    return Sandbox(info, options=SandboxOptions(data_dir=Path(info.ca_cert).parent))
