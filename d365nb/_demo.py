"""The tour behind ``d365nb demo``.

`run_demo()` starts an embedded sandbox, signs in with the device-code grant (the sandbox
approves the code itself), reads accounts and opportunities as typed DataFrames, fixes a
data-quality problem, pushes the fix back (dry run first) and reads it again to check.
It returns a `DemoResult` and writes a short report; nothing is left behind.

Notebooks find (or start) their sandbox with `d365nb.sandbox.notebook()` and sign in with
`d365nb.sandbox.connect()`; the sandbox contract (`D365NB_SANDBOX`, the JSON line) is
`d365nb.sandbox.SandboxInfo`.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["DemoResult", "fill_missing_emails", "run_demo"]

# -- the demo ------------------------------------------------------------------------------


@dataclass
class DemoResult:
    """What `run_demo` did, in numbers (also printed as the demo's report)."""

    signed_in_as: str = ""
    business_unit: str = ""
    accounts: int = 0
    columns: int = 0
    typed_columns: dict[str, str] = field(default_factory=dict)
    missing_email: int = 0
    plan: dict[str, int] = field(default_factory=dict)
    pushed: dict[str, int] = field(default_factory=dict)
    missing_after: int = 0
    pipeline: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        """True when every fixed row was written and none is missing afterwards."""
        return (
            self.missing_email > 0
            and self.pushed.get("updated", 0) == self.missing_email
            and self.pushed.get("failed", 0) == 0
            and self.missing_after == 0
        )


def fill_missing_emails(accounts: pd.DataFrame) -> pd.DataFrame:
    """The accounts without an email, with `info@<website's domain>` filled in.

    Returns only those rows and the columns a push needs (`accountid`, `emailaddress1`).
    """
    missing = accounts["emailaddress1"].isna()
    fixed = accounts.loc[missing, ["accountid", "emailaddress1", "websiteurl"]].copy()
    domain = fixed["websiteurl"].str.replace(r"^https?://(www\.)?", "", regex=True)
    fixed["emailaddress1"] = "info@" + domain.str.rstrip("/")
    result: pd.DataFrame = fixed.drop(columns=["websiteurl"])
    return result


def _line(out: TextIO, text: str = "") -> None:
    out.write(text + "\n")
    out.flush()


def run_demo(
    *,
    rows: int = 500,
    latency_ms: float = 0.0,
    out: TextIO | None = None,
    data_dir: str | os.PathLike[str] | None = None,
) -> DemoResult:
    """Start a sandbox, sign in, read, fix, push, check; print a short report to `out`.

    **Parameters:**

    * **rows** - accounts to seed (other tables scale with it).
    * **latency_ms** - delay the sandbox adds to every Web API request.
    * **out** - where the report goes (default: stdout).
    * **data_dir** - where the sandbox's CA and keys go (default: a temporary folder,
      removed afterwards).
    """
    from . import _accessor  # noqa: F401  (registers df.d365, as `import d365nb` does)
    from ._report import PushReport
    from .sandbox import connect, start

    out = sys.stdout if out is None else out
    result = DemoResult()
    began = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="d365nb-demo-") as tmp:
        folder = Path(data_dir) if data_dir is not None else Path(tmp)
        _line(out, f"d365nb demo: starting a local sandbox with {rows:,} accounts ...")
        with start(
            data_dir=folder,
            database=":memory:",
            rows=rows,
            auto_approve=True,
            latency_ms=latency_ms,
        ) as sb:
            _line(out, f"  sandbox: {sb.service_url} (Entra ID + Dataverse Web API, HTTPS)")
            with connect(sb, grant="device_code") as conn:
                _line(out, "1. Sign in (device code; the sandbox approves it for you)")
                conn.prompt = lambda code: _line(out, f"   {getattr(code, 'message', code)}")
                conn.sign_in()
                who = conn.whoami()
                result.signed_in_as = who.name or who.user_id
                result.business_unit = who.business_unit or who.business_unit_id
                _line(out, f"   signed in as {result.signed_in_as} ({result.business_unit})")

                _line(out, "2. Read accounts as a typed DataFrame")
                columns = [
                    "accountid",
                    "name",
                    "emailaddress1",
                    "websiteurl",
                    "revenue",
                    "numberofemployees",
                    "industrycode",
                    "createdon",
                ]
                accounts = conn.read("accounts", select=columns, progress=False)
                result.accounts, result.columns = accounts.shape
                shown = ("revenue", "numberofemployees", "industrycode", "createdon")
                result.typed_columns = {c: str(accounts[c].dtype) for c in shown}
                _line(out, f"   {result.accounts:,} rows x {result.columns} columns")
                for name, dtype in result.typed_columns.items():
                    _line(out, f"     {name:<18} {dtype}")

                _line(out, "3. Find a data-quality problem: accounts without an email")
                fixed = fill_missing_emails(accounts)
                result.missing_email = len(fixed)
                _line(out, f"   {result.missing_email:,} accounts have no email address")
                if result.missing_email:
                    first = fixed.iloc[0]
                    _line(out, f"   e.g. fill in {first['emailaddress1']}")

                _line(out, "4. Push the fix back: dry run first, then for real")
                plan = fixed.d365.push(
                    "accounts", mode="update", conn=conn, dry_run=True, progress=False
                )
                result.plan = dict(plan.counts)
                _line(out, f"   dry run: {_counts(result.plan)} (nothing sent)")
                report = fixed.d365.push("accounts", mode="update", conn=conn, progress=False)
                assert isinstance(report, PushReport)
                result.pushed = {k: v for k, v in report.counts.items() if v}
                took = f"{report.elapsed * 1000:.0f} ms"
                _line(out, f"   pushed:  {_counts(result.pushed)} in {took}")

                _line(out, "5. Read again to check")
                again = conn.read("accounts", select=["accountid", "emailaddress1"], progress=False)
                result.missing_after = int(again["emailaddress1"].isna().sum())
                _line(out, f"   accounts without an email now: {result.missing_after}")

                _line(out, "6. Pipeline by status (opportunities, estimated value)")
                opps = conn.read(
                    "opportunities", select=["estimatedvalue", "statuscode"], progress=False
                )
                pipeline = (
                    opps.groupby("statuscode", observed=True)["estimatedvalue"]
                    .sum()
                    .sort_values(ascending=False)
                )
                result.pipeline = {str(k): float(v) for k, v in pipeline.items()}
                width = max((len(k) for k in result.pipeline), default=0)
                for status, value in result.pipeline.items():
                    _line(out, f"     {status:<{width}}  {value:>16,.2f}")
    result.seconds = time.perf_counter() - began
    verdict = "OK" if result.ok else "PROBLEM"
    _line(
        out,
        f"d365nb demo {verdict}: read {result.accounts:,} accounts, fixed "
        f"{result.pushed.get('updated', 0):,} of {result.missing_email:,} missing emails, "
        f"{result.pushed.get('failed', 0)} failed ({result.seconds:.1f} s).",
    )
    _line(out, "Next: open notebooks/00_start_here.ipynb, or `d365nb --help`.")
    return result


def _counts(counts: Mapping[str, int]) -> str:
    parts = [f"{n:,} {re.sub('_', ' ', str(k))}" for k, n in counts.items() if n]
    return ", ".join(parts) or "no rows"
