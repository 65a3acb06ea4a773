"""`_journal`: unfinished push attempts on disk, owner-only, forgiving of damage."""

from __future__ import annotations

import stat
from pathlib import Path

from d365nb._journal import Journal


def test_rows_are_recorded_until_settled_and_a_damaged_file_costs_nothing(
    tmp_path: Path,
) -> None:
    journal = Journal("https://org.example/api/data/v9.2/", "account", directory=tmp_path)
    assert journal.open_rows() == {}
    journal.record({"f1": "a1", "f2": "a1"})
    again = Journal("https://ORG.example/api/data/v9.2", "account", directory=tmp_path)
    assert again.open_rows() == {"f1": "a1", "f2": "a1"}  # another kernel sees them
    assert Journal("https://org.example/", "contact", directory=tmp_path).open_rows() == {}
    again.settle(["f1"])
    assert journal.open_rows() == {"f2": "a1"}
    assert stat.S_IMODE(journal.path.stat().st_mode) == 0o600
    journal.path.write_text("{not json")
    assert journal.open_rows() == {}
    journal.record({"f3": "a2"})
    assert journal.open_rows() == {"f3": "a2"}


def test_a_journal_with_nothing_open_leaves_no_file(tmp_path: Path) -> None:
    journal = Journal("https://org.example/api/data/v9.2/", "account", directory=tmp_path)
    journal.record({"f1": "a1", "f2": "a2"})
    journal.settle(["f1"])
    assert journal.path.exists() and journal.open_rows() == {"f2": "a2"}
    journal.settle(["f2"])  # the last open row: the file goes (no write, no fsync)
    assert not journal.path.exists() and journal.open_rows() == {}
    journal.settle(["f2"])  # settling again is harmless
    journal.record({"f3": "a3"})
    assert journal.open_rows() == {"f3": "a3"}
