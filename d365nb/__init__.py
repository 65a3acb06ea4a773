"""d365nb: Microsoft Dynamics 365 / Dataverse in Jupyter.

Sign in with OAuth2, read tables as typed pandas DataFrames, write them back.

```python
import d365nb
conn = d365nb.connect(service_url="https://org.crm.dynamics.com", client_id="...")
df = conn.read("accounts", select=["name", "revenue"], filter=d365nb.where(revenue__gt=1e6))
```
"""

from __future__ import annotations

# The one import with a side effect: it registers the `df.d365` accessor with pandas.
from . import _accessor  # noqa: E402, F401
from ._analysis import Analysis
from ._changes import Changes, DeltaExpiredError
from ._chunks import Chunks
from ._client import Connection, WhoAmI
from ._config import Settings
from ._connect import connect
from ._exceptions import (
    AuthError,
    ColumnTypeWarning,
    ConfigError,
    D365Error,
    D365Warning,
    InsecureTransportWarning,
    InvalidFrameError,
    ODataError,
    PartialReadError,
    PushError,
    ThrottledError,
    TransportError,
)
from ._fno_client import FnoConnection
from ._odata import F, Query, literal, where
from ._options import PushOptions
from ._report import PushPlan, PushReport
from ._setup import connection, setup
from ._transport import RetryPolicy
from ._version import __version__

__all__ = [
    "Analysis",
    "AuthError",
    "Changes",
    "Chunks",
    "ColumnTypeWarning",
    "ConfigError",
    "Connection",
    "D365Error",
    "D365Warning",
    "DeltaExpiredError",
    "F",
    "FnoConnection",
    "InsecureTransportWarning",
    "InvalidFrameError",
    "ODataError",
    "PartialReadError",
    "PushError",
    "PushOptions",
    "PushPlan",
    "PushReport",
    "Query",
    "RetryPolicy",
    "Settings",
    "ThrottledError",
    "TransportError",
    "WhoAmI",
    "__version__",
    "connect",
    "connection",
    "literal",
    "setup",
    "where",
]

# Reprs and tracebacks say `d365nb.ConfigError`, not `d365nb._exceptions.ConfigError`.
for _name in __all__:
    _obj = globals()[_name]
    if isinstance(_obj, type) or callable(_obj):
        try:
            _obj.__module__ = "d365nb"
        except (AttributeError, TypeError):  # pragma: no cover - builtins
            pass
del _name, _obj
