"""d365nb on a Dask cluster: when one machine is not enough.

```python
import d365nb.dask
from distributed import Client

client = Client("tcp://scheduler:8786")            # or LocalCluster()
ddf = d365nb.dask.read("accounts", conn=conn)      # partitions: createdon ranges
report = d365nb.dask.push(ddf, "accounts", conn=conn)  # one combined PushReport
```

Workers read and write through the same engine as `conn.read()` and `conn.push()`.  They
never receive a client secret or refresh token (short-lived access tokens come from the
client process, or secrets from the workers' own environment), and the whole cluster
shares one request budget per identity (a `distributed.Semaphore` sized to the service's
allowed concurrency; a 429 on one worker pauses all).  Needs the `dask` extra:
`pip install "d365nb[dask]"`.  `import d365nb` does not import Dask.
"""

from __future__ import annotations

try:
    import dask.dataframe  # noqa: F401
    import distributed  # noqa: F401
except ImportError as exc:  # pragma: no cover - depends on the installation
    raise ImportError('d365nb.dask needs Dask and distributed: pip install "d365nb[dask]"') from exc

from ._push import push
from ._read import read

__all__ = ["push", "read"]
