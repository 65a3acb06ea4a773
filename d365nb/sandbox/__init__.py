"""A local, faithful stand-in for Entra ID and the Dataverse Web API, over HTTPS.

```python
import d365nb.sandbox

with d365nb.sandbox.start(database=":memory:", rows=200) as sb:
    print(sb.authority, sb.service_url, sb.ca_cert)

sb = d365nb.sandbox.notebook()                      # in a notebook: $D365NB_SANDBOX's, or a new one
conn = d365nb.sandbox.connect(sb, grant="device_code")
```

From a shell: ``d365nb sandbox`` (or ``python -m d365nb.sandbox``) prints one JSON line
(`SandboxInfo`) with the same values and serves until Ctrl-C.  Needs the ``sandbox``
extra: ``pip install "d365nb[sandbox]"``.  Importing this package is cheap: the server's
dependencies (starlette, uvicorn) load when a sandbox starts.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._info import SandboxInfo, running
    from ._notebook import connect, notebook
    from ._options import SandboxOptions, default_data_dir
    from ._server import Sandbox, start

__all__ = [
    "Sandbox",
    "SandboxInfo",
    "SandboxOptions",
    "connect",
    "default_data_dir",
    "notebook",
    "running",
    "start",
]

# Public name -> the private module that defines it.
_HOMES = {
    "Sandbox": "_server",
    "SandboxInfo": "_info",
    "SandboxOptions": "_options",
    "connect": "_notebook",
    "default_data_dir": "_options",
    "notebook": "_notebook",
    "running": "_info",
    "start": "_server",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{home}"), name)
    if getattr(value, "__module__", None) == f"{__name__}.{home}":
        try:
            value.__module__ = __name__
        except (AttributeError, TypeError):
            pass
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
