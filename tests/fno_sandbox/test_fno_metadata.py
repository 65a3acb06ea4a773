"""The F&O environment describes itself: service document, `$metadata` CSDL, REST metadata."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import httpx

from d365nb.sandbox import Sandbox

from .conftest import fno_root

EDM = "{http://docs.oasis-open.org/odata/ns/edm}"
NS = "Microsoft.Dynamics.DataEntities"


def schema(fno: httpx.Client) -> ET.Element:
    response = fno.get("/data/$metadata")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/xml")
    root = ET.fromstring(response.content)
    (found,) = root.iter(f"{EDM}Schema")
    return found


def test_service_document_lists_the_entity_sets(fno: httpx.Client, fno_sandbox: Sandbox) -> None:
    body = fno.get("/data/").json()
    assert body["@odata.context"] == f"{fno_root(fno_sandbox)}/data/$metadata"
    names = {item["name"] for item in body["value"]}
    assert {"CustomersV3", "VendorsV2", "ReleasedProductsV2", "SalesOrderHeadersV2"} <= names
    assert {"SalesOrderLines", "CustomerGroups", "Currencies", "LegalEntities"} <= names


def test_metadata_carries_namespace_keys_and_enums(fno: httpx.Client) -> None:
    found = schema(fno)
    assert found.get("Namespace") == NS
    types = {t.get("Name"): t for t in found.iter(f"{EDM}EntityType")}
    keys = {
        name: [ref.get("Name") for ref in t.iter(f"{EDM}PropertyRef")] for name, t in types.items()
    }
    assert keys["CustomerV3"] == ["dataAreaId", "CustomerAccount"]
    assert keys["SalesOrderHeaderV2"] == ["dataAreaId", "SalesOrderNumber"]
    assert keys["Currency"] == ["CurrencyCode"]  # shared: no dataAreaId
    assert keys["LegalEntity"] == ["LegalEntityId"]
    props = {p.get("Name"): p.get("Type") for p in types["CustomerV3"].iter(f"{EDM}Property")}
    assert props["PartyType"] == f"{NS}.DirPartyBaseType"
    assert props["CreditLimitIsMandatory"] == f"{NS}.NoYes"
    assert props["CreditLimit"] == "Edm.Decimal"
    assert props["ModifiedDateTime"] == "Edm.DateTimeOffset"
    enums = {
        e.get("Name"): [(m.get("Name"), m.get("Value")) for m in e.iter(f"{EDM}Member")]
        for e in found.iter(f"{EDM}EnumType")
    }
    assert enums["NoYes"] == [("No", "0"), ("Yes", "1")]
    assert ("Invoiced", "3") in enums["SalesStatus"]
    sets = {s.get("Name"): s.get("EntityType") for s in found.iter(f"{EDM}EntitySet")}
    assert sets["CustomersV3"] == f"{NS}.CustomerV3"
    actions = {a.get("Name") for a in found.iter(f"{EDM}Action")}
    assert {"ExportToPackage", "ImportFromPackage", "GetExecutionSummaryStatus"} <= actions


def test_entity_set_names_are_case_sensitive(fno: httpx.Client) -> None:
    assert fno.get("/data/CustomersV3", params={"$top": "1"}).status_code == 200
    response = fno.get("/data/customersv3")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == ""


def test_public_entities_and_enumerations(fno: httpx.Client) -> None:
    one = fno.get("/metadata/PublicEntities('CustomerV3')").json()
    assert one["EntitySetName"] == "CustomersV3"
    by_name = {p["Name"]: p for p in one["Properties"]}
    assert by_name["dataAreaId"]["IsKey"] and by_name["CustomerAccount"]["IsKey"]
    assert by_name["CustomerGroupId"]["IsMandatory"]
    products = fno.get("/metadata/PublicEntities('ReleasedProductV2')").json()
    types = {p["Name"]: p["DataType"] for p in products["Properties"]}
    assert (types["SellStartDate"], types["ModifiedDateTime"]) == ("Date", "DateTime")
    assert types["NetProductWeight"] == "Real"
    found = fno.get(
        "/metadata/PublicEntities",
        params={"$filter": "tolower(EntitySetName) eq 'vendorsv2'", "$select": "Name"},
    ).json()["value"]
    assert found == [{"Name": "VendorV2"}]
    enums = fno.get("/metadata/PublicEnumerations", params={"$filter": "Name eq 'NoYes'"}).json()
    (noyes,) = enums["value"]
    assert [(m["Name"], m["Value"]) for m in noyes["Members"]] == [("No", 0), ("Yes", 1)]
    label_id = noyes["Members"][1]["LabelId"]
    label = fno.get(f"/metadata/Labels(Id='{label_id}',Language='en-us')").json()
    assert label["Value"] == "Yes"
    assert fno.get("/metadata/PublicEntities('Nope')").status_code == 404
