"""Reads from F&O: dtypes from the CSDL, companies, paging, parallel key ranges, 429s."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

import d365nb
from d365nb._fno_client import FnoConnection
from d365nb.sandbox import Sandbox

from .conftest import ROWS, Knobs, fno_connect


def test_each_edm_and_enum_dtype(conn: FnoConnection) -> None:
    customers = conn.read("CustomersV3", progress=False)
    assert customers["dataAreaId"].dtype == "category"
    assert customers["CustomerAccount"].dtype == "string"
    assert customers["CreditLimit"].dtype == "float64"
    assert str(customers["ModifiedDateTime"].dtype) == "datetime64[us, UTC]"
    party = customers["PartyType"].dtype
    assert isinstance(party, pd.CategoricalDtype) and party.ordered
    assert list(party.categories) == ["Organization", "Person"]  # value order
    gender = customers["PersonGender"].dtype
    assert list(gender.categories) == ["Unknown", "Male", "Female"]
    currencies = conn.read("Currencies", progress=False)
    assert currencies["DecimalsCount_MX"].dtype == "Int32"
    assert "dataAreaId" not in currencies.columns  # a shared entity
    products = conn.read("ReleasedProductsV2", progress=False)
    assert str(products["SellStartDate"].dtype) == "datetime64[us, UTC]"
    exact = conn.read("ReleasedProductsV2", decimal=True, select=["SalesPrice"], progress=False)
    assert all(type(v).__name__ == "Decimal" for v in exact["SalesPrice"])


def test_empty_date_sentinel_is_nat(conn: FnoConnection) -> None:
    row = pd.DataFrame({"dataAreaId": ["usmf"], "ItemNumber": ["NO-DATE-1"]})
    report = conn.push(row, "ReleasedProductsV2", mode="create", progress=False)
    assert report.ok, report
    # The service fills the unset date with 1900-01-01T12:00:00Z, F&O's empty date.
    products = conn.read("ReleasedProductsV2", filter="ItemNumber eq 'NO-DATE-1'", progress=False)
    assert len(products) == 1 and pd.isna(products["SellStartDate"].iloc[0])


def test_company_and_cross_company(conn: FnoConnection) -> None:
    default = conn.read("CustomersV3", progress=False)
    assert set(default["dataAreaId"]) == {"usmf"}
    usrt = conn.read("CustomersV3", company="usrt", progress=False)
    assert set(usrt["dataAreaId"]) == {"usrt"} and len(usrt) > 0
    every = conn.read("CustomersV3", cross_company=True, progress=False)
    assert len(every) == ROWS
    # A dataAreaId filter alone would silently return nothing: d365nb adds cross-company.
    filtered = conn.read("CustomersV3", filter="dataAreaId eq 'demf'", progress=False)
    assert len(filtered) == (every["dataAreaId"] == "demf").sum() > 0
    with pytest.raises(d365nb.ConfigError) as err:
        conn.read("Currencies", company="usmf", progress=False)
    assert err.value.field == "company"


def test_enum_and_wildcard_filters(conn: FnoConnection) -> None:
    people = conn.read("CustomersV3", filter="PartyType eq 'Person'", progress=False)
    assert len(people) > 0 and set(people["PartyType"]) == {"Person"}
    built = conn.read("CustomersV3", filter=d365nb.where(PartyType="Person"), progress=False)
    pd.testing.assert_frame_equal(built, people)
    some = conn.read("CustomersV3", filter="contains(OrganizationName,'ware')", progress=False)
    assert len(some) > 0 and some["OrganizationName"].str.contains("ware", case=False).all()
    with pytest.raises(d365nb.ODataError) as err:
        conn.read("CustomersV3", filter="Nope eq 1", progress=False)
    assert err.value.status == 400


def test_paging_equals_a_one_page_read(conn: FnoConnection, knobs: Knobs) -> None:
    paged = conn.read("CustomersV3", cross_company=True, parallel=False, progress=False)
    small = conn.read(
        "CustomersV3", cross_company=True, parallel=False, page_size=7, progress=False
    )
    knobs(page_size=10_000)
    whole = conn.read("CustomersV3", cross_company=True, parallel=False, progress=False)
    assert len(whole) == ROWS
    pd.testing.assert_frame_equal(paged, whole)
    pd.testing.assert_frame_equal(small, whole)


def test_parallel_by_company_equals_sequential(fresh: FnoConnection) -> None:
    sequential = fresh.read("SalesOrderLines", cross_company=True, parallel=False, progress=False)
    parallel = fresh.read("SalesOrderLines", cross_company=True, progress=False)
    assert len(sequential) > 2 * 25
    pd.testing.assert_frame_equal(parallel, sequential)


def test_tables_describe_and_metadata_once(fno_sandbox: Sandbox, tmp_path: Path) -> None:
    first = fno_connect(fno_sandbox, metadata_cache=tmp_path)
    tables = first.tables()
    assert {"CustomersV3", "SalesOrderHeadersV2", "Currencies"} <= set(tables["entity_set"])
    described = first.describe("CustomersV3")
    keys = described.loc[described["key"], "column"].tolist()
    assert keys == ["dataAreaId", "CustomerAccount"]
    party = described.set_index("column").loc["PartyType"]
    assert party["type"] == "DirPartyBaseType" and party["choices"] == "Organization, Person"
    assert first.catalog.fetches == 1
    first.close()
    second = fno_connect(fno_sandbox, metadata_cache=tmp_path)
    second.describe("customersv3")  # any case; from the disk copy
    assert second.catalog.fetches == 0
    second.close()


def test_a_429_storm_is_waited_out(fresh: FnoConnection, knobs: Knobs) -> None:
    fresh.read("Currencies", progress=False)  # signed in, metadata loaded
    knobs(throttle_next=3, retry_after_seconds=1)
    currencies = fresh.read("Currencies", progress=False)
    assert len(currencies) > 0
    assert knobs()["throttle_next"] == 0  # all three 429s were met and waited out


def test_partial_read_resumes(fno_sandbox: Sandbox, knobs: Knobs) -> None:
    short = fno_connect(fno_sandbox, retry=d365nb.RetryPolicy(max_attempts=1, max_total_wait=1))
    try:
        short.read("Currencies", progress=False)
        knobs(throttle_next=50, retry_after_seconds=1)
        with pytest.raises(d365nb.PartialReadError) as err:
            short.read("CustomersV3", cross_company=True, parallel=False, progress=False)
        assert err.value.partial.attrs["d365nb"]["partial"] is True
        knobs(throttle_next=0)
        done = err.value.resume()
        assert len(done) == ROWS
    finally:
        short.close()
