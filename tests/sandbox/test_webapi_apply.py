"""`$apply` over HTTPS: groupby, aggregate, filter, and the AggregateQueryRecordLimit error."""

from __future__ import annotations

from typing import Any

import httpx
import pandas as pd
import pytest

from d365nb.sandbox import Sandbox

pytestmark = pytest.mark.sandbox

ANN = 'odata.include-annotations="*"'


def _all(api: httpx.Client, path: str, select: str) -> pd.DataFrame:
    rows: list[dict[str, Any]] = []
    url: str | None = f"{path}?$select={select}"
    while url:
        body = api.get(url).json()
        rows.extend(body["value"])
        url = body.get("@odata.nextLink")
    return pd.DataFrame(rows)


def test_groupby_choice_with_every_aggregate(api: httpx.Client) -> None:
    r = api.get(
        "opportunities",
        params={
            "$apply": "groupby((statuscode),aggregate(estimatedvalue with sum as total,"
            "estimatedvalue with average as mean,estimatedvalue with min as lo,"
            "estimatedvalue with max as hi,_parentaccountid_value with countdistinct as "
            "accounts,$count as n))"
        },
        headers={"Prefer": ANN},
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["@odata.context"].endswith(
        "$metadata#opportunities(statuscode,total,mean,lo,hi,accounts,n)"
    )
    got = pd.DataFrame(body["value"]).set_index("statuscode")
    assert all("@odata.etag" not in row for row in body["value"])
    assert all(
        "statuscode@OData.Community.Display.V1.FormattedValue" in row for row in body["value"]
    )
    df = _all(api, "opportunities", "estimatedvalue,statuscode,_parentaccountid_value")
    want = df.groupby("statuscode").agg(
        total=("estimatedvalue", "sum"),
        mean=("estimatedvalue", "mean"),
        lo=("estimatedvalue", "min"),
        hi=("estimatedvalue", "max"),
        accounts=("_parentaccountid_value", "nunique"),
        n=("opportunityid", "count"),
    )
    pd.testing.assert_frame_equal(
        got[list(want.columns)], want, check_dtype=False, check_names=False
    )


def test_aggregate_alone_and_filter_step(api: httpx.Client) -> None:
    r = api.get(
        "opportunities",
        params={
            "$apply": "filter(statecode eq 0)/"
            "aggregate($count as n,closeprobability with max as top)"
        },
    )
    assert r.status_code == 200, r.text
    (row,) = r.json()["value"]
    df = _all(api, "opportunities", "statecode,closeprobability")
    open_rows = df[df["statecode"] == 0]
    assert row == {"n": len(open_rows), "top": open_rows["closeprobability"].max()}


def test_groupby_lookup_without_aggregate_lists_distinct_values(api: httpx.Client) -> None:
    r = api.get("opportunities", params={"$apply": "groupby((_ownerid_value))"})
    assert r.status_code == 200, r.text
    df = _all(api, "opportunities", "_ownerid_value")
    assert sorted(row["_ownerid_value"] for row in r.json()["value"]) == sorted(
        df["_ownerid_value"].unique()
    )


@pytest.mark.parametrize(
    "text",
    [
        "groupby((createdon),aggregate($count as n))",
        "aggregate(name with sum as s)",
        "aggregate(nosuch with sum as s)",
        "groupby((statuscode),aggregate(estimatedvalue with median as m))",
        "compute(1 as x)",
    ],
)
def test_unsupported_apply_answers_400(api: httpx.Client, text: str) -> None:
    r = api.get("opportunities", params={"$apply": text})
    assert r.status_code == 400
    assert r.json()["error"]["message"]


def test_aggregate_record_limit(api: httpx.Client, sandbox: Sandbox) -> None:
    with sandbox.knobs(aggregate_record_limit=10):
        r = api.get("opportunities", params={"$apply": "aggregate($count as n)"})
        assert r.status_code == 400
        assert r.json()["error"] == {
            "code": "0x8004E023",
            "message": "AggregateQueryRecordLimit exceeded. Cannot perform this operation.",
        }
        ok = api.get(
            "opportunities",
            params={"$apply": "filter(closeprobability eq 37)/aggregate($count as n)"},
        )
        assert ok.status_code == 200 or ok.json()["error"]["code"] == "0x8004E023"
    r = api.get("opportunities", params={"$apply": "aggregate($count as n)"})
    assert r.status_code == 200


def _fetch(api: httpx.Client, xml: str, **headers: str) -> httpx.Response:
    return api.get("opportunities", params={"fetchXml": xml}, headers=headers)


def test_fetchxml_aggregate_groupby_choice_and_date_parts(api: httpx.Client) -> None:
    xml = (
        "<fetch aggregate='true'><entity name='opportunity'>"
        "<attribute name='estimatedvalue' alias='total' aggregate='sum'/>"
        "<attribute name='estimatedvalue' alias='mean' aggregate='avg'/>"
        "<attribute name='opportunityid' alias='n' aggregate='count'/>"
        "<attribute name='actualclosedate' alias='closed' aggregate='countcolumn'/>"
        "<attribute name='parentaccountid' alias='accounts' aggregate='countcolumn' "
        "distinct='true'/>"
        "<attribute name='statuscode' alias='status' groupby='true'/>"
        "<attribute name='createdon' alias='year' groupby='true' dategrouping='year'/>"
        "<attribute name='createdon' alias='month' groupby='true' dategrouping='month'/>"
        "<order alias='status'/></entity></fetch>"
    )
    r = _fetch(api, xml, Prefer=ANN)
    assert r.status_code == 200, r.text
    rows = r.json()["value"]
    assert all("status@OData.Community.Display.V1.FormattedValue" in row for row in rows)
    got = pd.DataFrame(rows).set_index(["status", "year", "month"]).sort_index()
    df = _all(
        api,
        "opportunities",
        "estimatedvalue,statuscode,createdon,actualclosedate,_parentaccountid_value",
    )
    when = pd.to_datetime(df["createdon"], utc=True)
    want = (
        df.assign(
            status=df["statuscode"],
            year=when.dt.year.astype("int64"),
            month=when.dt.month.astype("int64"),
        )
        .groupby(["status", "year", "month"])
        .agg(
            total=("estimatedvalue", "sum"),
            mean=("estimatedvalue", "mean"),
            n=("opportunityid", "size"),
            closed=("actualclosedate", "count"),
            accounts=("_parentaccountid_value", "nunique"),
        )
    )
    pd.testing.assert_frame_equal(
        got[list(want.columns)], want, check_dtype=False, check_names=False
    )


def test_fetchxml_aggregate_limits(api: httpx.Client, sandbox: Sandbox) -> None:
    xml = (
        "<fetch aggregate='true' aggregatelimit='{limit}'><entity name='opportunity'>"
        "<attribute name='opportunityid' alias='n' aggregate='count'/></entity></fetch>"
    )
    assert _fetch(api, xml.format(limit=100000)).json()["value"][0]["n"] > 5
    r = _fetch(api, xml.format(limit=5))
    assert r.status_code == 400
    assert r.json()["error"]["code"] == "0x8004E023"
    with sandbox.knobs(aggregate_record_limit=5):
        assert _fetch(api, xml.format(limit=100000)).status_code == 400
    missing_alias = xml.replace(" alias='n'", "")
    assert _fetch(api, missing_alias.format(limit=10)).status_code == 400
