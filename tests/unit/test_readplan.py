"""`_readplan`: the wire request of a read and the balanced ranges, without a server."""

from __future__ import annotations

import datetime as dt
import random

import pytest

from d365nb._metadata import Attribute, Table
from d365nb._readplan import (
    names_from_expand,
    prefer_header,
    sample_ranges,
    wire_request,
    with_annotation,
)


def _table() -> Table:
    attributes = {
        "accountid": Attribute("accountid", "Uniqueidentifier", is_primary_id=True),
        "name": Attribute("name", "String", is_primary_name=True),
        "createdon": Attribute("createdon", "DateTime"),
        "parentaccountid": Attribute(
            "parentaccountid",
            "Lookup",
            targets=("account",),
            navigation={"account": "parentaccountid"},
        ),
        "customerid": Attribute(
            "customerid",
            "Customer",
            targets=("account", "contact"),
            navigation={"account": "customerid_account", "contact": "customerid_contact"},
        ),
    }
    return Table("account", "accounts", "accountid", "name", attributes=attributes)


NAMES = {"account": "name", "contact": "fullname"}


def test_single_target_lookups_are_named_by_expand_not_annotations() -> None:
    wire = wire_request(
        _table(),
        select=["name", "parentaccountid"],
        filter=None,
        orderby=None,
        top=None,
        expand=None,
        count=False,
        formatted=False,
        page_size=5000,
        lookup_names=NAMES,
    )
    assert wire.params["$expand"] == "parentaccountid($select=name)"
    assert wire.prefer == "odata.maxpagesize=5000"
    assert wire.names == (("parentaccountid", "_parentaccountid_value", "name"),)


@pytest.mark.parametrize(
    ("select", "formatted", "names"),
    [
        (["customerid"], False, NAMES),  # two targets: the annotation says which
        (None, False, NAMES),  # every column: multi-table lookups among them
        (["parentaccountid"], True, NAMES),  # formatted values are wanted anyway
        (["parentaccountid"], False, None),  # primary names unknown
    ],
)
def test_annotations_where_expand_cannot_do(
    select: list[str] | None, formatted: bool, names: dict[str, str] | None
) -> None:
    wire = wire_request(
        _table(),
        select=select,
        filter=None,
        orderby=None,
        top=None,
        expand=None,
        count=False,
        formatted=formatted,
        page_size=100,
        lookup_names=names,
    )
    assert "OData.Community.Display.V1.FormattedValue" in wire.prefer
    assert wire.names == ()
    assert "$expand" not in wire.params


def test_no_lookup_no_annotation_and_the_users_expand_is_kept() -> None:
    assert prefer_header(10, annotations=False) == "odata.maxpagesize=10"
    wire = wire_request(
        _table(),
        select=["name", "parentaccountid"],
        filter="name ne null",
        orderby=None,
        top=None,
        expand=None,
        count=False,
        formatted=False,
        page_size=5000,
        lookup_names=NAMES,
    )
    assert wire.params["$expand"] == "parentaccountid($select=name)"
    assert "include-annotations" not in wire.prefer
    assert (
        with_annotation(wire.prefer, "X.y")
        == 'odata.maxpagesize=5000,odata.include-annotations="X.y"'
    )
    assert with_annotation('p=1,odata.include-annotations="A"', "B") == (
        'p=1,odata.include-annotations="B,A"'
    )


def test_a_users_expand_is_kept_and_lookups_take_annotations() -> None:
    """Expanded rows may hold lookups, whose names only the annotations give."""
    wire = wire_request(
        _table(),
        select=["name", "parentaccountid"],
        filter="name ne null",
        orderby=None,
        top=None,
        expand="customerid_account($select=name)",
        count=False,
        formatted=False,
        page_size=5000,
        lookup_names=NAMES,
    )
    assert wire.params["$expand"] == "customerid_account($select=name)"
    assert wire.names == ()
    assert "FormattedValue" in wire.prefer and "lookuplogicalname" in wire.prefer


def test_names_move_from_the_expanded_row_to_the_lookup_label() -> None:
    rows = [
        {"_parentaccountid_value": "1", "parentaccountid": {"name": "A", "accountid": "1"}},
        {"_parentaccountid_value": None, "parentaccountid": None},
    ]
    names_from_expand(rows, (("parentaccountid", "_parentaccountid_value", "name"),))
    label = "_parentaccountid_value@OData.Community.Display.V1.FormattedValue"
    assert rows == [{"_parentaccountid_value": "1", label: "A"}, {"_parentaccountid_value": None}]


def _stamp(rng: random.Random) -> str:
    moment = dt.datetime(2020, 1, 1, tzinfo=dt.timezone.utc) + dt.timedelta(
        seconds=rng.randrange(3 * 365 * 86400)
    )
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _matches(condition: str, value: str | None) -> bool:
    """Evaluate the few shapes `sample_ranges` makes (`or` of `and`s of comparisons)."""

    def compare(text: str) -> bool:
        _, op, literal = text.split(" ")
        if literal == "null":
            return (value is None) == (op == "eq")
        if value is None:
            return False
        return {"lt": value < literal, "ge": value >= literal}[op]

    return any(
        all(compare(part.strip()) for part in alternative.split(" and "))
        for alternative in condition.split(" or ")
    )


def test_sample_ranges_cover_every_row_once_with_balanced_counts() -> None:
    rng = random.Random(7)
    table = [_stamp(rng) for _ in range(20_000)] + [None] * 30
    sample = [{"createdon": v} for v in table[:2000]]
    conditions = sample_ranges(sample, 8)
    assert conditions is not None and len(conditions) == 8
    counts = [0] * len(conditions)
    for value in table:
        hits = [i for i, c in enumerate(conditions) if _matches(c, value)]
        assert len(hits) == 1, (value, hits)
        counts[hits[0]] += 1
    assert max(counts) < 1.25 * min(counts), counts


def test_a_sample_ordered_by_createdon_cannot_balance() -> None:
    rng = random.Random(3)
    ordered = sorted(_stamp(rng) for _ in range(500))
    assert sample_ranges([{"createdon": v} for v in ordered], 4) is None
    assert sample_ranges([{"createdon": "2024-01-01T00:00:00Z"}] * 3, 4) is None
