"""Issue 16 items 6 and 7: a corrupt token cache never breaks a connection (it is moved
aside, logged, and the user signs in again); cache files and folders are owner-only on
every open, whatever the umask."""

from __future__ import annotations

import json
import logging
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from d365nb.sandbox import Sandbox
from d365nb.sandbox._connect import connect_to
from tests._support.ledger import record

pytestmark = pytest.mark.sandbox

AREA = "reliability/nothing lost"


@pytest.fixture
def open_umask() -> Iterator[None]:
    previous = os.umask(0)
    try:
        yield
    finally:
        os.umask(previous)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _cache_file(sandbox: Sandbox, folder: Path) -> Path:
    with connect_to(sandbox, token_cache=folder) as conn:
        conn.whoami()
    (path,) = [p for p in folder.iterdir() if p.suffix == ".json"]
    return path


CORRUPTIONS = {
    "not json": lambda p: p.write_text("{not json"),
    "a list": lambda p: p.write_text("[1, 2]"),
    "non-dict section": lambda p: p.write_text(json.dumps({"AccessToken": [1, 2]})),
    "bad msal entry": lambda p: p.write_text(json.dumps({"RefreshToken": {"k": "text"}})),
    "bad d365nb section": lambda p: p.write_text(json.dumps({"d365nb": ["v1"]})),
    "a directory": lambda p: (p.unlink(), p.mkdir()),
}


@pytest.mark.parametrize("kind", list(CORRUPTIONS))
def test_a_corrupt_cache_is_moved_aside_and_the_user_signs_in_again(
    sandbox: Sandbox, tmp_path: Path, kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    path = _cache_file(sandbox, tmp_path)
    CORRUPTIONS[kind](path)
    caplog.set_level(logging.WARNING, logger="d365nb")
    worked = 0
    for _ in range(2):  # the second connection finds a good cache again
        with connect_to(sandbox, token_cache=tmp_path) as conn:
            conn.whoami()
            worked += 1
    aside = [p for p in tmp_path.iterdir() if ".corrupt-" in p.name]
    record(AREA, f"corrupt token cache: {kind}", faults=1, operations=2, checks=1)
    assert worked == 2
    assert len(aside) == 1, list(tmp_path.iterdir())
    assert path.is_file() and isinstance(json.loads(path.read_text()), dict)
    assert any("moved aside" in r.getMessage() for r in caplog.records)


def test_a_loose_cache_is_tightened_on_open_and_folders_are_0700_under_umask_0(
    sandbox: Sandbox, tmp_path: Path, open_umask: None
) -> None:
    folder = tmp_path / "deep" / "er" / "tokens"
    path = _cache_file(sandbox, folder)
    os.chmod(path, 0o644)
    os.chmod(folder, 0o755)
    with connect_to(sandbox, token_cache=folder) as conn:  # opens, uses the token, writes nothing
        conn.whoami()
        loose = _mode(path), _mode(folder)
    created = [tmp_path / "deep", tmp_path / "deep" / "er", folder]
    record(AREA, "token cache modes on open", faults=2, operations=1, checks=len(created) + 1)
    assert loose == (0o600, 0o700)
    assert [oct(_mode(p)) for p in created] == [oct(0o700)] * len(created)
