"""JSON pages -> typed DataFrame -> JSON payloads, against a synthetic table of every type."""

from __future__ import annotations

import datetime as dt
import decimal
import gc
import json
import warnings
import weakref
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from d365nb._convert import (
    ATTRIBUTE_DTYPES,
    EDM_DTYPES,
    ETAG_COLUMN,
    ColumnTypeWarning,
    FrameBuilder,
    InvalidFrameError,
    attribute_dtype,
    build_payloads,
    choice_labels,
    choice_values,
    concat_frames,
    encode_json,
    frame_from_pages,
    payloads_from_frame,
    wire_select,
)
from d365nb._exceptions import ConfigError, D365Warning
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


@pytest.fixture
def df() -> pd.DataFrame:
    return frame_from_pages([[full_row()], [null_row()]], table=TABLE)


# -- type maps ---------------------------------------------------------------------------


def test_type_maps_are_data_and_cover_every_read_kind() -> None:
    for type_ in ("Integer", "BigInt", "Boolean", "DateTime", "DateOnly", "Money", "Decimal",
                  "Double", "String", "Memo", "Uniqueidentifier", "Picklist", "State", "Status",
                  "MultiSelectPicklist", "Lookup", "Customer", "Owner", "EntityName"):  # fmt: skip
        assert type_ in ATTRIBUTE_DTYPES
    assert EDM_DTYPES["Edm.DateTimeOffset"] == "datetime64[us, UTC]"
    assert EDM_DTYPES["Edm.Int32"] == "Int32"


def test_every_column_gets_its_dtype(df: pd.DataFrame) -> None:
    expected = {
        "accountid": "string",
        "name": "string",
        "description": "string",
        "numberofemployees": "Int32",
        "versionnumber": "Int64",
        "new_bignumber": "Int64",
        "revenue": "float64",
        "exchangerate": "float64",
        "address1_latitude": "float64",
        "donotemail": "boolean",
        "createdon": "datetime64[us, UTC]",
        "new_meeting": "datetime64[us, UTC]",
        "new_founded": "datetime64[us]",
        "industrycode": "category",
        "statecode": "category",
        "statuscode": "category",
        "new_tags": "object",
        "parentaccountid": "string",
        "parentaccountid_name": "string",
        "parentaccountid_table": "category",
        "ownerid": "string",
        "ownerid_name": "string",
        "ownerid_table": "category",
        "customerid": "string",
        "customerid_name": "string",
        "customerid_table": "category",
        "new_externalid": "string",
        ETAG_COLUMN: "string",
    }
    assert {k: str(v) for k, v in df.dtypes.items()} == expected
    assert list(df.columns)[0] == "accountid"  # the primary id first
    assert list(df.columns)[-1] == ETAG_COLUMN
    for column, dtype in expected.items():
        attribute = TABLE.find_column(column)
        if attribute is not None:
            assert attribute_dtype(attribute) == dtype, column  # the map is what is applied


def test_values_of_a_full_row(df: pd.DataFrame) -> None:
    row = df.iloc[0]
    assert row["accountid"] == ID1
    assert row["name"] == "Adventure Works"
    assert row["numberofemployees"] == 4300
    assert row["versionnumber"] == 9007199254740993  # exact: never went through float
    assert row["revenue"] == 20000.0
    assert row["donotemail"] is np.True_ or row["donotemail"] == True  # noqa: E712
    assert row["createdon"] == pd.Timestamp("2023-04-07T21:59:01", tz="UTC")
    assert row["new_meeting"] == pd.Timestamp("2024-02-29T09:30:00", tz="UTC")
    assert row["new_founded"] == pd.Timestamp("2024-05-01")
    assert row["industrycode"] == "Agriculture"
    assert row["statecode"] == "Active"
    assert row["new_tags"] == ["Red", "Blue"]
    assert row["parentaccountid"] == PARENT
    assert row["parentaccountid_name"] == "Fabrikam"
    assert row["parentaccountid_table"] == "account"
    assert row["ownerid_table"] == "systemuser"
    assert row["customerid_table"] == "contact"
    assert row[ETAG_COLUMN] == 'W/"72201545"'


def test_nulls_everywhere_keep_the_dtypes(df: pd.DataFrame) -> None:
    row = df.iloc[1]
    for column in df.columns:
        if column in ("accountid", ETAG_COLUMN):
            continue
        assert pd.isna(row[column]) if column != "new_tags" else row[column] is None, column
    only_nulls = frame_from_pages([[null_row()]], table=TABLE)
    assert only_nulls.dtypes.equals(df.dtypes)


def test_choices_are_categoricals_in_option_order(df: pd.DataFrame) -> None:
    assert list(df["industrycode"].cat.categories) == ["Accounting", "Agriculture", "Broadcasting"]
    assert not df["industrycode"].cat.ordered
    assert list(df["ownerid_table"].cat.categories) == ["systemuser", "team"]
    assert list(df["customerid_table"].cat.categories) == ["account", "contact"]


def test_choice_values_outside_the_metadata_are_kept_as_their_integer() -> None:
    rows = [dict(full_row(), industrycode=100000099), dict(full_row(), industrycode=3)]
    frame = frame_from_pages([rows], table=TABLE)
    assert list(frame["industrycode"]) == ["100000099", "Broadcasting"]
    assert list(frame["industrycode"].cat.categories)[-1] == "100000099"
    assert list(choice_values(frame["industrycode"], TABLE.attributes["industrycode"])) == [
        100000099,
        3,
    ]


def test_repeated_labels_are_made_unique() -> None:
    attribute = A("x", "Picklist", options={1: "Same", 2: "Same", 3: "Other"})
    assert choice_labels(attribute) == {1: "Same (1)", 2: "Same (2)", 3: "Other"}


def test_single_target_lookup_table_without_annotations() -> None:
    row = {"accountid": ID1, "_parentaccountid_value": PARENT}
    frame = frame_from_pages([[row]], table=TABLE, select=["parentaccountid"])
    assert frame["parentaccountid_table"].tolist() == ["account"]
    assert frame["parentaccountid_name"].isna().all()


def test_decimal_option_gives_decimals_rounded_to_the_precision() -> None:
    frame = frame_from_pages([[full_row(), null_row()]], table=TABLE, decimal=True)
    assert frame["revenue"].dtype == object
    assert frame["revenue"][0] == decimal.Decimal("20000.00")
    assert frame["exchangerate"][0] == decimal.Decimal("1.2345")
    assert frame["revenue"][1] is None
    assert frame["address1_latitude"].dtype == "float64"  # Double stays a float
    huge = frame_from_pages([[dict(full_row(), revenue=1e30)]], table=TABLE, decimal=True)
    assert huge["revenue"][0] == decimal.Decimal("1E+30")
    empty = frame_from_pages([], table=TABLE, select=["revenue"], decimal=True)
    assert empty["revenue"].dtype == object
    body = payloads_from_frame(frame, table=TABLE, tables=TABLES, mode="create")[0][1]
    assert body["revenue"] == decimal.Decimal("20000.00")
    assert encode_json({"revenue": body["revenue"]}) == b'{"revenue":20000.00}'


def test_formatted_adds_label_columns_for_numbers_dates_and_yes_no() -> None:
    frame = frame_from_pages([[full_row(), null_row()]], table=TABLE, formatted=True)
    labels = [c for c in frame.columns if c.endswith("_label")]
    assert labels == [
        "numberofemployees_label",
        "versionnumber_label",
        "new_bignumber_label",
        "revenue_label",
        "exchangerate_label",
        "address1_latitude_label",
        "donotemail_label",
        "createdon_label",
        "new_meeting_label",
        "new_founded_label",
    ]
    assert frame["revenue_label"].tolist()[0] == "$20,000.00"
    assert pd.isna(frame["revenue_label"][1])
    assert frame["donotemail_label"].dtype == "string"
    assert list(frame.columns).index("revenue_label") == list(frame.columns).index("revenue") + 1


def test_select_orders_columns_and_accepts_the_value_form() -> None:
    frame = frame_from_pages(
        [[full_row()]], table=TABLE, select=["revenue", "_parentaccountid_value", "name"]
    )
    assert list(frame.columns) == [
        "accountid",
        "revenue",
        "parentaccountid",
        "parentaccountid_name",
        "parentaccountid_table",
        "name",
        ETAG_COLUMN,
    ]


def test_select_with_an_unknown_column_suggests() -> None:
    with pytest.raises(ConfigError, match="Did you mean 'revenue'") as info:
        FrameBuilder(TABLE, select=["revenu"])
    assert info.value.field == "column"


def test_wire_select() -> None:
    assert wire_select(TABLE, ["name", "parentaccountid", "Name", "_ownerid_value"]) == [
        "name",
        "_parentaccountid_value",
        "_ownerid_value",
    ]


def test_dtype_overrides_win() -> None:
    frame = frame_from_pages(
        [[full_row(), null_row()]],
        table=TABLE,
        dtypes={
            "industrycode": "Int32",  # numeric on a choice: the integer values
            "statecode": "string",  # text on a choice: the labels
            "revenue": "Float64",
            "parentaccountid_name": "object",
            ETAG_COLUMN: "object",
        },
    )
    assert frame["industrycode"].dtype == "Int32"
    assert frame["industrycode"].tolist()[0] == 2
    assert frame["statecode"].dtype == "string" and frame["statecode"][0] == "Active"
    assert frame["revenue"].dtype == "Float64"
    assert frame["parentaccountid_name"].dtype == object
    assert frame[ETAG_COLUMN].dtype == object


def test_unknown_dtype_override_is_a_config_error_with_a_suggestion() -> None:
    with pytest.raises(ConfigError, match="Did you mean 'revenue'") as info:
        FrameBuilder(TABLE, dtypes={"revnue": "float32"})
    assert info.value.field == "dtypes"
    with pytest.raises(ConfigError, match="'numberofemployees'"):
        FrameBuilder(TABLE, select=["name"], dtypes={"numberofemployees": "Int64"})


def test_impossible_dtype_override_names_the_column() -> None:
    with pytest.raises(ConfigError, match="'name' cannot be converted to 'int64'") as info:
        frame_from_pages([[full_row()]], table=TABLE, dtypes={"name": "int64"})
    assert info.value.field == "dtypes"


def test_empty_result_has_the_columns_and_dtypes() -> None:
    selected = ["name", "revenue", "industrycode", "createdon", "parentaccountid", "new_tags"]
    empty = frame_from_pages([], table=TABLE, select=selected)
    full = frame_from_pages([[full_row()]], table=TABLE, select=selected)
    assert len(empty) == 0
    assert list(empty.columns) == list(full.columns)
    assert empty.dtypes.equals(full.dtypes)
    assert list(empty["industrycode"].cat.categories) == [
        "Accounting",
        "Agriculture",
        "Broadcasting",
    ]
    assert frame_from_pages([[], []], table=TABLE, select=selected).dtypes.equals(full.dtypes)


def test_empty_result_without_select_has_the_readable_columns() -> None:
    empty = frame_from_pages([[]], table=TABLE)
    full = frame_from_pages([[full_row()]], table=TABLE)
    assert set(empty.columns) == set(full.columns)  # owneridtype (AttributeOf) left out
    assert empty.dtypes[list(full.columns)].equals(full.dtypes)


def test_unknown_columns_are_inferred_with_a_warning() -> None:
    rows = [
        dict(full_row(), new_count=1, new_when="2024-01-02T03:04:05Z", new_key=PARENT, new_x="a"),
        dict(null_row(), new_count=None, new_when=None, new_key=None, new_x=None),
    ]
    with pytest.warns(ColumnTypeWarning, match="'new_count'.*not in the metadata"):
        frame = frame_from_pages([rows], table=TABLE)
    assert issubclass(ColumnTypeWarning, D365Warning)
    assert frame["new_count"].dtype == "Int64"
    assert frame["new_when"].dtype == "datetime64[us, UTC]"
    assert frame["new_key"].dtype == "string"
    assert frame["new_x"].dtype == "string"


def test_values_that_do_not_fit_fall_back_to_objects_with_a_warning() -> None:
    pages = [[full_row()], [dict(full_row(), numberofemployees="many")]]
    with pytest.warns(ColumnTypeWarning, match="'numberofemployees'"):
        frame = frame_from_pages(pages, table=TABLE)
    assert frame["numberofemployees"].dtype == object
    assert frame["numberofemployees"].tolist() == [4300, "many"]
    assert frame["name"].dtype == "string"  # the other columns are unaffected


def test_a_column_first_seen_on_a_later_page_is_back_filled() -> None:
    first = {k: v for k, v in full_row().items() if not k.startswith("revenue")}
    frame = frame_from_pages([[first, first], [full_row()]], table=TABLE)
    assert frame["revenue"].isna().tolist() == [True, True, False]
    assert frame["revenue"].dtype == "float64"


@pytest.mark.parametrize("select", [None, ["name"]])
def test_expanded_navigation_properties_are_kept_as_objects(select: list[str] | None) -> None:
    parent = {"@odata.etag": 'W/"5"', "name": "Fabrikam", "accountid": PARENT}
    tasks = [{"subject": "Call", "activityid": ID2}]
    row = dict(
        full_row(),
        parentaccountid=parent,
        Account_Tasks=tasks,
        **{"Account_Tasks@odata.nextLink": "https://x/api/data/v9.2/accounts(1)/Account_Tasks"},
    )
    other = dict(row, parentaccountid=None, Account_Tasks=[])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        frame = frame_from_pages([[row, other]], table=TABLE, select=select)
    assert frame["parentaccountid_expanded"].tolist() == [parent, None]
    if select is None:
        assert frame["parentaccountid"].tolist() == [PARENT, PARENT]  # the lookup itself
    assert frame["Account_Tasks"].tolist() == [tasks, []]
    payloads = build_payloads(frame, table=TABLE, tables=TABLES, mode="update")
    assert payloads.problems == ()
    assert payloads.skipped["Account_Tasks"] == "related rows from $expand (not written)"
    assert "parentaccountid_expanded" in payloads.skipped


def test_builder_keeps_no_reference_to_the_pages() -> None:
    class Row(dict[str, Any]):
        pass

    class Page(list[Row]):
        pass

    builder = FrameBuilder(TABLE, formatted=True)
    page = Page(Row(full_row()) for _ in range(3))
    page_ref = weakref.ref(page)
    row_refs = [weakref.ref(row) for row in page]
    builder.add_page(page)
    del page
    gc.collect()
    assert page_ref() is None
    assert all(ref() is None for ref in row_refs)
    assert len(builder.finish()) == 3


def test_builder_matches_one_shot_conversion_across_page_sizes() -> None:
    rows = [dict(full_row(), numberofemployees=i, accountid=f"{i:08d}-0000-0000-0000-000000000000")
            for i in range(7)] + [null_row()]  # fmt: skip
    whole = frame_from_pages([rows], table=TABLE)
    paged = frame_from_pages([rows[i : i + 3] for i in range(0, 8, 3)], table=TABLE)
    pd.testing.assert_frame_equal(whole, paged)


def test_concat_frames_keeps_categoricals() -> None:
    a = frame_from_pages([[dict(full_row(), industrycode=100000001)]], table=TABLE)
    b = frame_from_pages([[dict(full_row(), industrycode=100000002)]], table=TABLE)
    empty = frame_from_pages([], table=TABLE)
    both = concat_frames([a, empty, b])
    assert both["industrycode"].dtype == "category"
    assert both["industrycode"].tolist() == ["100000001", "100000002"]
    assert list(both.columns) == list(a.columns)
    assert both.index.tolist() == [0, 1]
    assert len(concat_frames([empty, empty]).columns) == len(empty.columns)


def _ranged_pages() -> tuple[list[list[dict[str, Any]]], list[list[dict[str, Any]]]]:
    """Two ranges' pages: columns appear late and vanish, lookups name tables in new orders."""

    def row(i: int, **changes: Any) -> dict[str, Any]:
        out = dict(
            full_row(), numberofemployees=i, accountid=f"{i:08d}-0000-0000-0000-000000000000"
        )
        out.update(changes)
        return out

    def without(values: dict[str, Any], *keys: str) -> dict[str, Any]:
        return {k: v for k, v in values.items() if k.split("@")[0] not in keys}

    team = lookup("ownerid", USER, "team", "Sales")
    first = [
        [
            without(row(0), "new_bignumber", "exchangerate"),
            without(row(1), "new_bignumber", "exchangerate"),
        ],
        [row(2, **team), null_row()],
    ]
    second = [
        [without(row(3, **team, industrycode=100000001), "new_meeting")],
        [without(row(4, revenue="not a number"), "new_meeting")],
    ]
    return first, second


@pytest.mark.parametrize("formatted", [False, True])
def test_merged_builders_give_the_frame_of_one_builder(formatted: bool) -> None:
    first, second = _ranged_pages()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ColumnTypeWarning)  # revenue: one page of text
        whole = frame_from_pages(first + second, table=TABLE, formatted=formatted)
        a = FrameBuilder(TABLE, formatted=formatted)
        b = FrameBuilder(TABLE, formatted=formatted)
        empty = FrameBuilder(TABLE, formatted=formatted)
        for page in first:
            a.add_page(page)
        for page in second:
            b.add_page(page)
        merged = FrameBuilder.merge([a, empty, b], consume=True).finish()
    pd.testing.assert_frame_equal(merged, whole)
    assert merged["ownerid_table"].cat.categories.tolist() == ["systemuser", "team"]
    assert merged["new_bignumber"].isna().tolist() == [True, True, False, True, False, False]
    for done in (a, b, empty):  # consumed: their chunks now belong to the merged builder
        with pytest.raises(RuntimeError, match="finished"):
            done.finish()


def test_merge_without_consume_leaves_the_builders_usable() -> None:
    first, second = _ranged_pages()
    a = frame_from_pages(first, table=TABLE)
    builder = FrameBuilder(TABLE)
    for page in first:
        builder.add_page(page)
    once = FrameBuilder.merge([builder]).finish()
    pd.testing.assert_frame_equal(once, a)
    builder.add_page(second[0])  # still open: a partial read goes on after its snapshot
    assert len(builder.finish()) == 5
    empty = FrameBuilder(TABLE, select=["name"])
    assert list(FrameBuilder.merge([empty, FrameBuilder(TABLE, select=["name"])]).finish()) == [
        "accountid",
        "name",
        ETAG_COLUMN,
    ]


def test_merge_refuses_a_column_typed_two_ways() -> None:
    a = FrameBuilder(TABLE)
    with pytest.warns(ColumnTypeWarning, match="new_other"):
        a.add_page([{"accountid": ID1, "new_other": None}])  # unknown: an inferred column
    b = FrameBuilder(TABLE)
    b.add_page([{"accountid": ID2, "new_other": {"nested": 1}}])  # an expanded object
    with pytest.raises(ValueError, match="new_other"):
        FrameBuilder.merge([a, b], consume=True)
    assert len(a.finish()) == 1  # nothing was taken


def test_finish_frees_each_column_before_building_the_next(monkeypatch: pytest.MonkeyPatch) -> None:
    """Chunks and frame never coexist in full: when an output column is built, the typed
    chunks of every column built before it are already gone (refcounting, no gc)."""
    builder = FrameBuilder(TABLE, formatted=True)
    for i in range(3):
        builder.add_page([dict(full_row(), numberofemployees=i), null_row()])

    def refs(items: list[Any]) -> list[weakref.ref[Any]]:  # (values, mask) pairs: both
        return [weakref.ref(a) for c in items for a in (c if isinstance(c, tuple) else [c])]

    chunks = {
        key: refs([*col.chunks, *col.names, *col.tables, *(col.labels or [])])
        for key, col in builder._columns.items()
    }
    chunks[ETAG_COLUMN] = refs(builder._etags)
    assert all(refs for refs in chunks.values())
    names = {col.name: key for key, col in builder._columns.items()}
    alive_when_built: dict[str, int] = {}
    original = FrameBuilder._override

    def spy(self: FrameBuilder, name: str, series: pd.Series, column: Any = None) -> pd.Series:
        # `name` is a column's first output (`x`) or one of its others (`x_name`, `x_label`).
        if name in names:
            for built in alive_when_built:
                alive = sum(ref() is not None for ref in chunks[names[built]])
                alive_when_built[built] = max(alive_when_built[built], alive)
            alive_when_built[name] = 0
        return original(self, name, series, column)

    monkeypatch.setattr(FrameBuilder, "_override", spy)
    frame = builder.finish()
    assert len(frame) == 6
    assert alive_when_built.keys() == names.keys()
    assert alive_when_built == dict.fromkeys(names, 0)
    assert all(ref() is None for refs in chunks.values() for ref in refs)
    with pytest.raises(RuntimeError, match="finished"):
        builder.add_page([full_row()])


# -- writing -----------------------------------------------------------------------------


def test_payload_of_a_read_row_for_create(df: pd.DataFrame) -> None:
    payloads = build_payloads(df, table=TABLE, tables=TABLES, mode="create")
    assert payloads.problems == ()
    label, body = payloads.rows[0]
    assert label == 0
    assert body == {
        "accountid": ID1,
        "name": "Adventure Works",
        "description": "Bikes.",
        "numberofemployees": 4300,
        "new_bignumber": -5,
        "revenue": 20000.0,
        "exchangerate": 1.2345,
        "address1_latitude": 47.65539,
        "donotemail": True,
        "new_meeting": "2024-02-29T09:30:00Z",
        "new_founded": "2024-05-01",
        "industrycode": 2,
        "statuscode": 1,
        "new_tags": "1,3",
        "parentaccountid@odata.bind": f"/accounts({PARENT})",
        "ownerid@odata.bind": f"/systemusers({USER})",
        "customerid_contact@odata.bind": f"/contacts({CONTACT})",
        "new_externalid": "a0dbf27c-8efb-e511-80d2-00155db07c77",
    }
    assert payloads.skipped == {
        "versionnumber": "read-only for create",
        "createdon": "read-only for create",
        "statecode": "read-only for create",
        "parentaccountid_name": "derived from lookup 'parentaccountid' (not written)",
        "parentaccountid_table": "derived from lookup 'parentaccountid' (not written)",
        "ownerid_name": "derived from lookup 'ownerid' (not written)",
        "ownerid_table": "derived from lookup 'ownerid' (not written)",
        "customerid_name": "derived from lookup 'customerid' (not written)",
        "customerid_table": "derived from lookup 'customerid' (not written)",
        ETAG_COLUMN: "row version, used for concurrency",
    }
    nulls = payloads.rows[1][1]
    assert nulls["accountid"] == ID2
    assert nulls["name"] is None and nulls["industrycode"] is None and nulls["new_tags"] is None
    assert nulls["parentaccountid@odata.bind"] is None
    json.dumps(body)  # plain JSON types only


def test_update_leaves_the_ids_out_and_sends_statecode(df: pd.DataFrame) -> None:
    payloads = build_payloads(df, table=TABLE, tables=TABLES, mode="update")
    body = payloads.rows[0][1]
    assert "accountid" not in body
    assert body["statecode"] == 0
    assert payloads.skipped["accountid"] == "identifies the row (sent in the URL)"
    upsert = build_payloads(df, table=TABLE, tables=TABLES, mode="upsert", key_columns=["name"])
    assert "name" not in upsert.rows[0][1]
    assert "statecode" not in upsert.rows[0][1]  # not valid for create, so not for upsert


def test_na_omit_leaves_nulls_out(df: pd.DataFrame) -> None:
    rows = payloads_from_frame(df, table=TABLE, tables=TABLES, mode="update", na="omit")
    assert rows[1][1] == {}
    assert "name" in rows[0][1]


def test_new_frame_with_labels_lists_dates_and_dates_only() -> None:
    frame = pd.DataFrame(
        {
            "name": ["A", "B"],
            "industrycode": ["Broadcasting", None],
            "new_tags": [["Green", "Red"], []],
            "new_meeting": pd.DatetimeIndex(["2024-01-01 10:00", None]).tz_localize("Europe/Paris"),
            "new_founded": [dt.date(2020, 2, 29), None],
            "donotemail": [False, None],
            "numberofemployees": [3.0, np.nan],  # integral floats are fine
        },
        index=["r1", "r2"],
    )
    rows = payloads_from_frame(frame, table=TABLE, mode="create")
    assert rows[0] == (
        "r1",
        {
            "name": "A",
            "industrycode": 3,
            "new_tags": "2,1",
            "new_meeting": "2024-01-01T09:00:00Z",
            "new_founded": "2020-02-29",
            "donotemail": False,
            "numberofemployees": 3,
        },
    )
    assert rows[1][1] == {
        "name": "B",
        "industrycode": None,
        "new_tags": None,
        "new_meeting": None,
        "new_founded": None,
        "donotemail": None,
        "numberofemployees": None,
    }


def test_problems_are_collected_with_rows_columns_and_fixes() -> None:
    frame = pd.DataFrame(
        {
            "name": ["ok", "x" * 21, "ok"],
            "industrycode": ["Accounting", "Acounting", "Nope"],
            "new_meeting": pd.DatetimeIndex(["2024-01-01", "2024-01-02", None]),  # naive
            "revenue": [1.0, np.inf, None],
            "createdon": pd.to_datetime(["2024-01-01"] * 3, utc=True),
            "revnue": [1, 2, 3],
        },
        index=pd.Index([10, 11, 12], name="row"),
    )
    with pytest.raises(InvalidFrameError) as info:
        payloads_from_frame(frame, table=TABLE, mode="update", columns=list(frame.columns))
    error = info.value
    assert isinstance(error, ConfigError)
    text = str(error)
    by_column = {p.column: p for p in error.problems}
    assert by_column["name"].rows == (11,)
    assert "maximum of 20 characters" in by_column["name"].message
    assert "str.slice(0, 20)" in by_column["name"].hint
    unknown_labels = [p for p in error.problems if p.column == "industrycode"]
    assert {p.rows for p in unknown_labels} == {(11,), (12,)}
    assert any("Did you mean 'Accounting'" in p.hint for p in unknown_labels)
    assert "tz_localize('UTC')" in by_column["new_meeting"].hint
    assert by_column["revenue"].rows == (11,) and "infinite" in by_column["revenue"].message
    assert "read-only" in by_column["createdon"].message
    assert "Did you mean 'revenue'" in by_column["revnue"].hint
    assert "column 'name', row 11:" in text
    assert "nothing was sent" in text
    assert error.field == "df"


def test_problem_messages_are_capped_but_all_are_kept() -> None:
    frame = pd.DataFrame({f"bad{i}": [1] for i in range(30)})
    with pytest.raises(InvalidFrameError) as info:
        payloads_from_frame(frame, table=TABLE, mode="create", limit=5)
    assert len(info.value.problems) == 30
    assert "and 25 more" in str(info.value)


def test_many_bad_rows_are_counted_not_listed() -> None:
    frame = pd.DataFrame({"name": ["x" * 30] * 12})
    payloads = build_payloads(frame, table=TABLE, mode="create")
    (problem,) = payloads.problems
    assert problem.row_count == 12 and len(problem.rows) == 5
    assert "(and 7 more)" in str(problem)
    assert payloads.rows == []


@pytest.mark.parametrize(
    ("column", "values", "message"),
    [
        ("numberofemployees", [1.5], "fractional part"),
        ("numberofemployees", [2**31], "outside"),
        ("numberofemployees", ["seven"], "not a whole number"),
        ("numberofemployees", [True], "booleans"),
        ("revenue", ["lots"], "not a number"),
        ("revenue", [-np.inf], "infinite"),
        ("donotemail", ["yes"], "not True/False"),
        ("name", [42], "not text"),
        ("new_externalid", ["not-a-guid"], "not a GUID"),
        ("new_founded", [pd.Timestamp("2024-01-01 10:00")], "times of day"),
        ("new_meeting", ["not a date"], "does not hold dates"),
        ("new_meeting", [pd.Timestamp("1700-01-01", tz="UTC")], "before 1753"),
        ("new_tags", [["Red", "Purple"]], "'Purple', which is not an option"),
        ("industrycode", [1.5], "label 1.5, which is not an option"),
        ("industrycode", [["Accounting"]], "not labels"),
        ("new_tags", [5], "not a list of labels"),
        ("parentaccountid", ["Fabrikam"], "not a record id"),
    ],
)
def test_bad_values(column: str, values: list[Any], message: str) -> None:
    frame = pd.DataFrame({column: pd.Series(values, dtype=object, index=["first"])})
    (problem,) = build_payloads(frame, table=TABLE, tables=TABLES, mode="create").problems
    assert problem.column == column
    assert message in problem.message
    assert problem.hint


def test_non_string_and_duplicate_column_names() -> None:
    frame = pd.DataFrame([[1, "a", "b"]], columns=[0, "name", "name"])
    problems = build_payloads(frame, table=TABLE, mode="create").problems
    assert [p.column for p in problems] == ["0", "name"]
    assert "not a string column name" in problems[0].message
    assert "more than once" in problems[1].message


def test_the_same_attribute_twice_is_a_problem() -> None:
    frame = pd.DataFrame({"parentaccountid": [PARENT], "_parentaccountid_value": [PARENT]})
    (problem,) = build_payloads(frame, table=TABLE, tables=TABLES, mode="create").problems
    assert problem.column == "_parentaccountid_value"
    assert "a second time" in problem.message


def test_polymorphic_lookups_bind_per_row() -> None:
    frame = pd.DataFrame(
        {
            "customerid": [PARENT, CONTACT, None],
            "customerid_table": ["account", "contact", None],
        }
    )
    rows = payloads_from_frame(frame, table=TABLE, tables=TABLES, mode="create")
    assert rows[0][1] == {"customerid_account@odata.bind": f"/accounts({PARENT})"}
    assert rows[1][1] == {"customerid_contact@odata.bind": f"/contacts({CONTACT})"}
    assert rows[2][1] == {"customerid_account@odata.bind": None}


def test_polymorphic_lookup_problems() -> None:
    no_table = pd.DataFrame({"customerid": [PARENT]})
    (problem,) = build_payloads(no_table, table=TABLE, tables=TABLES, mode="create").problems
    assert "Add a column 'customerid_table'" in problem.hint
    frame = pd.DataFrame(
        {"customerid": [PARENT, CONTACT, CONTACT], "customerid_table": ["lead", None, "contact"]}
    )
    problems = build_payloads(frame, table=TABLE, tables={}, mode="create").problems
    messages = {(p.column, p.rows): p.message for p in problems}
    assert "'lead', which 'customerid' cannot point to" in messages[("customerid_table", (0,))]
    assert "is empty" in messages[("customerid_table", (1,))]
    assert "entity set is unknown" in messages[("customerid", (2,))]


def test_bad_mode_and_na() -> None:
    frame = pd.DataFrame({"name": ["a"]})
    with pytest.raises(ConfigError) as info:
        build_payloads(frame, table=TABLE, mode="delete")  # type: ignore[arg-type]
    assert info.value.field == "mode"
    with pytest.raises(ConfigError):
        build_payloads(frame, table=TABLE, na="skip")  # type: ignore[arg-type]


def test_columns_naming_a_missing_frame_column() -> None:
    frame = pd.DataFrame({"name": ["a"]})
    (problem,) = build_payloads(frame, table=TABLE, columns=["nam"], mode="create").problems
    assert "not a column of the frame" in problem.message
    assert "Did you mean 'name'" in problem.hint


def test_decimals_are_encoded_exactly() -> None:
    frame = pd.DataFrame({"revenue": [decimal.Decimal("922337203685477.1234"), None]})
    rows = payloads_from_frame(frame, table=TABLE, mode="create")
    assert rows[0][1]["revenue"] == decimal.Decimal("922337203685477.1234")
    assert encode_json(rows[0][1]) == b'{"revenue":922337203685477.1234}'
    assert (
        encode_json({"a": "é", "n": np.int64(3), "b": None}) == '{"a":"é","n":3,"b":null}'.encode()
    )
    with pytest.raises(TypeError):
        encode_json({"x": object()})


def test_numeric_choice_columns() -> None:
    ints = pd.DataFrame({"industrycode": pd.array([2, None], dtype="Int32")})
    rows = payloads_from_frame(ints, table=TABLE, mode="create")
    assert [body["industrycode"] for _, body in rows] == [2, None]
    floats = pd.DataFrame({"industrycode": [1.5]})
    (problem,) = build_payloads(floats, table=TABLE, mode="create").problems
    assert "not choice values" in problem.message


def test_choice_values_raises_for_unknown_labels() -> None:
    series = pd.Series(["Accounting", "Broadcastin"], name="industrycode")
    with pytest.raises(InvalidFrameError, match="Did you mean 'Broadcasting'"):
        choice_values(series, TABLE.attributes["industrycode"])


# -- round trip ----------------------------------------------------------------------------

GUIDS = st.uuids().map(str)
TEXT = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=20)
SECONDS = st.datetimes(dt.datetime(1753, 1, 1), dt.datetime(9999, 12, 31, 23, 59, 59)).map(
    lambda d: d.strftime("%Y-%m-%dT%H:%M:%SZ")
)
DATES = st.dates(dt.date(1753, 1, 1), dt.date(9999, 12, 31)).map(dt.date.isoformat)
FLOATS = st.floats(allow_nan=False, allow_infinity=False)
CHOICE = st.sampled_from([1, 2, 3, 100000000, -7])
MULTI = st.lists(st.sampled_from([1, 2, 3, 42]), min_size=1, max_size=4, unique=True).map(
    lambda v: ",".join(map(str, v))
)
WIRE = {
    "name": TEXT,
    "description": TEXT,
    "numberofemployees": st.integers(-(2**31), 2**31 - 1),
    "new_bignumber": st.integers(-(2**63), 2**63 - 1),
    "revenue": FLOATS,
    "exchangerate": FLOATS,
    "address1_latitude": FLOATS,
    "donotemail": st.booleans(),
    "new_meeting": SECONDS,
    "new_founded": DATES,
    "industrycode": CHOICE,
    "statuscode": st.sampled_from([1, 2, 5]),
    "new_tags": MULTI,
    "new_externalid": GUIDS,
}


@st.composite
def wire_rows(draw: st.DrawFn) -> dict[str, Any]:
    row: dict[str, Any] = {"@odata.etag": 'W/"1"', "accountid": draw(GUIDS)}
    for key, strategy in WIRE.items():
        row[key] = draw(st.none() | strategy)
    parent = draw(st.none() | GUIDS)
    row.update(lookup("parentaccountid", parent, "account", "P"))
    if parent is not None and draw(st.booleans()):  # annotations not asked for
        row = {k: v for k, v in row.items() if "@" not in k or k == "@odata.etag"}
    owner_table = draw(st.sampled_from(["systemuser", "team"]))
    row.update(lookup("ownerid", draw(st.none() | GUIDS), owner_table, "O"))
    customer_table = draw(st.sampled_from(["account", "contact"]))
    row.update(lookup("customerid", draw(st.none() | GUIDS), customer_table, "C"))
    return row


def expected_body(row: dict[str, Any]) -> dict[str, Any]:
    """What a create must send for a wire row: the same values, lookups as binds."""
    body = {key: row[key] for key in ["accountid", *WIRE]}
    sets = {
        "account": "accounts",
        "contact": "contacts",
        "systemuser": "systemusers",
        "team": "teams",
    }
    parent = row["_parentaccountid_value"]
    body["parentaccountid@odata.bind"] = parent and f"/accounts({parent})"
    owner = row["_ownerid_value"]
    body["ownerid@odata.bind"] = owner and f"/{sets[row[f'_ownerid_value{LLN}']]}({owner})"
    customer = row["_customerid_value"]
    if customer is None:
        body["customerid_account@odata.bind"] = None
    else:
        target = row[f"_customerid_value{LLN}"]
        body[f"customerid_{target}@odata.bind"] = f"/{sets[target]}({customer})"
    return body


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(wire_rows(), max_size=6), st.integers(1, 4))
def test_round_trip_reproduces_the_wire_values(rows: list[dict[str, Any]], size: int) -> None:
    pages = [rows[i : i + size] for i in range(0, len(rows), size)]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        frame = frame_from_pages(pages, table=TABLE)
    payloads = payloads_from_frame(frame, table=TABLE, tables=TABLES, mode="create")
    assert [label for label, _ in payloads] == list(range(len(rows)))
    for row, (_, body) in zip(rows, payloads, strict=True):
        assert body == expected_body(row)
        json.dumps(body, allow_nan=False)
