"""JSON pages -> typed DataFrame (`d365nb._frames`), against a synthetic table of every type."""

from __future__ import annotations

import decimal
import gc
import warnings
import weakref
from typing import Any

import numpy as np
import pandas as pd
import pytest

from d365nb._dtypes import ETAG_COLUMN, attribute_dtype, choice_values
from d365nb._exceptions import ColumnTypeWarning, ConfigError, D365Warning
from d365nb._frames import FrameBuilder, concat_frames, frame_from_pages
from d365nb._payloads import build_payloads, encode_json, payloads_from_frame
from tests._support.frames import ID1, ID2, PARENT, TABLE, TABLES, USER, full_row, lookup, null_row


@pytest.fixture
def df() -> pd.DataFrame:
    return frame_from_pages([[full_row()], [null_row()]], table=TABLE)


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
