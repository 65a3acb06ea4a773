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


def _parts(df: pd.DataFrame, by: list[str | tuple[str, str]]) -> tuple[pd.DataFrame, list[str]]:
    """`df` with a `createdon_year`-style column per date part, and the group names."""
    names: list[str] = []
    for item in by:
        if isinstance(item, tuple):
            column, part = item
            df = df.assign(**{f"{column}_{part}": getattr(df[column].dt, part).astype("Int64")})
            names.append(f"{column}_{part}")
        else:
            names.append(item)
    return df, names


@pytest.mark.parametrize(
    "by",
    [
        [("createdon", "year")],
        [("createdon", "year"), ("createdon", "month")],
        ["statuscode", ("createdon", "quarter")],
        [("createdon", "day")],
    ],
)
def test_date_parts_equal_pandas(conn: Connection, by: list[str | tuple[str, str]]) -> None:
    df, names = _parts(conn.read("opportunities", progress=False), by)
    named = _named("estimatedvalue") | {"n": ("opportunityid", "count")}
    got = conn.aggregate("opportunities", by=by, **named)
    assert list(got.index.names) == names
    _check(got, _expected(df, names if len(names) > 1 else names[0], named))


def test_date_parts_past_the_limit(conn: Connection, sandbox: Sandbox) -> None:
    by: list[str | tuple[str, str]] = [("createdon", "month"), "statecode"]
    df, names = _parts(conn.read("opportunities", progress=False), by)
    named = {k: v for k, v in _named("closeprobability").items() if v[1] != "nunique"}
    with sandbox.knobs(aggregate_record_limit=4):
        got = conn.aggregate("opportunities", by=by, **named)
        single = conn.aggregate("opportunities", by=("createdon", "year"), **named)
    _check(got, _expected(df, names, named))
    df, names = _parts(df, [("createdon", "year")])
    _check(single, _expected(df, names[0], named))


@pytest.mark.parametrize(
    ("by", "named"),
    [
        ("createdon", {"n": ("opportunityid", "count")}),
        (("statuscode", "year"), {"n": ("opportunityid", "count")}),
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


def test_groups_in_pandas_order_with_the_missing_group_last(conn: Connection) -> None:
    df = conn.read("accounts", select=["industrycode", "revenue"], progress=False)
    assert df["industrycode"].isna().any()
    named = {"total": ("revenue", "sum"), "n": ("accountid", "count")}
    got = conn.aggregate("accounts", by="industrycode", **named)
    want = df.groupby("industrycode", dropna=False, observed=True, sort=True).agg(**named)
    pd.testing.assert_frame_equal(got, want, check_dtype=False)


@pytest.mark.parametrize(
    "flt",
    [
        d365nb.where(statecode=0),
        d365nb.where(estimatedvalue__gt=1000, name__contains="a"),
        d365nb.where(statuscode__in=[1, 2]) + " or _parentaccountid_value eq null",
        "not (closeprobability ge 50) and createdon ne null",
        "lastxdays",
    ],
)
def test_date_parts_with_a_filter_equal_pandas(conn: Connection, flt: str) -> None:
    by: list[str | tuple[str, str]] = [("createdon", "month")]
    if flt == "lastxdays":  # half the days since the oldest row: some rows, not all
        first = conn.read("opportunities", select=["createdon"], progress=False)["createdon"]
        days = (pd.Timestamp.now(tz="UTC") - first.min()).days
        flt = d365nb.where(createdon__lastxdays=max(days // 2, 1))
    read = conn.read("opportunities", filter=flt, progress=False)
    assert len(read)  # the filter keeps some rows, not all
    assert len(read) < len(conn.read("opportunities", select=["name"], progress=False))
    df, names = _parts(read, by)
    named = _named("estimatedvalue") | {"n": ("opportunityid", "count")}
    got = conn.aggregate("opportunities", by=("createdon", "month"), filter=flt, **named)
    _check(got, _expected(df, names[0], named))


def test_date_parts_with_a_filter_past_the_limit(conn: Connection, sandbox: Sandbox) -> None:
    flt = d365nb.where(statecode=0)
    by: list[str | tuple[str, str]] = [("createdon", "month"), "statuscode"]
    df, names = _parts(conn.read("opportunities", filter=flt, progress=False), by)
    named = {k: v for k, v in _named("estimatedvalue").items() if v[1] != "nunique"}
    with sandbox.knobs(aggregate_record_limit=4):
        got = conn.aggregate("opportunities", by=by, filter=flt, **named)
    _check(got, _expected(df, names, named))


def test_a_filter_fetchxml_cannot_say_is_refused_before_any_request(conn: Connection) -> None:
    with pytest.raises(d365nb.ConfigError, match="FetchXML"):
        conn.aggregate(
            "opportunities",
            by=("createdon", "year"),
            filter="parentaccountid/name eq 'x'",
            n=("opportunityid", "count"),
        )
