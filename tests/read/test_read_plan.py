"""The read plan wastes nothing: warm metadata, the first page kept, balanced ranges.

Requests are counted on the client at `Connection.arequest` (every request the catalog and
the reader send goes through it) and, for the budget, by the sandbox's service-protection
counters.  No timing is asserted.
"""

from __future__ import annotations

import json
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pandas as pd
import pytest

from d365nb import Connection
from d365nb.sandbox import Sandbox, start
from d365nb.sandbox._connect import connect_to
from tests._support.child import run_child

pytestmark = pytest.mark.sandbox

SELECT = ["name", "revenue", "industrycode", "parentaccountid", "primarycontactid", "createdon"]


def _recording(conn: Connection) -> list[tuple[str, dict[str, str]]]:
    """Every request `conn` sends from now on: (URL, headers), in order."""
    seen: list[tuple[str, dict[str, str]]] = []
    original = conn.arequest

    async def record(method: str, url: str, **kwargs: Any) -> Any:
        seen.append((url, dict(kwargs.get("headers") or {})))
        return await original(method, url, **kwargs)

    conn.arequest = record  # type: ignore[method-assign]
    return seen


def _child(script: str, sandbox: Sandbox, folder: Path) -> list[int]:
    """Run `script` in a new process with the sandbox's info and `folder`; its last line."""
    result: list[int] = run_child(script, sandbox, folder)
    return result


def _is_data(url: str) -> bool:
    return "/accounts" in url or url.startswith("accounts")


def _sorted(df: pd.DataFrame) -> pd.DataFrame:
    return df.sort_values("accountid", ignore_index=True)


@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    """1,200 accounts: 12 pages of 100, enough to split."""
    with start(data_dir=tmp_path_factory.mktemp("plan"), database=":memory:", rows=1200) as sb:
        yield sb


def test_warm_metadata_cache_sends_the_data_page_first(sandbox: Sandbox, tmp_path: Path) -> None:
    cold = connect_to(sandbox, metadata_cache=tmp_path)
    expected = cold.read("accounts", select=SELECT, page_size=10, progress=False)
    assert cold.catalog.requests > 0

    warm = connect_to(sandbox, metadata_cache=tmp_path)
    seen = _recording(warm)
    got = warm.read("accounts", select=SELECT, page_size=10, progress=False)
    first_data = next(i for i, (url, _) in enumerate(seen) if _is_data(url))
    assert first_data < 3, "at most 3 requests before the first data page"
    assert warm.catalog.requests == 0, "metadata came from the cache"
    pages = -(-len(got) // 10)
    ranges = sum(1 for url, _ in seen if "accountid%20gt%20" in url)
    # Every request is a data page: the first, then each range's pages (each range may end
    # with a partial page); nothing discarded, no bounds, no count.
    assert len(seen) <= pages + ranges
    pd.testing.assert_frame_equal(_sorted(got), _sorted(expected))


def test_metadata_cache_is_shared_across_connections_and_processes(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    first = connect_to(sandbox, metadata_cache=tmp_path)
    first.read("accounts", select=["name"], top=1, progress=False)
    assert first.catalog.requests > 0
    second = connect_to(sandbox, metadata_cache=tmp_path)
    second.read("accounts", select=["name"], top=1, progress=False)
    assert second.catalog.requests == 0
    assert list(tmp_path.glob("*.json")), "the cache is on disk"

    script = (
        "import json, sys\n"
        "import d365nb.sandbox\n"
        "info, folder = json.loads(sys.argv[1]), sys.argv[2]\n"
        "conn = d365nb.sandbox.connect(info, metadata_cache=folder)\n"
        "df = conn.read('accounts', select=['name', 'parentaccountid'], progress=False)\n"
        "print(json.dumps([conn.catalog.requests, len(df)]))\n"
        "conn.close()\n"
    )

    def child(folder: Path) -> list[int]:
        return _child(script, sandbox, folder)

    warm_requests, rows = child(tmp_path)
    assert warm_requests == 0 and rows > 0
    cold_requests, _ = child(tmp_path / "empty")
    assert cold_requests > 0


def test_metadata_version_change_ttl_and_refresh_fetch_again(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    conn = connect_to(sandbox, metadata_cache=tmp_path)
    expected = conn.read("accounts", select=SELECT, progress=False)
    fetched = conn.catalog.requests
    assert fetched > 0

    # The service's metadata moved on since the table was cached: fetched again, same rows.
    entry = conn.catalog._entry()["details"]["account"]
    assert entry["version"] is not None, "the first read recorded the metadata version"
    entry["version"] = "stale"
    got = conn.read("accounts", select=SELECT, progress=False)
    assert conn.catalog.requests > fetched
    pd.testing.assert_frame_equal(_sorted(got), _sorted(expected))

    again = conn.catalog.requests
    conn.read("accounts", select=["name"], progress=False)
    assert conn.catalog.requests == again, "a matching version keeps the cache"
    conn.read("accounts", select=["name"], refresh_metadata=True, progress=False)
    assert conn.catalog.requests > again, "refresh_metadata=True fetches"

    expired = connect_to(sandbox, metadata_cache=tmp_path)
    expired.catalog.ttl = 0
    expired.read("accounts", select=["name"], progress=False)
    assert expired.catalog.requests > 0, "past the TTL the cache is not used"


def test_parallel_rows_are_identical_to_a_sequential_read(big: Sandbox, tmp_path: Path) -> None:
    conn = connect_to(big, metadata_cache=tmp_path)
    sequential = conn.read("accounts", select=SELECT, page_size=100, parallel=False, progress=False)
    seen = _recording(conn)
    parallel = conn.read("accounts", select=SELECT, page_size=100, progress=False)
    assert len(parallel) == 1200 and parallel["accountid"].is_unique
    pd.testing.assert_frame_equal(_sorted(parallel), _sorted(sequential))
    ranges = [url for url, _ in seen if "accountid%20gt%20" in url]
    assert ranges, "the read was split after its first page"
    assert not any("orderby" in url for url, _ in seen), "no bounds: the first page was the sample"
    for split in (3, 7):
        other = conn.read("accounts", select=SELECT, page_size=100, parallel=split, progress=False)
        pd.testing.assert_frame_equal(_sorted(other), _sorted(sequential))
    everything = conn.read("accounts", page_size=100, progress=False)
    alone = conn.read("accounts", page_size=100, parallel=False, progress=False)
    pd.testing.assert_frame_equal(_sorted(everything), _sorted(alone))


@pytest.mark.parametrize("hint", [3, 6])
def test_parallel_true_makes_one_range_per_request_the_service_allows(
    hint: int, tmp_path: Path
) -> None:
    """`parallel=True` cuts the rest of the table into as many ranges as the service's
    `x-ms-dop-hint` allows at once (as `read()`'s docstring says), each with its own filter."""
    with start(data_dir=tmp_path / "data", database=":memory:", rows=1200, dop_hint=hint) as sb:
        conn = connect_to(sb, metadata_cache=tmp_path)
        seen = _recording(conn)
        df = conn.read("accounts", select=["name", "createdon"], page_size=100, progress=False)
    assert len(df) == 1200 and df["accountid"].is_unique
    filters = {
        parse_qs(urlsplit(url).query).get("$filter", [""])[0]
        for url, _ in seen
        if "accountid%20gt%20" in url
    }
    assert len(filters) == hint, sorted(filters)


def test_lookup_names_come_by_expand_without_formatted_values(big: Sandbox, tmp_path: Path) -> None:
    conn = connect_to(big, metadata_cache=tmp_path)
    labelled = conn.read("accounts", select=SELECT, formatted=True, page_size=500, progress=False)
    seen = _recording(conn)
    df = conn.read("accounts", select=SELECT, page_size=500, progress=False)
    for url, headers in seen:
        assert "FormattedValue" not in headers.get("Prefer", "")
        assert "$expand=parentaccountid(" in url and "primarycontactid(" in url
    for column in ("parentaccountid", "primarycontactid"):
        for suffix in ("", "_name", "_table"):
            name = column + suffix
            left, right = _sorted(df)[name], _sorted(labelled)[name]
            assert left.astype(str).tolist() == right.astype(str).tolist(), name
    assert _sorted(df)["primarycontactid_name"].notna().any()


def test_a_low_request_budget_keeps_the_read_sequential(big: Sandbox, tmp_path: Path) -> None:
    conn = connect_to(big, metadata_cache=tmp_path)
    expected = conn.read("accounts", select=["name"], page_size=100, parallel=False, progress=False)
    context = ssl.create_default_context(cafile=big.ca_cert)
    url = f"{big.base_url}/_sandbox/knobs/"
    with httpx.Client(verify=context, trust_env=False, timeout=30) as knobs:
        original = knobs.get(url).json()
        knobs.post(url, json={"max_requests_per_window": 60}).raise_for_status()
        knobs.delete(url).raise_for_status()  # counters cleared: 60 left in the window
        try:
            throttled = connect_to(big, metadata_cache=tmp_path)
            seen = _recording(throttled)
            got = throttled.read("accounts", select=["name"], page_size=100, progress=False)
        finally:
            knobs.post(url, json=original).raise_for_status()
            knobs.delete(url).raise_for_status()
    assert not any("accountid%20gt%20" in u for u, _ in seen), "no ranges on a low budget"
    assert len(seen) == 12, "one request per page, nothing else"
    pd.testing.assert_frame_equal(_sorted(got), _sorted(expected))


def test_cold_metadata_is_two_requests_and_the_same_as_one_by_one(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    from d365nb._sync import run_sync

    batched = connect_to(sandbox, metadata_cache=tmp_path / "a")
    table = run_sync(batched.catalog.table("accounts"))
    assert batched.catalog.requests == 2, "the list of tables, then one $batch"

    single = connect_to(sandbox, metadata_cache=tmp_path / "b")

    async def no_batch(urls: list[str]) -> None:
        return None

    single.catalog._batch = no_batch  # type: ignore[method-assign,assignment]
    alone = run_sync(single.catalog.table("account"))
    assert single.catalog.requests > 2
    assert alone == table


def test_a_table_or_column_newer_than_the_cache_is_fetched(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    warm = connect_to(sandbox, metadata_cache=tmp_path)
    warm.read("accounts", select=["name", "revenue"], top=1, progress=False)
    entry = warm.catalog._entry()
    # As if the cache was written before the table, and before its `revenue` column.
    entry["tables"]["value"] = [
        t for t in entry["tables"]["value"] if t["LogicalName"] != "account"
    ]
    for body in entry["details"]["account"]["bodies"].values():
        if isinstance(body, dict) and isinstance(body.get("value"), list):
            body["value"] = [a for a in body["value"] if a.get("LogicalName") != "revenue"]
    later = connect_to(sandbox, metadata_cache=tmp_path)
    df = later.read("accounts", select=["name", "revenue"], top=3, progress=False)
    assert list(df.columns[:3]) == ["accountid", "name", "revenue"] and len(df) == 3
    assert later.catalog.requests >= 2


def test_a_new_process_starts_at_the_dop_hint_seen_before(tmp_path: Path) -> None:
    """The service's `x-ms-dop-hint` is kept with the metadata: a new process's first
    requests go at that concurrency, not at the cap (which the first answer would cut)."""
    script = (
        "import json, sys\n"
        "import d365nb.sandbox\n"
        "from d365nb._sync import run_sync\n"
        "info, folder = json.loads(sys.argv[1]), sys.argv[2]\n"
        "conn = d365nb.sandbox.connect(info, metadata_cache=folder, max_concurrency=16)\n"
        "async def limit():\n"
        "    return conn.limiter.limit\n"
        "before = run_sync(limit())\n"
        "conn.read('accounts', select=['name'], top=1, progress=False)\n"
        "print(json.dumps([before, run_sync(limit())]))\n"
        "conn.close()\n"
    )
    with start(data_dir=tmp_path / "data", database=":memory:", rows=10, dop_hint=3) as sb:

        def child(folder: Path) -> list[int]:
            return _child(script, sb, folder)

        assert child(tmp_path / "cache") == [16, 3]  # nothing known: the cap, then the hint
        assert child(tmp_path / "cache") == [3, 3]  # known: from the first request on
        assert child(tmp_path / "other") == [16, 3]  # another cache knows nothing


@pytest.mark.parametrize("stored", ["3", 0, -2, True, 2.5, None, "not json"])
def test_an_odd_or_corrupt_dop_hint_in_the_cache_is_ignored(
    sandbox: Sandbox, tmp_path: Path, stored: Any
) -> None:
    """The cached hint is only used when it is a whole number >= 1; anything else (a hand
    edit, another version's file, a torn write) starts at the cap, as with no cache."""
    from d365nb._sync import run_sync

    first = connect_to(sandbox, metadata_cache=tmp_path / "first")
    first.read("accounts", select=["name"], top=1, progress=False)
    path = first.catalog.path
    assert path is not None and isinstance(json.loads(path.read_text())["dop_hint"], int)
    first.close()
    folder = tmp_path / "second"
    folder.mkdir()
    if stored == "not json":
        (folder / path.name).write_text(path.read_text()[:-40])
    else:
        data = json.loads(path.read_text())
        data["dop_hint"] = stored
        (folder / path.name).write_text(json.dumps(data))
    again = connect_to(sandbox, metadata_cache=folder, max_concurrency=16)

    async def limit() -> int:
        return again.limiter.limit

    assert again.catalog.dop_hint is None
    assert run_sync(limit()) == 16
    assert len(again.read("accounts", select=["name"], top=3, progress=False)) == 3
    again.close()
