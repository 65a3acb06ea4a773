"""Service dialects: what differs between Dataverse and finance and operations apps.

"Dynamics 365" is two services behind one sign-in (DESIGN.md, "Two services, one
toolkit").  Identity, transport, limiter, sync runner, progress and the push report are
shared; what differs sits in one `Dialect` per service, below the read and write engines:

| rule | Dataverse (`dataverse.py`) | F&O (`fno.py`) |
| --- | --- | --- |
| metadata source | `EntityDefinitions` (`_catalog`) | `$metadata` CSDL (`_fno_metadata`) |
| OData root | `/api/data/v9.x/` | `/data/` |
| page size | 5,000 (`Prefer`) | 10,000, server-driven |
| literals | `_odata.literal` | + qualified enum literals, `*` wildcard |
| key segments | primary id or alternate key | every key field named, `dataAreaId` |
| error shape | `error.code` + `error.message` | 500 + `innererror.message` (infolog) |
| bulk paths | CreateMultiple / `$batch` | `$batch` change sets, package API |
| change tracking | `Prefer: odata.track-changes` | none (package API incremental export) |

`dialect_for(settings)` picks one from `Settings.service`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .dataverse import DATAVERSE, DataverseDialect
from .fno import FNO, FnoDialect

if TYPE_CHECKING:
    from .._config import Settings

__all__ = ["DATAVERSE", "FNO", "DataverseDialect", "Dialect", "FnoDialect", "dialect_for"]

Dialect = DataverseDialect | FnoDialect


def dialect_for(settings: Settings) -> Dialect:
    """The dialect of the service `settings` point at (`Settings.service`)."""
    return FNO if getattr(settings, "service", None) == "fno" else DATAVERSE
