"""The metadata model parsed from EntityDefinitions bodies shaped like the real service's."""

from __future__ import annotations

import inspect
from typing import Any

import pytest

import d365nb._metadata as metadata
from d365nb._exceptions import ConfigError
from d365nb._metadata import (
    TABLES_REQUEST,
    Attribute,
    Table,
    label_text,
    metadata_requests,
    parse_entity_definition,
    parse_entity_definitions,
    resolve_table,
)

API = "https://contoso.api.crm.dynamics.com/api/data/v9.2/"


def label(text: str | None, *, user: bool = True) -> dict[str, Any]:
    """A `Label` as the service sends it (dataverse-protocol.md §9)."""
    if text is None:
        return {"LocalizedLabels": [], "UserLocalizedLabel": None}
    loc = {
        "Label": text,
        "LanguageCode": 1033,
        "IsManaged": True,
        "MetadataId": "a0b1c2d3-0000-0000-0000-000000000001",
        "HasChanged": None,
    }
    return {"LocalizedLabels": [loc], "UserLocalizedLabel": loc if user else None}


def option(value: int, text: str) -> dict[str, Any]:
    return {
        "Value": value,
        "Color": None,
        "IsManaged": True,
        "ExternalValue": None,
        "ParentValues": [],
        "Tag": None,
        "IsHidden": False,
        "MetadataId": None,
        "HasChanged": None,
        "Label": label(text),
        "Description": label(""),
    }


def attr(name: str, type_: str, type_name: str, odata: str, **extra: Any) -> dict[str, Any]:
    item = {
        "@odata.type": f"#Microsoft.Dynamics.CRM.{odata}",
        "LogicalName": name,
        "SchemaName": name.title(),
        "AttributeType": type_,
        "AttributeTypeName": {"Value": type_name},
        "DisplayName": label(name.replace("_", " ").title()),
        "AttributeOf": None,
        "IsPrimaryId": False,
        "IsPrimaryName": False,
        "IsValidForCreate": True,
        "IsValidForUpdate": True,
        "IsValidForRead": True,
        "RequiredLevel": {
            "Value": "None",
            "CanBeChanged": True,
            "ManagedPropertyLogicalName": "canmodifyrequirementlevelsettings",
        },
        "MetadataId": f"00000000-0000-0000-0000-{abs(hash(name)) % 10**12:012d}",
    }
    item.update(extra)
    return item


def collection(context: str, items: list[dict[str, Any]]) -> dict[str, Any]:
    return {"@odata.context": API + "$metadata#" + context, "value": items}


ENTITY = {
    "@odata.context": API + "$metadata#EntityDefinitions(LogicalName,SchemaName,EntitySetName,"
    "PrimaryIdAttribute,PrimaryNameAttribute,DisplayName,ObjectTypeCode,IsActivity)/$entity",
    "LogicalName": "account",
    "SchemaName": "Account",
    "EntitySetName": "accounts",
    "PrimaryIdAttribute": "accountid",
    "PrimaryNameAttribute": "name",
    "DisplayName": label("Account"),
    "ObjectTypeCode": 1,
    "IsActivity": False,
    "MetadataId": "70816501-edb9-4740-a16c-6a5efbc05d84",
}

ATTRIBUTES = collection(
    "EntityDefinitions('70816501-edb9-4740-a16c-6a5efbc05d84')/Attributes(LogicalName,...)",
    [
        attr(
            "accountid",
            "Uniqueidentifier",
            "UniqueidentifierType",
            "UniqueidentifierAttributeMetadata",
            IsPrimaryId=True,
            IsValidForUpdate=False,
        ),
        attr(
            "name",
            "String",
            "StringType",
            "StringAttributeMetadata",
            IsPrimaryName=True,
            RequiredLevel={"Value": "ApplicationRequired", "CanBeChanged": True},
        ),
        attr("description", "Memo", "MemoType", "MemoAttributeMetadata"),
        attr("numberofemployees", "Integer", "IntegerType", "IntegerAttributeMetadata"),
        attr("revenue", "Money", "MoneyType", "MoneyAttributeMetadata"),
        attr("exchangerate", "Decimal", "DecimalType", "DecimalAttributeMetadata"),
        attr("industrycode", "Picklist", "PicklistType", "PicklistAttributeMetadata"),
        attr("new_region", "Picklist", "PicklistType", "PicklistAttributeMetadata"),
        attr("statecode", "State", "StateType", "StateAttributeMetadata", IsValidForCreate=False),
        attr("statuscode", "Status", "StatusType", "StatusAttributeMetadata"),
        attr("donotemail", "Boolean", "BooleanType", "BooleanAttributeMetadata"),
        attr(
            "createdon",
            "DateTime",
            "DateTimeType",
            "DateTimeAttributeMetadata",
            IsValidForCreate=False,
            IsValidForUpdate=False,
        ),
        attr("new_founded", "DateTime", "DateTimeType", "DateTimeAttributeMetadata"),
        attr("lastusedincampaign", "DateTime", "DateTimeType", "DateTimeAttributeMetadata"),
        attr("parentaccountid", "Lookup", "LookupType", "LookupAttributeMetadata"),
        attr(
            "parentaccountidname",
            "String",
            "StringType",
            "StringAttributeMetadata",
            AttributeOf="parentaccountid",
            IsValidForCreate=False,
            IsValidForUpdate=False,
            IsValidForRead=False,
        ),
        attr("ownerid", "Owner", "OwnerType", "LookupAttributeMetadata"),
        attr("new_customer", "Customer", "CustomerType", "LookupAttributeMetadata"),
        attr(
            "new_tags", "Virtual", "MultiSelectPicklistType", "MultiSelectPicklistAttributeMetadata"
        ),
        attr("versionnumber", "BigInt", "BigIntType", "BigIntAttributeMetadata"),
    ],
)

STRINGS = collection(
    "...",
    [
        {
            "@odata.type": "#Microsoft.Dynamics.CRM.StringAttributeMetadata",
            "LogicalName": "name",
            "MaxLength": 160,
            "Format": "Text",
            "MetadataId": "x",
        },
        {"LogicalName": "parentaccountidname", "MaxLength": 100, "Format": "Text"},
    ],
)
MEMOS = collection("...", [{"LogicalName": "description", "MaxLength": 2000, "Format": "TextArea"}])
DATETIMES = collection(
    "...",
    [
        {
            "LogicalName": "createdon",
            "DateTimeBehavior": {"Value": "UserLocal"},
            "Format": "DateAndTime",
        },
        {
            "LogicalName": "new_founded",
            "DateTimeBehavior": {"Value": "DateOnly"},
            "Format": "DateOnly",
        },
        # A UserLocal column *shown* as a date is still a DateTimeOffset on the wire.
        {
            "LogicalName": "lastusedincampaign",
            "DateTimeBehavior": {"Value": "UserLocal"},
            "Format": "DateOnly",
        },
    ],
)
LOOKUPS = collection(
    "...",
    [
        {"LogicalName": "parentaccountid", "Targets": ["account"]},
        {"LogicalName": "ownerid", "Targets": ["systemuser", "team"]},
        {"LogicalName": "new_customer", "Targets": ["account", "contact"]},
    ],
)
MONEY = collection("...", [{"LogicalName": "revenue", "Precision": 2}])
DECIMALS = collection("...", [{"LogicalName": "exchangerate", "Precision": 10}])
PICKLISTS = collection(
    "...",
    [
        {
            "LogicalName": "industrycode",
            "MetadataId": "m1",
            "OptionSet@odata.context": "...",
            "OptionSet": {
                "MetadataId": "o1",
                "Options": [
                    option(1, "Accounting"),
                    option(2, "Agriculture"),
                    option(3, "Broadcasting"),
                ],
            },
            "GlobalOptionSet": None,
        },
        {
            # A column bound to a global choice: OptionSet null, GlobalOptionSet filled.
            "LogicalName": "new_region",
            "OptionSet": None,
            "GlobalOptionSet": {
                "Options": [option(100000000, "North"), option(100000001, "South")]
            },
        },
    ],
)
MULTISELECT = collection(
    "...",
    [
        {
            "LogicalName": "new_tags",
            "OptionSet": {"Options": [option(1, "Red"), option(2, "Green"), option(3, "Blue")]},
            "GlobalOptionSet": None,
        }
    ],
)
STATE = collection(
    "...",
    [
        {
            "LogicalName": "statecode",
            "OptionSet": {
                "Options": [
                    dict(option(0, "Active"), DefaultStatus=1, InvariantName="Active"),
                    dict(option(1, "Inactive"), DefaultStatus=2, InvariantName="Inactive"),
                ]
            },
        }
    ],
)
STATUS = collection(
    "...",
    [
        {
            "LogicalName": "statuscode",
            "OptionSet": {
                "Options": [
                    dict(option(1, "Active"), State=0),
                    dict(option(2, "Inactive"), State=1),
                ]
            },
        }
    ],
)
BOOLEANS = collection(
    "...",
    [
        {
            "LogicalName": "donotemail",
            "OptionSet": {
                "TrueOption": option(1, "Do Not Allow"),
                "FalseOption": option(0, "Allow"),
            },
            "GlobalOptionSet": None,
        }
    ],
)
KEYS = collection(
    "...",
    [
        {
            "LogicalName": "new_accountnumber_key",
            "SchemaName": "new_AccountNumber_Key",
            "KeyAttributes": ["accountnumber"],
            "DisplayName": label("Account number"),
            "EntityKeyIndexStatus": "Active",
        }
    ],
)
RELATIONSHIPS = collection(
    "...",
    [
        {
            "SchemaName": "account_parent_account",
            "ReferencingAttribute": "parentaccountid",
            "ReferencedEntity": "account",
            "ReferencedAttribute": "accountid",
            "ReferencingEntityNavigationPropertyName": "parentaccountid",
        },
        {
            "SchemaName": "owner_accounts",
            "ReferencingAttribute": "ownerid",
            "ReferencedEntity": "owner",
            "ReferencedAttribute": "ownerid",
            "ReferencingEntityNavigationPropertyName": "ownerid",
        },
        {
            "SchemaName": "new_account_customer_account",
            "ReferencingAttribute": "new_customer",
            "ReferencedEntity": "account",
            "ReferencedAttribute": "accountid",
            "ReferencingEntityNavigationPropertyName": "new_customer_account",
        },
        {
            "SchemaName": "new_account_customer_contact",
            "ReferencingAttribute": "new_customer",
            "ReferencedEntity": "contact",
            "ReferencedAttribute": "contactid",
            "ReferencingEntityNavigationPropertyName": "new_Customer_contact",
        },
    ],
)

BODIES = {
    "attributes_json": ATTRIBUTES,
    "strings_json": STRINGS,
    "memos_json": MEMOS,
    "datetimes_json": DATETIMES,
    "lookups_json": LOOKUPS,
    "money_json": MONEY,
    "decimals_json": DECIMALS,
    "picklists_json": PICKLISTS,
    "multiselect_json": MULTISELECT,
    "state_json": STATE,
    "status_json": STATUS,
    "boolean_json": BOOLEANS,
    "keys_json": KEYS,
    "relationships_json": RELATIONSHIPS,
}


@pytest.fixture(scope="module")
def account() -> Table:
    return parse_entity_definition(ENTITY, **BODIES)


def test_entity_properties(account: Table) -> None:
    assert account.logical_name == "account"
    assert account.entity_set_name == "accounts"
    assert account.primary_id == "accountid"
    assert account.primary_name == "name"
    assert account.display_name == "Account"
    assert account.schema_name == "Account"
    assert account.object_type_code == 1
    assert account.is_activity is False


def test_attributes_keep_the_service_order_and_base_properties(account: Table) -> None:
    assert list(account.attributes)[:3] == ["accountid", "name", "description"]
    name = account.attributes["name"]
    assert (name.attribute_type, name.attribute_type_name) == ("String", "StringType")
    assert name.display_name == "Name"
    assert name.required_level == "ApplicationRequired"
    assert name.is_primary_name and not name.is_primary_id
    accountid = account.attributes["accountid"]
    assert accountid.is_primary_id
    assert accountid.is_valid_for_create and not accountid.is_valid_for_update
    assert account.attributes["parentaccountidname"].attribute_of == "parentaccountid"
    assert not account.attributes["parentaccountidname"].is_valid_for_read


def test_cast_bodies_fill_derived_properties(account: Table) -> None:
    a = account.attributes
    assert (a["name"].max_length, a["name"].format) == (160, "Text")
    assert a["description"].max_length == 2000
    assert a["revenue"].precision == 2
    assert a["exchangerate"].precision == 10
    assert a["createdon"].date_time_behavior == "UserLocal"
    assert a["new_founded"].is_date_only
    assert a["lastusedincampaign"].format == "DateOnly"
    assert not a["lastusedincampaign"].is_date_only  # behaviour decides, not format
    assert a["parentaccountid"].targets == ("account",)
    assert a["ownerid"].targets == ("systemuser", "team")


def test_options_in_option_set_order(account: Table) -> None:
    a = account.attributes
    assert list(a["industrycode"].options.items()) == [
        (1, "Accounting"),
        (2, "Agriculture"),
        (3, "Broadcasting"),
    ]
    assert a["new_region"].options == {100000000: "North", 100000001: "South"}  # global
    assert a["statecode"].options == {0: "Active", 1: "Inactive"}
    assert a["statuscode"].options == {1: "Active", 2: "Inactive"}
    assert a["donotemail"].options == {0: "Allow", 1: "Do Not Allow"}
    assert a["new_tags"].options == {1: "Red", 2: "Green", 3: "Blue"}
    assert a["new_tags"].is_multi_choice and not a["new_tags"].is_choice
    assert a["industrycode"].is_choice and a["statuscode"].is_choice


def test_alternate_keys(account: Table) -> None:
    (key,) = account.keys
    assert key.name == "new_accountnumber_key"
    assert key.key_attributes == ("accountnumber",)
    assert key.display_name == "Account number"


def test_lookup_properties_and_navigation(account: Table) -> None:
    a = account.attributes
    assert a["parentaccountid"].is_lookup
    assert a["parentaccountid"].property_name == "_parentaccountid_value"
    assert a["name"].property_name == "name"
    assert a["parentaccountid"].navigation_property() == "parentaccountid"
    # Owner: one navigation property for both targets (it points at "owner").
    assert a["ownerid"].navigation_property("team") == "ownerid"
    assert a["ownerid"].navigation_property("systemuser") == "ownerid"
    # Customer: one per target, case kept as the service spells it.
    assert a["new_customer"].navigation_property("account") == "new_customer_account"
    assert a["new_customer"].navigation_property("contact") == "new_Customer_contact"


def test_navigation_fallback_without_relationships() -> None:
    bodies = dict(BODIES, relationships_json={"value": []})
    table = parse_entity_definition(ENTITY, **bodies)
    assert table.attributes["parentaccountid"].navigation_property() == "parentaccountid"
    assert table.attributes["ownerid"].navigation_property("team") == "ownerid"
    assert table.attributes["new_customer"].navigation_property("contact") == "new_customer_contact"


def test_bodies_may_be_value_lists_and_entity_a_filtered_collection() -> None:
    bodies = {k: v["value"] for k, v in BODIES.items()}
    table = parse_entity_definition(collection("EntityDefinitions", [ENTITY]), **bodies)
    assert table.entity_set_name == "accounts"
    assert table.attributes["industrycode"].options[2] == "Agriculture"


def test_attributes_without_select_carry_derived_properties() -> None:
    full = [
        dict(
            attr("name", "String", "StringType", "StringAttributeMetadata"),
            MaxLength=100,
            Format="Email",
        ),
        dict(
            attr("birthdate", "DateTime", "DateTimeType", "DateTimeAttributeMetadata"),
            DateTimeBehavior={"Value": "DateOnly", "CanBeChanged": False},
            Format="DateOnly",
        ),
        dict(
            attr("parentcustomerid", "Customer", "CustomerType", "LookupAttributeMetadata"),
            Targets=["account", "contact"],
        ),
    ]
    entity = dict(
        ENTITY, LogicalName="contact", EntitySetName="contacts", PrimaryIdAttribute="contactid"
    )
    table = parse_entity_definition(entity, attributes_json={"value": full})
    assert table.attributes["name"].max_length == 100
    assert table.attributes["birthdate"].is_date_only
    assert table.attributes["parentcustomerid"].navigation_property("account") == (
        "parentcustomerid_account"
    )


def test_cast_items_for_unlisted_attributes_are_added() -> None:
    table = parse_entity_definition(
        ENTITY,
        picklists_json=[
            {
                "LogicalName": "industrycode",
                "AttributeType": "Picklist",
                "OptionSet": {"Options": [option(5, "Five")]},
            }
        ],
    )
    assert table.attributes["industrycode"].options == {5: "Five"}
    assert table.attributes["industrycode"].is_choice


def test_primary_flags_are_set_from_the_entity() -> None:
    items = [
        {"LogicalName": "accountid", "AttributeType": "Uniqueidentifier"},
        {"LogicalName": "name", "AttributeType": "String"},
    ]
    table = parse_entity_definition(ENTITY, attributes_json=items)
    assert table.attributes["accountid"].is_primary_id
    assert table.attributes["name"].is_primary_name


def test_entity_without_logical_name_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="LogicalName") as info:
        parse_entity_definition({"value": []})
    assert info.value.field == "table"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (label("Account"), "Account"),
        (label("Compte", user=False), "Compte"),  # falls back to LocalizedLabels[0]
        (label(None), None),
        (None, None),
        ("not a label", None),
    ],
)
def test_label_text(value: Any, expected: str | None) -> None:
    assert label_text(value) == expected


def test_metadata_requests_match_the_parser_and_the_docstring() -> None:
    requests = metadata_requests("account")
    parameters = inspect.signature(parse_entity_definition).parameters
    assert set(requests) == set(parameters)
    assert len(requests) == 15
    doc = metadata.__doc__ or ""
    for keyword, url in metadata_requests("{t}").items():
        assert url in doc, keyword
        assert f"{keyword:<20}{url}" in doc
    assert requests["entity_json"].startswith("EntityDefinitions(LogicalName='account')?$select=")
    assert requests["picklists_json"] == (
        "EntityDefinitions(LogicalName='account')/Attributes/Microsoft.Dynamics.CRM."
        "PicklistAttributeMetadata?$select=LogicalName&$expand=OptionSet($select=Options),"
        "GlobalOptionSet($select=Options)"
    )
    assert TABLES_REQUEST in doc
    assert "LogicalName='o''brien'" in metadata_requests("o'brien")["keys_json"]


def test_parse_entity_definitions_lists_tables() -> None:
    body = collection(
        "EntityDefinitions(LogicalName,EntitySetName,...)",
        [
            ENTITY,
            dict(
                ENTITY,
                LogicalName="contact",
                SchemaName="Contact",
                EntitySetName="contacts",
                PrimaryIdAttribute="contactid",
                PrimaryNameAttribute="fullname",
                DisplayName=label("Contact"),
                ObjectTypeCode=2,
            ),
            dict(
                ENTITY,
                LogicalName="accountleads",
                EntitySetName="accountleadscollection",
                PrimaryIdAttribute="accountleadid",
                DisplayName=label(None),
            ),
        ],
    )
    tables = parse_entity_definitions(body)
    assert list(tables) == ["account", "contact", "accountleads"]
    assert tables["contact"].primary_name == "fullname"
    assert tables["accountleads"].entity_set_name == "accountleadscollection"
    assert tables["accountleads"].display_name is None
    assert tables["contact"].attributes == {}


@pytest.fixture(scope="module")
def tables() -> dict[str, Table]:
    return {
        "account": Table("account", "accounts", "accountid", display_name="Account"),
        "contact": Table("contact", "contacts", "contactid", display_name="Contact"),
        "accountleads": Table("accountleads", "accountleadscollection", "accountleadid"),
    }


@pytest.mark.parametrize("name", ["account", "accounts", "Accounts", " ACCOUNT "])
def test_resolve_table_by_logical_or_entity_set_name(name: str, tables: dict[str, Table]) -> None:
    assert resolve_table(name, tables).logical_name == "account"


def test_resolve_table_by_display_name_and_from_an_iterable(tables: dict[str, Table]) -> None:
    assert resolve_table("Contact", list(tables.values())).logical_name == "contact"
    assert resolve_table("accountleadscollection", tables).logical_name == "accountleads"


def test_resolve_table_suggests(tables: dict[str, Table]) -> None:
    with pytest.raises(ConfigError) as info:
        resolve_table("acounts", tables)
    assert info.value.field == "table"
    assert "'acounts'" in str(info.value)
    assert "Did you mean 'accounts'" in str(info.value)
    with pytest.raises(ConfigError, match="logical name"):
        resolve_table("zzzzzz", tables)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("revenue", "revenue"),
        ("Revenue", "revenue"),
        ("_parentaccountid_value", "parentaccountid"),
        ("_PARENTACCOUNTID_VALUE", "parentaccountid"),
        ("parentaccountid", "parentaccountid"),
    ],
)
def test_resolve_column(account: Table, name: str, expected: str) -> None:
    assert account.resolve_column(name).logical_name == expected


def test_resolve_column_rejects_value_form_of_a_non_lookup(account: Table) -> None:
    assert account.find_column("_revenue_value") is None


def test_resolve_column_suggests(account: Table) -> None:
    with pytest.raises(ConfigError) as info:
        account.resolve_column("revnue")
    assert info.value.field == "column"
    assert "Did you mean 'revenue'" in str(info.value)
    assert "'account'" in str(info.value)


def test_attribute_defaults_are_permissive() -> None:
    a = Attribute("x", "String")
    assert a.is_valid_for_create and a.is_valid_for_update and a.is_valid_for_read
    assert a.options == {} and a.targets == ()
    assert a.navigation_property() == "x"
