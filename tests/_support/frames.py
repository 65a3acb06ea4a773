"""A synthetic account table with a column of every type, and rows as the Web API sends them.

Shared by `test_dtypes`, `test_frames` and `test_payloads`.
"""

from __future__ import annotations

from typing import Any

from d365nb._metadata import Attribute, Table

FV = "@OData.Community.Display.V1.FormattedValue"
NAV = "@Microsoft.Dynamics.CRM.associatednavigationproperty"
LLN = "@Microsoft.Dynamics.CRM.lookuplogicalname"

A = Attribute
ATTRIBUTES = [
    A("accountid", "Uniqueidentifier", "UniqueidentifierType", is_primary_id=True,
      is_valid_for_update=False),
    A("name", "String", "StringType", max_length=20, is_primary_name=True),
    A("description", "Memo", "MemoType", max_length=2000),
    A("numberofemployees", "Integer", "IntegerType"),
    A("versionnumber", "BigInt", "BigIntType", is_valid_for_create=False,
      is_valid_for_update=False),
    A("new_bignumber", "BigInt", "BigIntType"),
    A("revenue", "Money", "MoneyType", precision=2),
    A("exchangerate", "Decimal", "DecimalType", precision=4),
    A("address1_latitude", "Double", "DoubleType", precision=5),
    A("donotemail", "Boolean", "BooleanType", options={0: "Allow", 1: "Do Not Allow"}),
    A("createdon", "DateTime", "DateTimeType", date_time_behavior="UserLocal",
      is_valid_for_create=False, is_valid_for_update=False),
    A("new_meeting", "DateTime", "DateTimeType", date_time_behavior="TimeZoneIndependent"),
    A("new_founded", "DateTime", "DateTimeType", date_time_behavior="DateOnly", format="DateOnly"),
    A("industrycode", "Picklist", "PicklistType",
      options={1: "Accounting", 2: "Agriculture", 3: "Broadcasting"}),
    A("statecode", "State", "StateType", options={0: "Active", 1: "Inactive"},
      is_valid_for_create=False),
    A("statuscode", "Status", "StatusType", options={1: "Active", 2: "Inactive"}),
    A("new_tags", "Virtual", "MultiSelectPicklistType", options={1: "Red", 2: "Green", 3: "Blue"}),
    A("parentaccountid", "Lookup", "LookupType", targets=("account",),
      navigation={"account": "parentaccountid"}),
    A("ownerid", "Owner", "OwnerType", targets=("systemuser", "team"),
      navigation={"owner": "ownerid"}),
    A("customerid", "Customer", "CustomerType", targets=("account", "contact"),
      navigation={"account": "customerid_account", "contact": "customerid_contact"}),
    A("new_externalid", "Uniqueidentifier", "UniqueidentifierType"),
    A("owneridtype", "EntityName", "EntityNameType", attribute_of="ownerid",
      is_valid_for_create=False, is_valid_for_update=False),
]  # fmt: skip
TABLE = Table(
    "account",
    "accounts",
    "accountid",
    "name",
    "Account",
    attributes={a.logical_name: a for a in ATTRIBUTES},
)
TABLES = {
    "account": TABLE,
    "contact": Table("contact", "contacts", "contactid"),
    "systemuser": Table("systemuser", "systemusers", "systemuserid"),
    "team": Table("team", "teams", "teamid"),
}
ID1 = "00000000-0000-0000-0000-000000000001"
ID2 = "00000000-0000-0000-0000-000000000002"
PARENT = "70bf4d48-34cb-ed11-b596-0022481d68cd"
USER = "22cc22cc-dd33-ee44-ff55-66aa66aa66aa"
CONTACT = "49b0be2e-d01c-ed11-b83e-000d3a572421"


def lookup(name: str, value: str | None, table: str, label: str) -> dict[str, Any]:
    """A lookup as the service sends it with include-annotations="*" (§4)."""
    if value is None:
        return {f"_{name}_value": None}
    return {
        f"_{name}_value{FV}": label,
        f"_{name}_value{NAV}": name,
        f"_{name}_value{LLN}": table,
        f"_{name}_value": value,
    }


def full_row() -> dict[str, Any]:
    """One realistic row with every annotation, in the service's order."""
    return {
        "@odata.etag": 'W/"72201545"',
        "name": "Adventure Works",
        "description": "Bikes.",
        "numberofemployees@OData.Community.Display.V1.FormattedValue": "4,300",
        "numberofemployees": 4300,
        "versionnumber": 9007199254740993,  # 2**53 + 1: not exact as a float
        "new_bignumber": -5,
        f"revenue{FV}": "$20,000.00",
        "revenue": 20000.0,
        "exchangerate": 1.2345,
        "address1_latitude": 47.65539,
        f"donotemail{FV}": "Do Not Allow",
        "donotemail": True,
        f"createdon{FV}": "4/7/2023 2:59 PM",
        "createdon": "2023-04-07T21:59:01Z",
        "new_meeting": "2024-02-29T09:30:00Z",
        f"new_founded{FV}": "5/1/2024",
        "new_founded": "2024-05-01",
        f"industrycode{FV}": "Agriculture",
        "industrycode": 2,
        f"statecode{FV}": "Active",
        "statecode": 0,
        f"statuscode{FV}": "Active",
        "statuscode": 1,
        f"new_tags{FV}": "Red; Blue",
        "new_tags": "1,3",
        **lookup("parentaccountid", PARENT, "account", "Fabrikam"),
        **lookup("ownerid", USER, "systemuser", "Sam Owner"),
        **lookup("customerid", CONTACT, "contact", "Yvonne McKay"),
        "new_externalid": "a0dbf27c-8efb-e511-80d2-00155db07c77",
        "accountid": ID1,
    }


def null_row() -> dict[str, Any]:
    """Every property null: annotations are then absent, the properties are not."""
    row: dict[str, Any] = {"@odata.etag": 'W/"2"'}
    for key in full_row():
        if "@" not in key:
            row[key] = None
    row["accountid"] = ID2
    return row
