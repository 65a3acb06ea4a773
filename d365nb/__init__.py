"""d365nb: Microsoft Dynamics 365 / Dataverse in Jupyter.

Sign in with OAuth2, read tables as typed pandas DataFrames, write them back.
"""

from __future__ import annotations

from ._exceptions import *
from ._version import __version__

__all__ = [
    "AuthError",
    "ConfigError",
    "D365Error",
    "D365Warning",
    "InsecureTransportWarning",
    "ODataError",
    "PushError",
    "ThrottledError",
    "TransportError",
    "__version__",
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
