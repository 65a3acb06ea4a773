"""Folders d365nb creates are owner-only whatever the umask (issue 16, item 7).

Under `umask 000` a plain `mkdir(parents=True)` makes every missing parent 0777; the
profile folder, the token cache, the journal and the sandbox's data folder (CA key,
signing key) must come out 0700, parents included.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from d365nb._profile import load_profile, write_profile
from d365nb._tokencache import private_dir
from d365nb.sandbox import start
from d365nb.sandbox._certs import ensure_private_dir

pytestmark = pytest.mark.skipif(os.name != "posix", reason="POSIX file modes")


@pytest.fixture
def umask_000() -> Iterator[None]:
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


def _modes(top: Path, leaf: Path) -> dict[str, int]:
    out = {}
    folder = leaf
    while True:
        out[str(folder.relative_to(top))] = stat.S_IMODE(folder.stat().st_mode)
        if folder == top / folder.relative_to(top).parts[0]:
            return out
        folder = folder.parent


def test_profile_folders_are_0700_under_umask_000(tmp_path: Path, umask_000: None) -> None:
    file = tmp_path / "a" / "b" / "profiles.toml"
    write_profile("work", {"service_url": "https://contoso.crm.dynamics.com"}, path=file)
    assert load_profile("work", path=file)["service_url"] == "https://contoso.crm.dynamics.com"
    assert set(_modes(tmp_path, file.parent).values()) == {0o700}
    assert stat.S_IMODE(file.stat().st_mode) == 0o600


def test_private_dir_helpers_make_every_missing_parent_0700(
    tmp_path: Path, umask_000: None
) -> None:
    client, sandbox = tmp_path / "c1" / "c2" / "c3", tmp_path / "s1" / "s2" / "s3"
    private_dir(client)
    ensure_private_dir(sandbox)
    assert set(_modes(tmp_path, client).values()) == {0o700}
    assert set(_modes(tmp_path, sandbox).values()) == {0o700}


def test_sandbox_data_folder_is_0700_under_umask_000(tmp_path: Path, umask_000: None) -> None:
    data = tmp_path / "x" / "y" / "sandbox"
    with start(data_dir=data, database=":memory:", rows=5) as sb:
        key_files = [p for p in data.rglob("*") if p.is_file() and "key" in p.name]
        assert Path(sb.ca_cert).is_file()
    assert set(_modes(tmp_path, data).values()) == {0o700}
    assert key_files and all(stat.S_IMODE(p.stat().st_mode) & 0o077 == 0 for p in key_files)
