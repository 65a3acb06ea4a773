"""100,000 customers over HTTPS: the parallel read in key ranges equals the sequential one.

A sandbox of its own (F&O's 10,000-row pages, 100,000 customers across three companies;
seeding takes about a minute), shared by the tests of this module.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs

import pandas as pd
import pytest

from d365nb._fno_client import FnoConnection
from d365nb.sandbox import Sandbox, start

from .conftest import Seen, fno_connect, requests_seen

BIG = 100_000


@pytest.fixture(scope="module")
def big_sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    data_dir: Path = tmp_path_factory.mktemp("fno-big")
    with start(data_dir=data_dir, database=":memory:", rows=10, fno=True, fno_rows=BIG) as sb:
        yield sb


@pytest.fixture
def big(big_sandbox: Sandbox) -> Iterator[FnoConnection]:
    connection = fno_connect(big_sandbox)
    yield connection
    connection.close()


@pytest.fixture
def big_seen(big_sandbox: Sandbox) -> Iterator[Seen]:
    yield from requests_seen(big_sandbox)


def _range_reads(seen: Seen) -> list[str]:
    """The `$filter` of every key-range request the sandbox saw (not probes)."""
    out = []
    for request in seen():
        query = parse_qs(str(request["query"]))
        if request["path"] == "/data/CustomersV3" and "$orderby" in query and "$skip" not in query:
            out.append(query.get("$filter", [""])[0])
    return out


def _same(parallel: pd.DataFrame, sequential: pd.DataFrame) -> None:
    assert list(parallel.dtypes.astype(str)) == list(sequential.dtypes.astype(str))
    pd.testing.assert_frame_equal(parallel, sequential)


def test_100k_parallel_read_equals_sequential(big: FnoConnection, big_seen: Seen) -> None:
    parallel = big.read("CustomersV3", cross_company=True, progress=False)
    ranges = _range_reads(big_seen)
    sequential = big.read("CustomersV3", cross_company=True, parallel=False, progress=False)
    assert len(sequential) == BIG
    assert parallel["CustomerAccount"].is_unique and sequential["CustomerAccount"].is_unique
    _same(parallel, sequential)
    assert len(ranges) >= 3, ranges  # the first page, then the rest in ranges at once
    assert sum("CustomerAccount" in f for f in ranges) >= 2, ranges


def test_one_big_company_reads_in_key_ranges(big: FnoConnection, big_seen: Seen) -> None:
    parallel = big.read("CustomersV3", company="usmf", progress=False)
    ranges = _range_reads(big_seen)
    sequential = big.read("CustomersV3", company="usmf", parallel=False, progress=False)
    assert len(sequential) == BIG // 2
    _same(parallel, sequential)
    inside = [f for f in ranges if "CustomerAccount ge" in f or "CustomerAccount gt" in f]
    assert len(inside) >= 2, ranges  # one company, several ranges of its own keys
