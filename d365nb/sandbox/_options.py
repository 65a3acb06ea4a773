"""The sandbox's knobs, in one value object shared by its identity service and Web API."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["SandboxOptions", "default_data_dir"]


def default_data_dir() -> Path:
    """Per-user cache folder for the sandbox's CA, keys and database."""
    import platformdirs

    return Path(platformdirs.user_cache_dir("d365nb")) / "sandbox"


@dataclass(frozen=True)
class SandboxOptions:
    """Everything that can be tuned when starting a sandbox.

    Times are in seconds unless the name says otherwise.
    """

    # -- server
    host: str = "127.0.0.1"
    port: int = 0  # 0: a free port
    data_dir: Path = field(default_factory=default_data_dir)
    # ":memory:" for a throw-away database; None: <data_dir>/dataverse.sqlite
    database: str | None = None
    reset: bool = False  # re-seed the database on start
    # Control routes (/_sandbox/*) need the admin secret from the JSON line: None means only
    # when listening on a non-loopback address (a loopback socket is its own boundary).
    require_admin_secret: bool | None = None

    # -- data
    rows: int = 2000  # accounts; the other tables scale with it
    seed: int = 42
    customer_service: bool = True  # the optional `incident` (Case) table, rows // 5 cases

    # -- identity
    auto_approve: bool = False  # device codes approve themselves (demo, Binder)
    access_token_lifetime: int = 3600
    refresh_token_lifetime: int = 90 * 24 * 3600
    device_code_lifetime: int = 900
    device_code_interval: int = 5

    # -- Web API behaviour
    max_page_size: int = 5000
    latency_ms: float = 0.0  # added to every Web API request
    latency_per_row_ms: float = 0.0  # added per row returned or written
    # Larger request bodies get 413.  [UNVERIFIED] 128 MiB, the size Dataverse is commonly
    # reported to refuse above; the service documents 413 but not the number.
    max_request_bytes: int = 128 * 1024 * 1024
    # Source rows an aggregate ($apply, FetchXML aggregate) may cover (AggregateQueryRecordLimit)
    aggregate_record_limit: int = 50_000
    # Delta tokens older than this expire (`Organization.ExpireChangeTrackingInDays`); 0:
    # every delta link has expired as soon as it is issued (tests of the expired path).
    change_tracking_days: float = 7.0

    # -- service protection limits (per user, per window); defaults are Dataverse's
    window_seconds: float = 300.0
    max_requests_per_window: int = 6000
    max_execution_seconds_per_window: float = 1200.0
    max_concurrent_requests: int = 52
    dop_hint: int = 4  # x-ms-dop-hint sent on every response
    retry_after_seconds: float | None = None  # fixed Retry-After on 429 (None: time to window end)

    # -- faults
    fault_503_rate: float = 0.0  # share of Web API requests answered 503
    fault_drop_rate: float = 0.0  # share of Web API requests whose connection is dropped
    fault_seed: int = 0

    # -- finance and operations environment at <base_url>/fno (`_fno_app.py`)
    fno: bool = False
    fno_rows: int = 500  # customers across all companies; the other entities scale with it
    fno_page_size: int = 10000  # server-driven page size (F&O's is 10,000)

    def replace(self, **changes: Any) -> SandboxOptions:
        """A copy with `changes` applied."""
        return dataclasses.replace(self, **changes)
