"""What a push did (`PushReport`) or would do (`PushPlan`), row by row.

Every input row appears in `report.rows` exactly once, under its index label, with one of
the statuses below; nothing is silently dropped.

| status | meaning |
| --- | --- |
| `created` | the row was created (also: a retried create that had landed the first time) |
| `updated` | the row existed and was updated |
| `unchanged` | there was nothing to send for the row (no writable column) |
| `conflict` | the row changed (or was deleted) on the service since it was read: not written |
| `failed` | the service (or the network) refused the row: `code` and `message` say why |
| `deleted` | the row was deleted |

```python
report = df.d365.push()
report.counts            # {"created": 0, "updated": 998, ..., "failed": 2}
report.failed            # the failed rows, original columns, ready to fix and push again
report.rows              # status, code, message, id per index label
```
"""

from __future__ import annotations

import html
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import pandas as pd

from ._exceptions import PushError

__all__ = [
    "STATUSES",
    "UNKNOWN_CODES",
    "PushPlan",
    "PushReport",
    "RowStatus",
    "raise_for_push",
    "rows_frame",
    "unknown_code",
]

RowStatus = Literal["created", "updated", "unchanged", "conflict", "failed", "deleted"]

#: Every row status, in the order reports list them.
STATUSES: tuple[RowStatus, ...] = (
    "created",
    "updated",
    "unchanged",
    "deleted",
    "conflict",
    "failed",
)

#: Codes of failed rows whose outcome is not known (not sent, in flight when the push
#: stopped, answer lost): `report.remaining`; 5xx codes count too.
UNKNOWN_CODES = frozenset({"interrupted", "unsent", "network", "unanswered", "error"})


def unknown_code(code: str | None) -> bool:
    """True for a code of `UNKNOWN_CODES` or a 5xx status."""
    return code is not None and (code in UNKNOWN_CODES or code.startswith("5"))


_COLOURS = {
    "created": "#1a7f37",
    "updated": "#1a7f37",
    "deleted": "#1a7f37",
    "unchanged": "#57606a",
    "conflict": "#9a6700",
    "failed": "#cf222e",
}
_SHOWN = 10


def _plural(n: int, word: str) -> str:
    return f"{n:,} {word}{'' if n == 1 else 's'}"


def _cell(value: Any) -> str:
    if value is None or (isinstance(value, float) and value != value):
        return ""
    return html.escape(str(value))


@dataclass(frozen=True, repr=False, eq=False)
class PushReport:
    """The outcome of one push: a status per input row, counts and timing.

    **Attributes:**

    * **table** - the table's logical name; **mode** - the push's mode.
    * **rows** - a DataFrame indexed by the input frame's index labels, with columns
      `status`, `code` (the service's error code, e.g. `0x80060882`), `message` and `id`
      (the row's primary id: client-generated for creates).
    * **frame** - the rows as pushed: the input's columns, plus the primary id column
      filled with the client-generated ids of creates; `failed` and `conflicts` are
      slices of it, and it remembers its table and connection, so
      `report.failed.d365.push()` needs no arguments.
    * **elapsed** - seconds the push took; **requests** - HTTP requests sent.
    * **attempt** - the push attempt's id (generated ids derive from it; `remaining` and
      `failed` carry it, so pushing them again continues this attempt).

    An interrupted push (Ctrl-C, the Stop button) raises `PushError` whose `report` has
    every row: done (`created`, `updated`, ...), `failed` with code `unsent` (never sent)
    or `interrupted` (in flight: it may have landed); `report.remaining.d365.push()`
    pushes those, finding rows that had landed instead of writing them twice.
    """

    table: str
    mode: str
    rows: pd.DataFrame
    frame: pd.DataFrame
    elapsed: float = 0.0
    requests: int = 0
    attempt: str = ""

    @property
    def counts(self) -> dict[str, int]:
        """How many rows got each status (every status is listed, zeros included)."""
        found = self.rows["status"].value_counts()
        return {s: int(found.get(s, 0)) for s in STATUSES}

    @property
    def ok(self) -> bool:
        """True when no row failed or conflicted."""
        return not bool(self.rows["status"].isin(("failed", "conflict")).any())

    @property
    def rows_per_second(self) -> float:
        """Rows handled per second of elapsed time."""
        return len(self.rows) / self.elapsed if self.elapsed > 0 else float("nan")

    def _select(self, statuses: Sequence[str]) -> pd.DataFrame:
        mask = self.rows["status"].isin(statuses).to_numpy()
        selected: pd.DataFrame = self.frame.loc[mask].copy()
        return selected

    @property
    def failed(self) -> pd.DataFrame:
        """The rows that failed, with the pushed frame's columns, ready to fix and push again.

        Creates carry their client-generated primary id in the key column, so pushing these
        rows again cannot create duplicates.  `rows.loc[report.failed.index]` says why.
        """
        return self._select(("failed",))

    @property
    def remaining(self) -> pd.DataFrame:
        """The rows not known to be written: not sent, in flight when the push stopped, or
        whose answer never came (network, 5xx), ready to push again with
        `report.remaining.d365.push()`.

        They keep their generated ids and this push's attempt, so a row that had landed
        is found (`unchanged`, or `updated` "by an earlier attempt" for a row guarded by
        its ETag) instead of being created twice or reported as a conflict.  Rows the
        service refused are in `failed` (fix them first).
        """
        unknown = self.rows["code"].map(unknown_code, na_action="ignore").fillna(False)
        mask = (self.rows["status"] == "failed") & unknown.astype(bool)
        selected: pd.DataFrame = self.frame.loc[mask.to_numpy()].copy()
        info = selected.attrs.get("d365nb")
        if isinstance(info, Mapping):  # pushing these continues this attempt
            selected.attrs["d365nb"] = {**info, "resume": self.attempt or True}
        return selected

    @property
    def conflicts(self) -> pd.DataFrame:
        """The rows not written because they changed on the service since they were read.

        Read them again to see the other change, or push with `force=True` to overwrite.
        """
        return self._select(("conflict",))

    def _summary(self) -> str:
        counts = {k: v for k, v in self.counts.items() if v}
        parts = ", ".join(f"{n:,} {status}" for status, n in counts.items()) or "no rows"
        return (
            f"{self.mode} to {self.table}: {parts} "
            f"({_plural(len(self.rows), 'row')} in {self.elapsed:.2f} s, "
            f"{_plural(self.requests, 'request')})"
        )

    def __repr__(self) -> str:
        lines = [f"<PushReport {self._summary()}>"]
        bad = self.rows[self.rows["status"].isin(("failed", "conflict"))]
        for label, row in bad.head(_SHOWN).iterrows():
            code = f" {row['code']}" if isinstance(row["code"], str) and row["code"] else ""
            lines.append(f"  row {label!r}: {row['status']}{code}: {row['message']}")
        if len(bad) > _SHOWN:
            lines.append(f"  ... and {len(bad) - _SHOWN:,} more (see report.rows)")
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        counts = self.counts
        badges = " ".join(
            f"<span style='color:{_COLOURS[s]}'><b>{n:,}</b> {s}</span>"
            for s, n in counts.items()
            if n
        )
        head = (
            f"<b>d365nb push</b> ({html.escape(self.mode)} to "
            f"<code>{html.escape(self.table)}</code>): {badges or 'no rows'}"
            f" &middot; {self.elapsed:.2f} s &middot; {_plural(self.requests, 'request')}"
        )
        bad = self.rows[self.rows["status"].isin(("failed", "conflict"))]
        table = ""
        if len(bad):
            body = "".join(
                f"<tr><td>{_cell(label)}</td><td style='color:{_COLOURS[str(r['status'])]}'>"
                f"{_cell(r['status'])}</td><td><code>{_cell(r['code'])}</code></td>"
                f"<td>{_cell(r['message'])}</td></tr>"
                for label, r in bad.head(_SHOWN).iterrows()
            )
            more = (
                f"<tr><td colspan=4>... and {len(bad) - _SHOWN:,} more "
                "(<code>report.rows</code>)</td></tr>"
                if len(bad) > _SHOWN
                else ""
            )
            table = (
                "<table><thead><tr><th>row</th><th>status</th><th>code</th>"
                f"<th>message</th></tr></thead><tbody>{body}{more}</tbody></table>"
                "<div><code>report.failed</code> holds the failed rows, ready to fix and "
                "push again.</div>"
            )
        return f"<div class='d365nb-push-report'>{head}{table}</div>"


@dataclass(frozen=True, repr=False, eq=False)
class PushPlan:
    """What a push would do (`dry_run=True`); nothing was written.

    **Attributes:**

    * **table**, **entity_set**, **mode**, **key** - where and how rows would go.
    * **rows** - a DataFrame indexed by the input's index labels with columns `operation`
      (`create`, `update`, `upsert`, `delete` or `unchanged`), `id` and `condition`
      (`If-Match: W/"..."`, `If-Match: *`, `If-None-Match: *` or empty).
    * **columns** - the columns that would be sent; **skipped** - the others, with why.
    * **requests** - the requests it would send, e.g. `["CreateMultiple x 3 (<= 5,000 rows each)"]`.
    * **sample** - the method, URL and JSON body of the first row's request.
    * **changed** - for a round trip (a frame read, changed, pushed back without
      `columns=`): each column that changed since the read and in how many rows; only
      those cells are sent.  **compared** - rows compared with the read.
    """

    table: str
    entity_set: str
    mode: str
    key: tuple[str, ...]
    rows: pd.DataFrame
    columns: tuple[str, ...]
    skipped: Mapping[str, str]
    requests: tuple[str, ...]
    sample: Mapping[str, Any] | None
    changed: Mapping[str, int] = field(default_factory=dict)
    compared: int = 0

    @property
    def counts(self) -> dict[str, int]:
        """How many rows each operation would touch."""
        return {str(k): int(v) for k, v in self.rows["operation"].value_counts().items()}

    def _summary(self) -> str:
        parts = ", ".join(f"{n:,} {op}" for op, n in self.counts.items()) or "no rows"
        return f"{self.mode} to {self.table} by {', '.join(self.key)}: {parts}"

    def __repr__(self) -> str:
        lines = [f"<PushPlan (dry run, nothing sent) {self._summary()}>"]
        lines += [f"  would send {r}" for r in self.requests]
        if self.columns:
            lines.append(f"  columns: {', '.join(self.columns)}")
        if self.compared:
            lines.append(f"  changed since the read: {self._changes()}")
        if self.skipped:
            lines.append(f"  not sent: {', '.join(f'{k} ({v})' for k, v in self.skipped.items())}")
        if self.sample is not None:
            body = json.dumps(self.sample.get("body"), default=str, ensure_ascii=False)
            lines.append(f"  sample: {self.sample['method']} {self.sample['url']} {body}")
        return "\n".join(lines)

    def _changes(self) -> str:
        found = ", ".join(f"{c} ({_plural(n, 'row')})" for c, n in self.changed.items())
        return (found or "nothing") + " (only these cells are sent)"

    def _repr_html_(self) -> str:
        requests = "".join(f"<li>{html.escape(r)}</li>" for r in self.requests)
        skipped = ", ".join(
            f"<code>{html.escape(k)}</code> ({html.escape(v)})" for k, v in self.skipped.items()
        )
        sample = ""
        if self.sample is not None:
            body = json.dumps(self.sample.get("body"), default=str, ensure_ascii=False, indent=1)
            sample = (
                f"<div>sample request: <code>{html.escape(str(self.sample['method']))} "
                f"{html.escape(str(self.sample['url']))}</code>"
                f"<pre>{html.escape(body)}</pre></div>"
            )
        cols = ", ".join(f"<code>{html.escape(c)}</code>" for c in self.columns)
        return (
            "<div class='d365nb-push-plan'><b>d365nb push plan</b> (dry run, nothing sent): "
            f"{html.escape(self._summary())}<ul>{requests}</ul>"
            f"<div>columns sent: {cols or 'none'}</div>"
            + (
                f"<div>changed since the read: {html.escape(self._changes())}</div>"
                if self.compared
                else ""
            )
            + (f"<div>not sent: {skipped}</div>" if skipped else "")
            + f"{sample}</div>"
        )


def rows_frame(index: pd.Index, columns: Mapping[str, Sequence[Any]]) -> pd.DataFrame:
    """A per-row DataFrame on `index` (the input frame's index) with string columns."""
    out: pd.DataFrame = pd.DataFrame(
        {k: pd.array(list(v), dtype="string") for k, v in columns.items()}
    )
    out.index = index
    return out


def raise_for_push(report: PushReport, *, interrupted: bool = False, on_error: str) -> None:
    """Raise `PushError` (holding `report`) for a push that was interrupted (Ctrl-C, the
    Stop button) or, with `on_error="raise"`, that has failed or conflicting rows."""
    if interrupted:
        codes = report.rows["code"]
        done = int((~report.rows["status"].isin(("failed", "conflict"))).sum())
        raise PushError(
            f"The push to {report.table} was interrupted: {done:,} rows done, "
            f"{int((codes == 'interrupted').sum()):,} in flight (may have landed), "
            f"{int((codes == 'unsent').sum()):,} not sent.",
            report=report,
            hint="err.report says which rows landed; err.report.remaining.d365.push() pushes "
            "the rest (rows that had landed are found, not written twice).",
        )
    if on_error == "raise" and not report.ok:
        counts = report.counts
        raise PushError(
            f"{counts['failed']:,} rows failed and {counts['conflict']:,} conflicted of "
            f"{len(report.rows):,} pushed to {report.table}.",
            report=report,
            hint="The other rows were written; err.report.failed holds the failed rows "
            "to fix and push again.",
        )
