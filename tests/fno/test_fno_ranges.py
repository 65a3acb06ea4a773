"""Key-range partitions of F&O reads, and the Arrow page path, against the sandbox."""

from __future__ import annotations

from urllib.parse import parse_qs

import pandas as pd
import pytest

import d365nb
from d365nb import _fno_pages
from d365nb._fno_client import FnoConnection
from d365nb._fno_pages import convert_page
from d365nb._fno_ranges import KeyRange, cut_offsets
from d365nb._sync import run_sync
from d365nb.sandbox import Sandbox

from .conftest import PAGE_SIZE, Knobs, Seen, fno_connect


def _literal(name: str, value: object) -> str:
    return f"'{value}'" if isinstance(value, str) else str(value)


def _reads(seen: Seen, entity: str) -> list[dict[str, list[str]]]:
    """The query options of every GET of `entity`'s collection, in order."""
    return [
        parse_qs(str(r["query"]))
        for r in seen()
        if r["method"] == "GET" and r["path"] == f"/data/{entity}"
    ]


def test_cut_offsets_are_whole_pages() -> None:
    assert cut_offsets(100_000, 10_000, 8) == [30_000, 50_000, 70_000, 90_000]
    assert cut_offsets(100_000, 10_000, 16) == list(range(20_000, 100_000, 10_000))
    assert cut_offsets(60, 25, 4) == [50]
    assert cut_offsets(50, 25, 4) == []  # one page after the first: its next link will do
    assert cut_offsets(25, 25, 4) == []


def test_key_range_conditions() -> None:
    keys = ("dataAreaId", "CustomerAccount")
    same = KeyRange(keys, ("usmf", "US-000010"), ("usmf", "US-000020"))
    assert same.condition(_literal) == (
        "dataAreaId eq 'usmf' and CustomerAccount ge 'US-000010' and CustomerAccount lt 'US-000020'"
    )
    across = KeyRange(keys, ("demf", "DE-000005"), ("usmf", "US-000003"), inclusive=False)
    assert across.condition(_literal) == (
        "((dataAreaId gt 'demf') or (dataAreaId eq 'demf' and CustomerAccount gt 'DE-000005'))"
        " and ((dataAreaId lt 'usmf') or (dataAreaId eq 'usmf' and CustomerAccount lt 'US-000003'))"
    )
    assert KeyRange(("LineNumber",), (7,), None).condition(_literal) == "LineNumber ge 7"


def test_one_company_reads_in_key_ranges_equal_to_sequential(
    fresh: FnoConnection, seen: Seen
) -> None:
    sequential = fresh.read("CustomersV3", company="usmf", parallel=False, progress=False)
    parallel = fresh.read("CustomersV3", company="usmf", parallel=4, progress=False)
    assert len(sequential) == 60 > 2 * PAGE_SIZE
    pd.testing.assert_frame_equal(parallel, sequential)
    reads = _reads(seen, "CustomersV3")
    probes = [q for q in reads if "$skip" in q and q.get("$top") == ["1"]]
    ranges = [q for q in reads if "CustomerAccount ge" in q.get("$filter", [""])[0]]
    assert probes and ranges, reads
    assert all("dataAreaId eq 'usmf'" in q["$filter"][0] for q in ranges)
    assert all("dataAreaId gt" not in q["$filter"][0] for q in ranges)  # one company: no tuple


def test_cross_company_ranges_run_through_companies(fresh: FnoConnection, seen: Seen) -> None:
    sequential = fresh.read("CustomersV3", cross_company=True, parallel=False, progress=False)
    parallel = fresh.read("CustomersV3", cross_company=True, parallel=3, progress=False)
    pd.testing.assert_frame_equal(parallel, sequential)
    assert list(parallel["dataAreaId"].cat.categories) == ["demf", "usmf", "usrt"]
    filters = [q.get("$filter", [""])[0] for q in _reads(seen, "CustomersV3")]
    assert any("dataAreaId gt" in f or "dataAreaId lt" in f for f in filters), filters


def test_select_and_filter_keep_their_ranges_right(fresh: FnoConnection) -> None:
    options = {"select": ["OrganizationName", "CustomerGroupId"], "filter": "CreditLimit ge 0"}
    sequential = fresh.read(
        "CustomersV3", cross_company=True, parallel=False, progress=False, **options
    )
    parallel = fresh.read("CustomersV3", cross_company=True, parallel=8, progress=False, **options)
    assert len(parallel) > 2 * PAGE_SIZE
    pd.testing.assert_frame_equal(parallel, sequential)


def test_a_short_read_sends_no_probe(fresh: FnoConnection, seen: Seen) -> None:
    frame = fresh.read("CustomersV3", company="demf", progress=False)  # 24 rows: one page
    assert len(frame) == 24
    reads = _reads(seen, "CustomersV3")
    assert len(reads) == 1 and "$skip" not in reads[0]


@pytest.mark.parametrize("entity", ["CustomersV3", "ReleasedProductsV2", "SalesOrderLines"])
def test_arrow_page_path_equals_the_python_path(
    fresh: FnoConnection, entity: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    table = run_sync(fresh.catalog.table(entity))
    frame = fresh.read(entity, cross_company=True, parallel=False, progress=False)
    rows = [
        {k: None if pd.isna(v) else v for k, v in r.items()}
        for r in frame.drop(columns="_etag").astype(object).to_dict("records")
    ]
    # Wire shapes back: dates as text (one empty-date sentinel), an unknown enum member.
    for row in rows:
        for name, value in row.items():
            if isinstance(value, pd.Timestamp):
                row[name] = value.strftime("%Y-%m-%dT%H:%M:%SZ")
    dated = [n for n, a in table.attributes.items() if a.attribute_type == "DateTime"]
    rows[0][dated[0]] = "1900-01-01T12:00:00Z"
    enums = [n for n, a in table.attributes.items() if a.attribute_type == "Enum"]
    rows[1][enums[0]] = "NotAMember"
    columns = list(table.attributes)
    arrow = convert_page(rows, table, columns)
    monkeypatch.setattr(_fno_pages, "pyarrow_or_none", lambda: None)
    python = convert_page(rows, table, columns)
    pd.testing.assert_frame_equal(arrow, python)
    assert pd.isna(arrow.loc[0, dated[0]]) and pd.isna(arrow.loc[1, enums[0]])


def test_a_read_stopped_in_its_ranges_resumes_to_the_same_frame(
    fno_sandbox: Sandbox, knobs: Knobs
) -> None:
    short = fno_connect(fno_sandbox, retry=d365nb.RetryPolicy(max_attempts=1, max_total_wait=1))
    try:
        whole = short.read("CustomersV3", cross_company=True, parallel=False, progress=False)
        # Two ranges at once against a limit of one request at a time: one range gets 429.
        knobs(max_concurrent_requests=1, latency_ms=200)
        with pytest.raises(d365nb.PartialReadError) as err:
            short.read("CustomersV3", cross_company=True, parallel=2, progress=False)
        assert PAGE_SIZE <= len(err.value.partial) < len(whole)
        assert "range(s) unfinished" in str(err.value)
        knobs(max_concurrent_requests=52, latency_ms=0)
        pd.testing.assert_frame_equal(err.value.resume(), whole)
    finally:
        short.close()
