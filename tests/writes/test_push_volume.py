"""A large push: chunked, parallel, with a progress bar, every row accounted for."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest

from d365nb._batching import BULK_CHUNK, LOOKUP_ROWS, MIN_BULK_CHUNK, chunk_size
from d365nb._client import Connection
from d365nb._report import PushReport
from d365nb._sync import run_sync
from d365nb.sandbox import start
from d365nb.sandbox._connect import connect_to

pytestmark = pytest.mark.sandbox

# The size (fifty 1,000-row bulk chunks each way then; creates, then upserts by
# alternate key), now in chunks that fill the limiter's slots: ten of 5,000 at a dop of 4.
ROWS = 50_000


async def _limit(conn: Connection) -> int:
    return conn.limiter.limit


def test_large_push_is_chunked_and_complete(
    sandbox_data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    df = pd.DataFrame(
        {
            "name": [f"bulk {i:05}" for i in range(ROWS)],
            "accountnumber": [f"BULK-{i:05}" for i in range(ROWS)],
            "revenue": [float(i) for i in range(ROWS)],
            "numberofemployees": pd.array(range(ROWS), dtype="Int32"),
        }
    )
    with start(data_dir=sandbox_data_dir, database=":memory:", rows=5) as sb:
        with connect_to(sb) as conn:
            created = df.d365.push("accounts", mode="create", conn=conn, progress=True)
            limit = run_sync(_limit(conn))
            assert isinstance(created, PushReport)
            err = capsys.readouterr().err
            frame = created.frame.assign(revenue=lambda d: d["revenue"] + 0.5)
            updated = frame.d365.push("accounts", key="accountnumber", conn=conn, progress=False)
            back = conn.read("accounts", select=["accountnumber", "revenue"], progress=False)

    assert isinstance(updated, PushReport)
    assert created.counts["created"] == ROWS and created.rows["id"].is_unique
    # Chunked: one bulk action per chunk of up to BULK_CHUNK rows, as many as fill the
    # limiter's slots (the first chunks may go before the dop hint lowers the limit).
    assert math.ceil(ROWS / BULK_CHUNK) <= created.requests <= math.ceil(ROWS / MIN_BULK_CHUNK)
    assert "Pushing accounts" in err
    assert updated.counts["updated"] == ROWS
    # One UpsertMultiple per chunk, and one key look-up (a $batch of GETs) per 5,000 rows
    # for all of its chunks.
    size = chunk_size("UpsertMultiple", None, rows=ROWS, limit=limit)
    slices = math.ceil(ROWS / LOOKUP_ROWS)
    per_slice = math.ceil(LOOKUP_ROWS / size) if size < LOOKUP_ROWS else 1
    assert updated.requests == slices * per_slice + slices
    mine = back[back["accountnumber"].str.startswith("BULK-")]
    assert len(mine) == ROWS and mine["accountnumber"].is_unique
    assert (
        mine.sort_values("accountnumber")["revenue"].to_numpy() == df["revenue"].to_numpy() + 0.5
    ).all()
