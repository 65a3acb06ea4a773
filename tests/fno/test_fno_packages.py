"""The package API through the client: an export/import round trip equal to the OData read."""

from __future__ import annotations

import pandas as pd

from d365nb._fno_client import FnoConnection


def test_export_equals_the_odata_read(conn: FnoConnection) -> None:
    package = conn.export_package("Export-SalesOrders", company="usrt", poll=0.05, progress=False)
    assert set(package) == {"SalesOrderHeadersV2", "SalesOrderLines"}
    for entity_set, exported in package.items():
        odata = conn.read(entity_set, company="usrt", progress=False).drop(columns="_etag")
        assert len(exported) > 0
        pd.testing.assert_frame_equal(exported, odata, check_categorical=False)


def test_import_round_trip(conn: FnoConnection) -> None:
    groups = conn.read("CustomerGroups", company="demf", progress=False)
    groups.loc[0, "Description"] = "Changed by import"
    added = groups.iloc[:1].assign(CustomerGroupId="PK1", Description="New by import")
    frame = pd.concat([groups, added], ignore_index=True)
    result = conn.import_package(
        "Import-CustomerGroups", {"CustomerGroups": frame}, company="demf", poll=0.05
    )
    assert result["status"] == "Succeeded" and result["errors"] == []
    after = conn.read("CustomerGroups", company="demf", progress=False)
    exported = conn.export_package("Export-CustomerGroups", company="demf", poll=0.05)
    pd.testing.assert_frame_equal(
        exported["CustomerGroups"], after.drop(columns="_etag"), check_categorical=False
    )
    by_id = after.set_index("CustomerGroupId")["Description"]
    assert by_id["PK1"] == "New by import" and by_id[groups.loc[0, "CustomerGroupId"]] == (
        "Changed by import"
    )


def test_import_reports_bad_rows(conn: FnoConnection) -> None:
    bad = pd.DataFrame(
        {
            "dataAreaId": ["demf"],
            "CustomerGroupId": ["PK9"],
            "Description": ["x"],
            "IsSalesTaxIncludedInPrice": ["Maybe"],
        }
    )
    result = conn.import_package(
        "Import-CustomerGroups", {"CustomerGroups": bad}, company="demf", poll=0.05, progress=False
    )
    assert result["status"] != "Succeeded" and "Maybe" in result["errors"][0]
