"""Change tracking rules: which tables are tracked, and when a delta token has expired.

The delta itself (`$deletedEntity` rows, the fresh deltaLink) is built by `_reads.py`;
every write path stamps `versionnumber` or logs into `_deleted`, which is all it reads.
"""

from __future__ import annotations

from datetime import datetime, timezone

from ._errors import ApiError
from ._model import CURRENT_CATALOG
from ._schema import Table

__all__ = ["check_token_age", "require_tracking", "tracked"]

_STAMP = "%m/%d/%Y %H:%M:%S"


def tracked(table: Table) -> bool:
    """Whether `table` has `ChangeTrackingEnabled`.

    Seeded tables (and the optional system ones) do; tables created through the metadata
    API do not, which is Dataverse's default for a new table.
    """
    catalog = CURRENT_CATALOG.get()
    if catalog is None or table.logical not in catalog.tables:
        return True
    return table.logical in catalog.system


def require_tracking(table: Table) -> None:
    """Refuse `Prefer: odata.track-changes` on a table without change tracking."""
    if not tracked(table):
        # [UNVERIFIED] status, code and wording: Microsoft documents the requirement
        # (ChangeTrackingEnabled) but not the error a request on an untracked table gets.
        raise ApiError(
            400,
            "0x80048d0b",
            f"Entity '{table.logical}' is not enabled for change tracking "
            "(ChangeTrackingEnabled is false).",
        )


def check_token_age(token: str, stamp: str, *, days: float) -> None:
    """Refuse a delta token older than `days` (`Organization.ExpireChangeTrackingInDays`)."""
    try:
        made = datetime.strptime(stamp, _STAMP).replace(tzinfo=timezone.utc)
    except ValueError:
        raise ApiError(400, "0x80060888", f"Invalid delta token '{token}'.") from None
    age = (datetime.now(timezone.utc) - made).total_seconds()
    if age >= days * 86400:
        # [UNVERIFIED] Microsoft documents the 7-day retention, not the expired-token error.
        raise ApiError(
            400,
            "0x80060888",
            f"The delta token '{token}' has expired: changes are kept for {days:g} days. "
            "Read the table again with Prefer: odata.track-changes.",
        )
