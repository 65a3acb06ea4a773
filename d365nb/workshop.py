"""The workshop's exercises (`notebooks/04_workshop.ipynb`): checkers and hidden solutions.

Each `check_*` function takes a learner's answer and returns `Feedback`: right, or what is
off and a hint.  It never raises on a wrong or missing answer, so "Run All" runs through.
The solutions are text: `show_solution(n)` prints one (nothing is run), so a learner sees
it only when asking for it.

```python
from d365nb.workshop import check_data_quality, show_solution

check_data_quality({"no_email": 11, "duplicates": 12, "odd_phones": 9}, conn=conn)
show_solution(1)
```
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import pandas as pd

if TYPE_CHECKING:
    from ._client import Connection

__all__ = [
    "LEADS_CSV",
    "LEAD_SOURCES",
    "SOLUTIONS",
    "Feedback",
    "check_data_quality",
    "check_lead_import",
    "check_pipeline",
    "data_quality_counts",
    "pipeline_table",
    "show_solution",
    "write_leads_csv",
]

#: The trade-show export of exercise 2 (as the app wrote it: revenue "n/a" when unknown).
LEADS_CSV: Final = """First Name,Last Name,Company,Email,Topic,Annual Revenue,Source
Rosa,Parks,Montgomery Textiles,rosa@montgomery.example.com,Bulk order,2500000,Trade Show
Nikola,Tesla,Wardenclyffe Power,nikola@wardenclyffe.example.com,Turbines,n/a,Web
Marie,Curie,Radium Labs,marie@radium.example.com,Lab equipment,1200000,Webinar
Alan,Kay,Smalltalk Systems,alan@smalltalk.example.com,Training,800000,Partner
"""

#: The lead table's `leadsourcecode` labels (the sandbox's and Dataverse's defaults).
LEAD_SOURCES: Final = (
    "Advertisement",
    "Employee Referral",
    "External Referral",
    "Partner",
    "Public Relations",
    "Seminar",
    "Trade Show",
    "Web",
    "Word of Mouth",
    "Other",
)

_PHONE: Final = r"^\+1-\d{2,3}-555-\d{4}$"
_LEAD_COLUMNS: Final = {
    "First Name": "firstname",
    "Last Name": "lastname",
    "Company": "companyname",
    "Email": "emailaddress1",
    "Topic": "subject",
    "Annual Revenue": "revenue",
    "Source": "leadsourcecode",
}
_REVENUE: Final = {"Parks": 2_500_000.0, "Tesla": None, "Curie": 1_200_000.0, "Kay": 800_000.0}
_SOURCES: Final = {"Parks": "Trade Show", "Tesla": "Web", "Curie": None, "Kay": "Partner"}


@dataclass
class Feedback:
    """What a checker says: `ok`, and one line per finding (a hint where something is off)."""

    exercise: str
    ok: bool
    lines: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return self.ok

    def __str__(self) -> str:
        head = f"{self.exercise}: " + ("right!" if self.ok else "not yet.")
        return "\n".join([head, *(f"  - {line}" for line in self.lines)])

    def __repr__(self) -> str:
        return str(self)

    def _repr_html_(self) -> str:
        colour = (
            "var(--jp-success-color1, #2e7d32)" if self.ok else "var(--jp-warn-color0, #b26a00)"
        )
        mark = "&#10004; right!" if self.ok else "&#10008; not yet."
        items = "".join(f"<li>{html.escape(line)}</li>" for line in self.lines)
        return (
            f"<div class='d365nb-feedback'><b style='color:{colour}'>"
            f"{html.escape(self.exercise)}: {mark}</b><ul>{items}</ul></div>"
        )


# -- exercise 1: data-quality hunt -------------------------------------------------------


def data_quality_counts(accounts: pd.DataFrame) -> dict[str, int]:
    """The three counts of exercise 1 for `accounts` (`name`, `emailaddress1`, `telephone1`).

    **Parameters:**

    * **accounts** - the accounts as read.
    """
    key = accounts["name"].str.strip().str.casefold()
    phones = accounts["telephone1"].fillna("").str.match(_PHONE)
    return {
        "no_email": int(accounts["emailaddress1"].isna().sum()),
        "duplicates": int(key.duplicated(keep=False).sum()),
        "odd_phones": int((~phones.astype(bool)).sum()),
    }


def _count(value: Any) -> int | None:
    if isinstance(value, (pd.DataFrame, pd.Series, pd.Index, list, tuple, set)):
        return len(value)
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)) and not (isinstance(value, float) and math.isnan(value)):
        return int(value)
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _quality_answer(answer: Any) -> dict[str, int | None] | None:
    names = ("no_email", "duplicates", "odd_phones")
    if isinstance(answer, Mapping):
        return {n: _count(answer.get(n)) for n in names}
    if isinstance(answer, Sequence) and not isinstance(answer, str) and len(answer) == 3:
        return {n: _count(v) for n, v in zip(names, answer, strict=True)}
    return None


def check_data_quality(answer: Any, *, conn: Connection) -> Feedback:
    """Check exercise 1: how many accounts have no email, share a name, have an odd phone.

    **Parameters:**

    * **answer** - `{"no_email": n, "duplicates": n, "odd_phones": n}` (or the three in that
      order); each a number or the rows found (a DataFrame).
    * **conn** - a connection to the workshop's sandbox (the checker reads the accounts).
    """
    name = "Exercise 1 (data-quality hunt)"
    given = _quality_answer(answer)
    if given is None:
        return Feedback(
            name,
            False,
            [
                "No answer yet: set answer_1 = {'no_email': ..., 'duplicates': ..., "
                "'odd_phones': ...} (numbers, or the rows you found)."
            ],
        )
    accounts = conn.read("accounts", select=["name", "emailaddress1", "telephone1"], progress=False)
    right = data_quality_counts(accounts)
    lines: list[str] = []
    if given["no_email"] == right["no_email"]:
        lines.append(f"no_email: {right['no_email']} accounts without an email, right.")
    elif given["no_email"] == int((accounts["emailaddress1"] == "").sum()):
        lines.append(
            f"no_email: {given['no_email']} is off. A missing email is not an empty text: "
            "it is <NA>; count it with .isna()."
        )
    else:
        lines.append(
            f"no_email: {given['no_email']} is off. Hint: accounts['emailaddress1'].isna().sum()."
        )
    raw_dupes = int(accounts["name"].duplicated(keep=False).sum())
    key = accounts["name"].str.strip().str.casefold()
    first_only = int(key.duplicated().sum())
    if given["duplicates"] == right["duplicates"]:
        lines.append(f"duplicates: {right['duplicates']} rows share a name, right.")
    elif given["duplicates"] == raw_dupes:
        lines.append(
            f"duplicates: {given['duplicates']} is off: names were compared as they are. "
            "'Contoso' and 'CONTOSO ' are the same company: compare "
            "name.str.strip().str.casefold()."
        )
    elif given["duplicates"] == first_only:
        lines.append(
            f"duplicates: {given['duplicates']} is off: duplicated() marks only the second "
            "and later rows of a name. Count every row that shares one: duplicated(keep=False)."
        )
    else:
        lines.append(
            f"duplicates: {given['duplicates']} is off. Hint: build a key with "
            ".str.strip().str.casefold(), then key.duplicated(keep=False).sum()."
        )
    if given["odd_phones"] == right["odd_phones"]:
        lines.append(f"odd_phones: {right['odd_phones']} odd phone numbers, right.")
    elif given["odd_phones"] == len(accounts) - right["odd_phones"]:
        lines.append(
            f"odd_phones: {given['odd_phones']} is off: these are the numbers that look "
            "right. Negate the match with ~ to count the odd ones."
        )
    else:
        lines.append(
            f"odd_phones: {given['odd_phones']} is off. Hint: "
            f"~accounts['telephone1'].fillna('').str.match(r'{_PHONE}')."
        )
    return Feedback(name, all(given[k] == right[k] for k in right), lines)


# -- exercise 2: lead import -------------------------------------------------------------


def write_leads_csv(folder: str | Path) -> Path:
    """Write `LEADS_CSV` as `leads_to_import.csv` in `folder`; returns its path.

    **Parameters:**

    * **folder** - an existing folder.
    """
    path = Path(folder) / "leads_to_import.csv"
    path.write_text(LEADS_CSV, encoding="utf-8")
    return path


def check_lead_import(leads: Any, report: Any = None) -> Feedback:
    """Check exercise 2: the cleaned lead frame (and, once pushed, its report).

    **Parameters:**

    * **leads** - the DataFrame you pushed (or are about to push).
    * **report** - what `leads.d365.push(...)` returned, if you pushed.
    """
    name = "Exercise 2 (lead import)"
    if not isinstance(leads, pd.DataFrame):
        return Feedback(
            name,
            False,
            ["No answer yet: set leads to your cleaned DataFrame (and report to the push's)."],
        )
    lines: list[str] = []
    ok = True
    left = [c for c in _LEAD_COLUMNS if c in leads.columns]
    missing = [c for c in _LEAD_COLUMNS.values() if c not in leads.columns]
    if left or missing:
        ok = False
        pairs = ", ".join(f"'{c}' -> {_LEAD_COLUMNS[c]}" for c in left) or "none left"
        lines.append(
            f"Columns: {', '.join(missing) or 'all there'} missing; CSV names still there: "
            f"{pairs}. Rename with leads.rename(columns={{...}}) to the lead table's names "
            "(conn.describe('lead'))."
        )
        return Feedback(name, ok, lines)
    by_last = leads.set_index(leads["lastname"].astype(str))
    revenue = by_last["revenue"]
    if not pd.api.types.is_numeric_dtype(revenue):
        ok = False
        lines.append(
            "revenue is still text (e.g. 'n/a'): convert it with "
            "pd.to_numeric(leads['revenue'], errors='coerce'), which makes 'n/a' missing."
        )
    else:
        tesla = revenue.get("Tesla")
        if tesla is not None and not pd.isna(tesla):
            ok = False
            lines.append(
                f"Tesla's revenue is {tesla:,.0f}, but the file says 'n/a' (unknown). "
                "0 would claim no revenue: leave it missing (NaN)."
            )
        wrong = [
            last
            for last, value in _REVENUE.items()
            if value is not None and (pd.isna(revenue.get(last)) or revenue.get(last) != value)
        ]
        if wrong:
            ok = False
            lines.append(
                f"revenue of {', '.join(wrong)} differs from the file: convert the text, "
                "do not replace the numbers."
            )
        if ok:
            lines.append("revenue: numbers, and 'n/a' became missing, right.")
    sources = by_last["leadsourcecode"].astype("string")
    bad = sorted({str(s) for s in sources.dropna() if str(s) not in LEAD_SOURCES})
    if bad:
        ok = False
        lines.append(
            f"leadsourcecode has {', '.join(repr(b) for b in bad)}, not a lead source. Map it "
            "to one (e.g. 'Webinar' -> 'Seminar'); the push's message lists the options."
        )
    else:
        changed = [
            last
            for last, value in _SOURCES.items()
            if value is not None and sources.get(last) != value
        ]
        if changed:
            ok = False
            lines.append(
                f"leadsourcecode of {', '.join(changed)} changed: map only the unknown label."
            )
        else:
            lines.append("leadsourcecode: every label is a lead source, right.")
    if report is not None:
        created = getattr(report, "counts", {}).get("created", 0)
        if created == len(leads) == 4:
            lines.append("push: 4 leads created, right.")
        else:
            ok = False
            lines.append(
                f"push: {created} of {len(leads)} created. Look at report.rows for the "
                "failed rows' messages."
            )
    elif ok:
        lines.append("Now push it: report = leads.d365.push('leads', mode='create', conn=conn).")
    return Feedback(name, ok and report is not None, lines)


# -- exercise 3: pipeline report ---------------------------------------------------------


def pipeline_table(opps: pd.DataFrame) -> pd.DataFrame:
    """Exercise 3's table: weighted open pipeline per owner (rows) and close quarter
    (columns), from opportunities read with `estimatedvalue`, `closeprobability`,
    `estimatedclosedate`, `statecode` and `ownerid`.

    **Parameters:**

    * **opps** - the opportunities (open ones, or all: closed ones are left out here).
    """
    opps = opps[opps["statecode"].astype("string") == "Open"]
    weighted = opps["estimatedvalue"] * opps["closeprobability"].astype("Float64") / 100
    frame = pd.DataFrame(
        {
            "owner": opps["ownerid_name"],
            "quarter": opps["estimatedclosedate"].dt.to_period("Q").astype(str),
            "weighted": weighted.astype(float),
        }
    )
    return pd.pivot_table(
        frame, index="owner", columns="quarter", values="weighted", aggfunc="sum", fill_value=0
    )


def _total(frame: pd.DataFrame) -> float:
    return float(frame.apply(pd.to_numeric, errors="coerce").fillna(0).to_numpy().sum())


def check_pipeline(answer: Any, *, conn: Connection) -> Feedback:
    """Check exercise 3: the weighted open pipeline per owner and close quarter.

    **Parameters:**

    * **answer** - your table: owners as rows, quarters (``2025Q1``) as columns, weighted
      values in the cells.
    * **conn** - a connection to the workshop's sandbox (the checker reads the
      opportunities).
    """
    name = "Exercise 3 (pipeline report)"
    if not isinstance(answer, pd.DataFrame):
        return Feedback(
            name, False, ["No answer yet: set answer_3 to your table (owners x quarters)."]
        )
    opps = conn.read(
        "opportunities",
        select=["estimatedvalue", "closeprobability", "estimatedclosedate", "statecode", "ownerid"],
        progress=False,
    )
    right = pipeline_table(opps)
    expected = _total(right)
    got = _total(answer)
    lines: list[str] = []
    shape_ok = answer.shape == right.shape
    if not shape_ok:
        if answer.shape == right.shape[::-1]:
            lines.append("The table is transposed: owners as rows, quarters as columns.")
        else:
            lines.append(
                f"The table is {answer.shape[0]} x {answer.shape[1]}; expected "
                f"{right.shape[0]} owners x {right.shape[1]} quarters. Pivot with "
                "index=owner name, columns=quarter of estimatedclosedate."
            )
    close = math.isclose(got, expected, rel_tol=1e-3, abs_tol=len(right.columns) * len(right))
    if close:
        lines.append(f"Total weighted open pipeline {expected:,.0f}, right.")
    else:
        everything = opps.assign(statecode="Open")
        unweighted = float(
            opps[opps["statecode"].astype("string") == "Open"]["estimatedvalue"].sum()
        )
        if math.isclose(got, _total(pipeline_table(everything)), rel_tol=1e-3):
            hint = "it includes won and lost opportunities: keep statecode 'Open' only."
        elif math.isclose(got, expected * 100, rel_tol=1e-3):
            hint = "closeprobability is a percentage (0-100): divide by 100."
        elif math.isclose(got, unweighted, rel_tol=1e-3):
            hint = "these are plain values: weight each by its closeprobability / 100."
        else:
            hint = "weighted = estimatedvalue * closeprobability / 100, open ones only."
        lines.append(f"Total {got:,.0f} differs from {expected:,.0f}: {hint}")
    return Feedback(name, shape_ok and close, lines)


# -- solutions ---------------------------------------------------------------------------

#: The solutions, as text (shown by `show_solution`, never run by the notebook).
SOLUTIONS: Final = {
    1: """\
accounts = conn.read("accounts", select=["name", "emailaddress1", "telephone1"])

no_email = accounts[accounts["emailaddress1"].isna()]
key = accounts["name"].str.strip().str.casefold()
duplicates = accounts[key.duplicated(keep=False)].assign(key=key).sort_values("key")
odd_phones = accounts[~accounts["telephone1"].fillna("").str.match(r"^\\+1-\\d{2,3}-555-\\d{4}$")]

answer_1 = {"no_email": no_email, "duplicates": duplicates, "odd_phones": odd_phones}
duplicates.head(6)
""",
    2: """\
leads = raw.rename(columns={
    "First Name": "firstname", "Last Name": "lastname", "Company": "companyname",
    "Email": "emailaddress1", "Topic": "subject", "Annual Revenue": "revenue",
    "Source": "leadsourcecode",
})
try:
    leads.d365.push("leads", mode="create", conn=conn)
except d365nb.D365Error as problem:
    print(problem)       # says what is wrong and how to fix it; nothing was sent

leads["revenue"] = pd.to_numeric(leads["revenue"], errors="coerce")               # 'n/a' -> missing
leads["leadsourcecode"] = leads["leadsourcecode"].replace({"Webinar": "Seminar"})  # a known label
report = leads.d365.push("leads", mode="create", conn=conn)
report
""",
    3: """\
opps = conn.read("opportunities",
                 select=["estimatedvalue", "closeprobability", "estimatedclosedate", "ownerid"],
                 filter="statecode eq 0")
opps["weighted"] = opps["estimatedvalue"] * opps["closeprobability"].astype("Float64") / 100
opps["quarter"] = opps["estimatedclosedate"].dt.to_period("Q").astype(str)
answer_3 = pd.pivot_table(opps, index="ownerid_name", columns="quarter", values="weighted",
                          aggfunc="sum", fill_value=0).round(0)

recent = answer_3.iloc[:, -6:]
ax = (recent.T / 1e3).plot.bar(stacked=True, figsize=(10, 4.5))
ax.set(title="Weighted open pipeline by close quarter", ylabel="thousands", xlabel="")
ax.legend(title="owner", bbox_to_anchor=(1.0, 1.0))
answer_3
""",
}


def show_solution(exercise: int) -> None:
    """Print the solution of `exercise` (1, 2 or 3), to read or copy; nothing is run.

    **Parameters:**

    * **exercise** - the exercise's number.
    """
    text = SOLUTIONS.get(exercise)
    if text is None:
        print(f"There is no exercise {exercise}: pick 1, 2 or 3.")
        return
    print(f"# Solution of exercise {exercise} (copy it into a cell to run it)\n")
    print(text)
