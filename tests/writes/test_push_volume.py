"""A large push: chunked, parallel, with a progress bar, every row accounted for."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from d365nb._report import PushReport
from d365nb.sandbox import start
from d365nb.sandbox._connect import connect_to

pytestmark = pytest.mark.sandbox

# The size: fifty bulk chunks each way (creates, then upserts by alternate key).
ROWS = 50_000


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
            assert isinstance(created, PushReport)
            err = capsys.readouterr().err
            frame = created.frame.assign(revenue=lambda d: d["revenue"] + 0.5)
            updated = frame.d365.push("accounts", key="accountnumber", conn=conn, progress=False)
            back = conn.read("accounts", select=["accountnumber", "revenue"], progress=False)

    assert isinstance(updated, PushReport)
    assert created.counts["created"] == ROWS and created.rows["id"].is_unique
    assert created.requests >= ROWS // 1000  # chunked: one bulk action per 1,000 rows
    assert "Pushing accounts" in err
    assert updated.counts["updated"] == ROWS
    # One UpsertMultiple per 1,000 rows, and one key look-up (a $batch of GETs) per
    # 5,000 rows for all of its chunks.
    assert updated.requests == ROWS // 1000 + ROWS // 5000
    mine = back[back["accountnumber"].str.startswith("BULK-")]
    assert len(mine) == ROWS and mine["accountnumber"].is_unique
    assert (
        mine.sort_values("accountnumber")["revenue"].to_numpy() == df["revenue"].to_numpy() + 0.5
    ).all()
