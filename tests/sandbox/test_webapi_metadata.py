"""Metadata over HTTPS: `$metadata` CSDL and `EntityDefinitions` enough to type every column."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import httpx
import pytest

pytestmark = pytest.mark.sandbox

EDM = "{http://docs.oasis-open.org/odata/ns/edm}"


def test_csdl_describes_tables_properties_and_navigation(api: httpx.Client) -> None:
    r = api.get("$metadata")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/xml")
    root = ET.fromstring(r.content)
    schema = root.find(f".//{EDM}Schema")
    assert schema is not None
    assert (schema.get("Namespace"), schema.get("Alias")) == ("Microsoft.Dynamics.CRM", "mscrm")
    account = schema.find(f"{EDM}EntityType[@Name='account']")
    assert account is not None
    props = {p.get("Name"): p.get("Type") for p in account.findall(f"{EDM}Property")}
    assert props["accountid"] == "Edm.Guid"
    assert props["revenue"] == "Edm.Decimal"
    assert props["cr_foundedon"] == "Edm.Date"
    assert props["createdon"] == "Edm.DateTimeOffset"
    assert props["_parentaccountid_value"] == "Edm.Guid"
    navs = {n.get("Name"): n.get("Type") for n in account.findall(f"{EDM}NavigationProperty")}
    assert navs["primarycontactid"] == "mscrm.contact"
    assert navs["contact_customer_accounts"] == "Collection(mscrm.contact)"
    sets = {s.get("Name") for s in schema.iter(f"{EDM}EntitySet")}
    assert "accounts" in sets
    annotated = ET.fromstring(api.get("$metadata?annotations=true").content)
    terms = {a.get("Term") for a in annotated.iter(f"{EDM}Annotation")}
    assert "Org.OData.Capabilities.V1.ChangeTracking" in terms


def test_entity_definitions_filtered_like_the_python_sdk(api: httpx.Client) -> None:
    r = api.get(
        "EntityDefinitions?$select=LogicalName,EntitySetName,PrimaryIdAttribute"
        "&$filter=LogicalName eq 'account'"
    )
    body = r.json()
    assert len(body["value"]) == 1
    item = body["value"][0]
    assert item["EntitySetName"] == "accounts" and item["PrimaryIdAttribute"] == "accountid"
    assert set(item) == {"MetadataId", "LogicalName", "EntitySetName", "PrimaryIdAttribute"}


def test_entity_definition_by_logical_name_and_metadata_id(api: httpx.Client) -> None:
    body = api.get("EntityDefinitions(LogicalName='contact')").json()
    assert body["@odata.context"].endswith("$metadata#EntityDefinitions/$entity")
    assert body["PrimaryNameAttribute"] == "fullname"
    assert body["ChangeTrackingEnabled"] is True
    again = api.get(f"EntityDefinitions({body['MetadataId']})?$select=LogicalName").json()
    assert again["LogicalName"] == "contact"
    assert api.get("EntityDefinitions(LogicalName='nope')").status_code == 404


def test_attributes_type_every_column(api: httpx.Client) -> None:
    attrs = api.get("EntityDefinitions(LogicalName='account')/Attributes").json()["value"]
    by_name = {a["LogicalName"]: a for a in attrs}
    name = by_name["name"]
    assert name["@odata.type"] == "#Microsoft.Dynamics.CRM.StringAttributeMetadata"
    assert (name["AttributeType"], name["AttributeTypeName"]["Value"]) == ("String", "StringType")
    assert name["MaxLength"] == 160 and name["IsPrimaryName"] is True
    assert by_name["revenue"]["AttributeType"] == "Money"
    founded = by_name["cr_foundedon"]
    assert founded["DateTimeBehavior"] == {"Value": "DateOnly"} and founded["Format"] == (
        "DateOnly"
    )
    assert by_name["createdon"]["DateTimeBehavior"] == {"Value": "UserLocal"}
    assert by_name["createdon"]["IsValidForCreate"] is False
    assert by_name["parentaccountid"]["Targets"] == ["account"]
    assert by_name["ownerid"]["AttributeType"] == "Owner"
    multi = by_name["cr_productinterests"]
    assert (multi["AttributeType"], multi["AttributeTypeName"]["Value"]) == (
        "Virtual",
        "MultiSelectPicklistType",
    )
    one = api.get(
        "EntityDefinitions(LogicalName='account')/Attributes(LogicalName="
        "'emailaddress1')?$select=LogicalName,MaxLength"
    ).json()
    assert one["MaxLength"] == 100


def test_option_sets_through_casts(api: httpx.Client) -> None:
    base = "EntityDefinitions(LogicalName='account')/Attributes"
    r = api.get(
        f"{base}/Microsoft.Dynamics.CRM.PicklistAttributeMetadata"
        "?$select=LogicalName&$expand=OptionSet($select=Options)"
    )
    items = {a["LogicalName"]: a for a in r.json()["value"]}
    assert "industrycode" in items and "name" not in items
    options = items["industrycode"]["OptionSet"]["Options"]
    assert options[0]["Value"] == 1
    assert options[0]["Label"]["UserLocalizedLabel"]["Label"] == "Accounting"
    state = api.get(
        f"{base}(LogicalName='statecode')/Microsoft.Dynamics.CRM."
        "StateAttributeMetadata?$expand=OptionSet"
    ).json()
    assert [o["Value"] for o in state["OptionSet"]["Options"]] == [0, 1]
    status = api.get(
        f"{base}/Microsoft.Dynamics.CRM.StatusAttributeMetadata?$expand=OptionSet"
    ).json()["value"][0]
    assert {o["Value"]: o["State"] for o in status["OptionSet"]["Options"]} == {1: 0, 2: 1}
    boolean = api.get(
        f"{base}(LogicalName='creditonhold')/Microsoft.Dynamics.CRM."
        "BooleanAttributeMetadata?$expand=OptionSet"
    ).json()
    assert boolean["OptionSet"]["TrueOption"]["Label"]["UserLocalizedLabel"]["Label"] == "Yes"
    multi = api.get(
        f"{base}/Microsoft.Dynamics.CRM.MultiSelectPicklistAttributeMetadata?$expand=OptionSet"
    ).json()["value"]
    assert [a["LogicalName"] for a in multi] == ["cr_productinterests"]
    r = api.get(f"{base}/Microsoft.Dynamics.CRM.EnumAttributeMetadata")
    assert r.status_code == 400


def test_keys_and_relationships(api: httpx.Client) -> None:
    keys = api.get("EntityDefinitions(LogicalName='account')/Keys").json()["value"]
    assert [k["KeyAttributes"] for k in keys] == [["accountnumber"]]
    keys = api.get("EntityDefinitions(LogicalName='contact')/Keys").json()["value"]
    assert keys[0]["KeyAttributes"] == ["firstname", "emailaddress1"]
    rels = api.get(
        "RelationshipDefinitions?$filter=SchemaName eq 'contact_customer_accounts'"
    ).json()["value"]
    assert rels[0]["ReferencingEntityNavigationPropertyName"] == "parentcustomerid_account"
