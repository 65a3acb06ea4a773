"""`conn.aggregate()` against the sandbox equals pandas on a full `conn.read()` of the rows."""

from __future__ import annotations

import warnings

import pandas as pd
import pytest

import d365nb
from d365nb import Connection
from d365nb.sandbox import Sandbox

pytestmark = pytest.mark.sandbox

FUNCS = ("sum", "mean", "min", "max", "count", "nunique")


def _named(column: str) -> dict[str, tuple[str, str]]:
    return {f"{column}_{f}": (column, f) for f in FUNCS}


def _expected(
    df: pd.DataFrame, by: str | list[str] | None, named: dict[str, tuple[str, str]]
) -> pd.DataFrame:
    if by is None:
        return pd.DataFrame({n: [df[c].agg(f)] for n, (c, f) in named.items()})
    want = df.groupby(by, dropna=False, observed=True, sort=True).agg(**named)
    return want.sort_index()


def _check(got: pd.DataFrame, want: pd.DataFrame) -> None:
    got = got.sort_index()
    assert list(got.index) == list(want.index)
    for name in want.columns:
        assert list(got[name].isna()) == list(want[name].isna()), name
        if want[name].dtype.kind in "iuf":
            pd.testing.assert_series_equal(
                got[name].astype("float64"), want[name].astype("float64"), check_names=False
            )
        else:
            assert list(got[name].dropna()) == list(want[name].dropna()), name


@pytest.mark.parametrize(
    "by", ["statuscode", "parentaccountid", ["statecode", "opportunityratingcode"]]
)
@pytest.mark.parametrize("column", ["estimatedvalue", "closeprobability"])
def test_every_function_equals_pandas(conn: Connection, by: str | list[str], column: str) -> None:
    df = conn.read("opportunities", progress=False)
    named = _named(column)
    got = conn.aggregate("opportunities", by=by, **named)
    _check(got, _expected(df, by, named))
    if by == "statuscode":
        assert isinstance(got.index.dtype, pd.CategoricalDtype)
        assert set(got.index) <= set(df["statuscode"].cat.categories)


def test_count_counts_values_and_ids_count_rows(conn: Connection) -> None:
    df = conn.read("opportunities", progress=False)
    named = {
        "rows": ("opportunityid", "count"),
        "closed": ("actualclosedate", "count"),
        "first": ("createdon", "min"),
        "last": ("createdon", "max"),
    }
    got = conn.aggregate("opportunities", by="statecode", **named)
    _check(got, _expected(df, "statecode", named))
    assert got["first"].dt.tz is not None


def test_no_by_and_a_filter(conn: Connection) -> None:
    flt = d365nb.where(statecode=0)
    df = conn.read("opportunities", filter=flt, progress=False)
    named = _named("estimatedvalue")
    got = conn.aggregate("opportunities", filter=flt, **named)
    assert len(got) == 1
    _check(got, _expected(df, None, named))


def test_past_the_aggregate_limit_ranges_combine_exactly(
    conn: Connection, sandbox: Sandbox
) -> None:
    df = conn.read("opportunities", progress=False)
    named = {k: v for k, v in _named("estimatedvalue").items() if v[1] != "nunique"}
    named["n"] = ("opportunityid", "count")
    assert len(df) > 4 * 4
    with sandbox.knobs(aggregate_record_limit=4):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            got = conn.aggregate("opportunities", by="statuscode", **named)
            total = conn.aggregate("opportunities", **named)
    _check(got, _expected(df, "statuscode", named))
    _check(total, _expected(df, None, named))


def test_nunique_past_the_limit_reads_the_column_and_warns(
    conn: Connection, sandbox: Sandbox
) -> None:
    df = conn.read("opportunities", progress=False)
    named = {"accounts": ("parentaccountid", "nunique"), "total": ("estimatedvalue", "sum")}
    with sandbox.knobs(aggregate_record_limit=4):
        with pytest.warns(d365nb.D365Warning, match="nunique"):
            got = conn.aggregate("opportunities", by="statuscode", **named)
    _check(got, _expected(df, "statuscode", named))


@pytest.mark.parametrize(
    ("by", "named"),
    [
        ("createdon", {"n": ("opportunityid", "count")}),
        ("statuscode", {}),
        ("statuscode", {"n": ("opportunityid", "median")}),
        ("statuscode", {"n": ("name", "sum")}),
        ("nosuch", {"n": ("opportunityid", "count")}),
    ],
)
def test_bad_requests_raise_config_error(
    conn: Connection, by: str, named: dict[str, tuple[str, str]]
) -> None:
    with pytest.raises(d365nb.ConfigError):
        conn.aggregate("opportunities", by=by, **named)
