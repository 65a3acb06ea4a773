"""Pure helpers of the write path: key literals, value comparison, bulk-support detection."""

from __future__ import annotations

import pytest

from d365nb._exceptions import ODataError
from d365nb._keys import _literal
from d365nb._metadata import Attribute, Table
from d365nb._outcomes import (
    holds as _holds,
    navigation_map as _navigation_map,
    same as _same,
    unsupported as _unsupported,
)

_TEXT = Attribute("accountnumber", "String")
_NUMBER = Attribute("numberofemployees", "Integer")
_LOOKUP = Attribute("parentaccountid", "Lookup", targets=("account",))
_TABLE = Table(
    "account",
    "accounts",
    "accountid",
    attributes={"parentaccountid": _LOOKUP, "name": Attribute("name", "String")},
)


@pytest.mark.parametrize(
    ("value", "attribute", "text"),
    [
        ("A-1", _TEXT, "'A-1'"),
        ("O'Brien", _TEXT, "'O''Brien'"),
        ("a b/c", _TEXT, "'a%20b%2Fc'"),
        ("Zürich", _TEXT, "'Z%C3%BCrich'"),
        (42, _NUMBER, "42"),
        (True, None, "true"),
        ("00000000-0000-0000-0000-000000000001", _LOOKUP, "00000000-0000-0000-0000-000000000001"),
    ],
)
def test_key_literals(value: object, attribute: Attribute | None, text: str) -> None:
    assert _literal(value, attribute) == text


@pytest.mark.parametrize(
    ("sent", "have", "same"),
    [
        (1, 1.0000000001, True),
        (1.5, 2.5, False),
        ("2024-01-01T00:00:00Z", "2024-01-01T00:00:00.000Z", True),
        ("100000000,100000003", "100000003,100000000", True),
        ("a", "b", False),
        (None, None, True),
        (None, "", False),
        (False, 0, True),
    ],
)
def test_value_comparison(sent: object, have: object, same: bool) -> None:
    assert _same(sent, have) is same


def test_holds_compares_binds_with_lookup_values() -> None:
    navs = _navigation_map(_TABLE)
    body = {"name": "x", "parentaccountid@odata.bind": "/accounts(AB-1)"}

    assert _holds(body, {"name": "x", "_parentaccountid_value": "ab-1"}, navs)
    assert not _holds(body, {"name": "x", "_parentaccountid_value": None}, navs)
    assert not _holds(body, {"name": "y", "_parentaccountid_value": "ab-1"}, navs)
    assert _holds({"parentaccountid@odata.bind": None}, {"_parentaccountid_value": None}, navs)


@pytest.mark.parametrize(
    ("status", "code", "message", "unsupported"),
    [
        (404, "0x8006088a", "Resource not found for the segment 'CreateMultiple'.", True),
        (400, "0x80040265", "DeleteMultiple has not yet been implemented.", True),
        (405, "", "Method not allowed.", True),
        (404, "0x80040217", "Entity 'account' With Id = x Does Not Exist", False),
        (412, "0x80040237", "A record with matching key values already exists.", False),
        (400, "0x80044331", "A validation error occurred.", False),
    ],
)
def test_bulk_support_detection(status: int, code: str, message: str, unsupported: bool) -> None:
    assert _unsupported(ODataError(message, status=status, code=code)) is unsupported
