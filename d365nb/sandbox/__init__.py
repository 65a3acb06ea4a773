"""A local, faithful stand-in for Entra ID and the Dataverse Web API, over HTTPS.

```python
import d365nb.sandbox

with d365nb.sandbox.start(database=":memory:", rows=200) as sb:
    print(sb.authority, sb.service_url, sb.ca_cert)
```

From a shell: ``d365nb sandbox`` (or ``python -m d365nb.sandbox``) prints one JSON line
with the same values and serves until Ctrl-C.  Needs the ``sandbox`` extra:
``pip install "d365nb[sandbox]"``.
"""

from __future__ import annotations

from ._options import SandboxOptions, default_data_dir
from ._server import Sandbox, start

__all__ = ["Sandbox", "SandboxOptions", "default_data_dir", "start"]

for _name in __all__:
    globals()[_name].__module__ = "d365nb.sandbox"
del _name
