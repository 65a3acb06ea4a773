"""`_odata`'s URL text: key segments, key filters, look-up URLs, read ranges, query strings."""

from __future__ import annotations

import json
import random
import string
import urllib.parse

from d365nb._odata import (
    and_filter,
    encode_query,
    entity_path,
    extreme_query,
    key_filter_literal,
    key_lookup_urls,
    key_segment,
    key_value,
    range_filters,
)

GUID = "00000000-0000-0000-0000-00000000abcd"


def test_key_values_are_quoted_by_column_kind() -> None:
    assert key_value("O'Brien & Co") == "'O''Brien%20%26%20Co'"
    assert key_value(42) == "42" and key_value(2.5) == "2.5" and key_value(3.0) == "3"
    assert key_value(True) == "true"
    assert key_value(GUID, lookup=True) == GUID == key_value(GUID, guid=True)
    assert key_value(GUID) == f"'{GUID}'"
    assert key_value(7, lookup=True) == "7"
    segment = key_segment([("accountnumber", key_value("A-1")), ("n", key_value(2))])
    assert entity_path("accounts", segment) == "accounts(accountnumber='A-1',n=2)"


def test_key_filter_literals_keep_guids_bare_except_in_text_columns() -> None:
    assert key_filter_literal("it's") == "'it''s'"
    assert key_filter_literal(5.0) == "5" and key_filter_literal(False) == "false"
    assert key_filter_literal(GUID) == GUID
    assert key_filter_literal(GUID, bare_guid=False) == f"'{GUID}'"
    # Not a GUID, so not bare: a trailing newline would otherwise end up in `$filter`.
    assert key_filter_literal(GUID + "\n") == f"'{GUID}\n'"


def test_lookup_urls_use_in_for_one_text_key_and_split_under_the_limit() -> None:
    keys = [{"accountnumber": f"A-{i:05d}"} for i in range(1000)]
    urls = key_lookup_urls("accounts", ["accountid", "accountnumber"], ["accountnumber"], keys)
    assert len(urls) > 1 and all(len(u) <= 7500 for u in urls)
    first = urllib.parse.unquote(urls[0])
    assert first.startswith(
        "accounts?$select=accountid,accountnumber&$filter=Microsoft.Dynamics.CRM.In("
        "PropertyName='accountnumber',PropertyValues=[\"A-00000\","
    )
    composite = key_lookup_urls(
        "contacts",
        ["contactid", "a", "b"],
        ["a", "b"],
        [{"a": GUID, "b": 1}],
        quoted_guids={"a"},
    )
    assert urllib.parse.unquote(composite[0]).endswith(f"$filter=(a eq '{GUID}' and b eq 1)")


def test_plain_keys_skip_quoting_yet_give_the_same_url() -> None:
    """Keys that JSON and URL encoding leave alone go in as `%22v%22` without the two
    encoders; every other key goes through them: the URLs equal the all-encoded ones."""
    rng = random.Random(15)
    alphabet = string.ascii_letters + string.digits + "-_.~ '&%/é€中+=?#@!$()[]{},;:<>|^`*"
    keys = [{"n": f"ACC-{i:07d}"} for i in range(3000)]
    keys += [{"n": "".join(rng.choices(alphabet, k=rng.randint(0, 12)))} for _ in range(3000)]
    urls = key_lookup_urls("accounts", ["accountid", "n"], ["n"], keys, limit=30000)
    quote = urllib.parse.quote
    terms = [quote(json.dumps(k["n"], ensure_ascii=False), safe="") for k in keys]
    assert "".join(urls).count("%22") == 2 * len(keys)  # every key, once, in quotes
    glue = quote(",")
    inner = [u.split("PropertyValues%3D%5B", 1)[1].rsplit("%5D)", 1)[0] for u in urls]
    assert glue.join(inner) == glue.join(terms)


def test_read_ranges_are_half_open_and_cover_nulls() -> None:
    filters = range_filters("createdon", "2024-01-01T00:00:00Z", "2024-01-01T00:00:04Z", 4)
    assert filters == [
        "createdon lt 2024-01-01T00:00:01Z",
        "createdon ge 2024-01-01T00:00:01Z and createdon lt 2024-01-01T00:00:02Z",
        "createdon ge 2024-01-01T00:00:02Z and createdon lt 2024-01-01T00:00:03Z",
        "createdon ge 2024-01-01T00:00:03Z",
        "createdon eq null",
    ]
    same = range_filters("createdon", "2024-01-01T00:00:00Z", "2024-01-01T00:00:09Z", 1)
    assert same == ["createdon ne null", "createdon eq null"]


def test_query_strings_and_filters_compose_as_the_reader_sends_them() -> None:
    assert encode_query({"$filter": "name eq 'a b'", "$top": "1"}) == (
        "$filter=name%20eq%20'a%20b'&$top=1"
    )
    assert and_filter(None, "x eq 1") == "x eq 1"
    assert and_filter("a eq 1 or b eq 2", "x eq 1") == "(a eq 1 or b eq 2) and (x eq 1)"
    query = extreme_query({"$filter": "a eq 1", "$count": "true"}, "createdon", "desc")
    assert query == {
        "$filter": "(a eq 1) and createdon ne null",
        "$select": "createdon",
        "$orderby": "createdon desc",
        "$top": "1",
    }
