"""The workshop's checkers (`d365nb.workshop`): a right and two wrong answers per exercise,
and the notebook's shape (no solution runs on "Run All")."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

import d365nb
from d365nb.sandbox import Sandbox, connect, start
from d365nb.workshop import (
    LEADS_CSV,
    SOLUTIONS,
    Feedback,
    check_data_quality,
    check_lead_import,
    check_pipeline,
    show_solution,
)

pytestmark = pytest.mark.sandbox

NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "04_workshop.ipynb"


@pytest.fixture(scope="module")
def workshop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Sandbox, Any]]:
    folder = tmp_path_factory.mktemp("workshop")
    with start(data_dir=folder, database=":memory:", rows=300) as sb:
        with connect(sb) as conn:
            yield sb, conn


def _solve(n: int, conn: Any, **names: Any) -> dict[str, Any]:
    """Run solution `n` as a learner who pasted it would; its variables."""
    import matplotlib

    matplotlib.use("Agg")
    namespace: dict[str, Any] = {"conn": conn, "pd": pd, "d365nb": d365nb, **names}
    exec(compile(SOLUTIONS[n], f"<solution {n}>", "exec"), namespace)
    import matplotlib.pyplot as plt

    plt.close("all")
    return namespace


def _raw() -> pd.DataFrame:
    return pd.read_csv(io.StringIO(LEADS_CSV), dtype=str, keep_default_na=False)


def _text(feedback: Feedback) -> str:
    return str(feedback) + feedback._repr_html_()


# -- exercise 1 ----------------------------------------------------------------------------


def test_data_quality_right(workshop: tuple[Sandbox, Any]) -> None:
    _, conn = workshop
    answer = _solve(1, conn)["answer_1"]
    feedback = check_data_quality(answer, conn=conn)
    assert feedback.ok, feedback
    assert "right!" in str(feedback)
    # The counts as plain numbers are right too.
    numbers = {k: len(v) for k, v in answer.items()}
    assert check_data_quality(numbers, conn=conn).ok


def test_data_quality_raw_names_and_first_only(workshop: tuple[Sandbox, Any]) -> None:
    _, conn = workshop
    right = {k: len(v) for k, v in _solve(1, conn)["answer_1"].items()}
    accounts = conn.read("accounts", select=["name"], progress=False)
    raw = int(accounts["name"].duplicated(keep=False).sum())
    assert raw != right["duplicates"]
    feedback = check_data_quality({**right, "duplicates": raw}, conn=conn)
    assert not feedback.ok
    assert "casefold" in _text(feedback) and "compared as they are" in str(feedback)
    first_only = int(accounts["name"].str.strip().str.casefold().duplicated().sum())
    feedback = check_data_quality((right["no_email"], first_only, right["odd_phones"]), conn=conn)
    assert not feedback.ok and "keep=False" in str(feedback)
    assert "no_email: " + str(right["no_email"]) in str(feedback)  # the right parts say so


def test_data_quality_good_phones_and_empty_email(workshop: tuple[Sandbox, Any]) -> None:
    _, conn = workshop
    right = {k: len(v) for k, v in _solve(1, conn)["answer_1"].items()}
    accounts = conn.read("accounts", select=["telephone1"], progress=False)
    good = int(accounts["telephone1"].str.match(r"^\+1-\d{2,3}-555-\d{4}$").sum())
    feedback = check_data_quality({**right, "no_email": 0, "odd_phones": good}, conn=conn)
    assert not feedback.ok
    text = str(feedback)
    assert "isna()" in text and "Negate the match with ~" in text


def test_no_answer_is_feedback_not_an_error(workshop: tuple[Sandbox, Any]) -> None:
    _, conn = workshop
    for feedback in (
        check_data_quality(None, conn=conn),
        check_lead_import(None),
        check_pipeline(None, conn=conn),
    ):
        assert not feedback.ok and "No answer yet" in str(feedback)


# -- exercise 2 ----------------------------------------------------------------------------


def test_lead_import_right(
    workshop: tuple[Sandbox, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    sb, conn = workshop
    try:
        names = _solve(2, conn, raw=_raw())
        printed = capsys.readouterr().out
        assert "nothing was sent" in printed and "Webinar" in printed  # the first refusal
        feedback = check_lead_import(names["leads"], names["report"])
        assert feedback.ok, feedback
        assert "4 leads created" in str(feedback)
        # The 'n/a' clean-up did something: the text became a missing number.
        assert _raw()["Annual Revenue"].tolist()[1] == "n/a"
        assert pd.isna(names["leads"]["revenue"].iloc[1])
    finally:
        sb.reset()


def test_lead_import_zero_for_na_and_text_left(workshop: tuple[Sandbox, Any]) -> None:
    names = {
        "First Name": "firstname",
        "Last Name": "lastname",
        "Company": "companyname",
        "Email": "emailaddress1",
        "Topic": "subject",
        "Annual Revenue": "revenue",
        "Source": "leadsourcecode",
    }
    leads = _raw().rename(columns=names)
    leads["leadsourcecode"] = leads["leadsourcecode"].replace({"Webinar": "Seminar"})
    text_left = check_lead_import(leads)
    assert not text_left.ok and "pd.to_numeric" in str(text_left)

    zero = leads.assign(revenue=pd.to_numeric(leads["revenue"].replace("n/a", "0")))
    feedback = check_lead_import(zero)
    assert not feedback.ok
    assert "Tesla" in str(feedback) and "missing (NaN)" in str(feedback)


def test_lead_import_unknown_label_and_columns_not_renamed() -> None:
    leads = _raw().rename(columns={"First Name": "firstname", "Last Name": "lastname"})
    feedback = check_lead_import(leads)
    assert not feedback.ok and "'Company' -> companyname" in str(feedback)

    leads = _raw().rename(
        columns={
            "First Name": "firstname",
            "Last Name": "lastname",
            "Company": "companyname",
            "Email": "emailaddress1",
            "Topic": "subject",
            "Annual Revenue": "revenue",
            "Source": "leadsourcecode",
        }
    )
    leads["revenue"] = pd.to_numeric(leads["revenue"], errors="coerce")
    feedback = check_lead_import(leads)
    assert not feedback.ok
    assert "'Webinar'" in str(feedback) and "Seminar" in str(feedback)
    assert "revenue: numbers" in str(feedback)  # what is right is said too


# -- exercise 3 ----------------------------------------------------------------------------


def test_pipeline_right(workshop: tuple[Sandbox, Any]) -> None:
    _, conn = workshop
    answer = _solve(3, conn)["answer_3"]
    feedback = check_pipeline(answer, conn=conn)
    assert feedback.ok, feedback


def test_pipeline_closed_included_and_percent_not_divided(workshop: tuple[Sandbox, Any]) -> None:
    _, conn = workshop
    opps = conn.read(
        "opportunities",
        select=["estimatedvalue", "closeprobability", "estimatedclosedate", "statecode", "ownerid"],
        progress=False,
    )
    opps["quarter"] = opps["estimatedclosedate"].dt.to_period("Q").astype(str)

    def table(frame: pd.DataFrame, divisor: float) -> pd.DataFrame:
        frame = frame.assign(
            weighted=frame["estimatedvalue"] * frame["closeprobability"].astype("Float64") / divisor
        )
        return pd.pivot_table(
            frame,
            index="ownerid_name",
            columns="quarter",
            values="weighted",
            aggfunc="sum",
            fill_value=0,
        )

    everything = check_pipeline(table(opps, 100), conn=conn)
    assert not everything.ok and "won and lost" in str(everything)

    is_open = opps["statecode"].astype("string") == "Open"
    percent = check_pipeline(table(opps[is_open], 1), conn=conn)
    assert not percent.ok and "divide by 100" in str(percent)


# -- the notebook --------------------------------------------------------------------------


def test_solutions_are_printed_never_run(capsys: pytest.CaptureFixture[str]) -> None:
    show_solution(2)
    out = capsys.readouterr().out
    assert "pd.to_numeric" in out and "copy it into a cell" in out
    nb = json.loads(NOTEBOOK.read_text())
    code = ["".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code"]
    lines = [line.strip() for cell in code for line in cell.splitlines()]
    reveals = [line for line in lines if "show_solution(" in line]
    assert [line[:18] for line in reveals] == [f"# show_solution({n})" for n in (1, 2, 3)]
    checks = [line for line in lines if line.startswith("check_")]
    assert checks == [
        "check_data_quality(answer_1, conn=conn)",
        "check_lead_import(leads, report)",
        "check_pipeline(answer_3, conn=conn)",
    ]
    # No solution code in the notebook itself (it would run on "Run All").
    assert not any(".d365.push(" in line.split("#")[0] for line in lines)
