"""OData names and literals (`_literals`): what `_odata` and the query functions share."""

from __future__ import annotations

import pytest

from d365nb import ConfigError
from d365nb._literals import IDENTIFIER, check_name, json_array, literal


def test_identifiers() -> None:
    assert IDENTIFIER.match("_parentcustomerid_value")
    assert not IDENTIFIER.match("1name") and not IDENTIFIER.match("a-b")
    assert check_name("a/b_c", path=True) == "a/b_c"
    with pytest.raises(ConfigError, match="not a valid column name"):
        check_name("name eq 1")


def test_json_array_quotes_every_value_as_a_string() -> None:
    assert json_array(["a", 1, True]) == '["a","1","true"]'
    assert literal(["O'Brien"]) == '["O\'Brien"]'
    with pytest.raises(ConfigError, match="empty list"):
        json_array([])
    with pytest.raises(ConfigError, match="member of a list"):
        json_array([None])
