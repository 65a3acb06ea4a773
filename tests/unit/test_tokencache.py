"""The token cache file: owner-only, written only on change, keyed per environment."""

from __future__ import annotations

import json
import stat
from pathlib import Path

from d365nb._tokencache import TokenCacheFile


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_file_and_folder_are_owner_only(tmp_path: Path) -> None:
    folder = tmp_path / "cache"
    cache = TokenCacheFile("https://a/t", "cid", "https://org", directory=folder)
    cache.set_extra("v1", {"refresh_token": "rt"})
    assert _mode(folder) == 0o700
    assert _mode(cache.path) == 0o600
    assert not cache.path.is_relative_to(Path.cwd())


def test_written_only_when_changed(tmp_path: Path) -> None:
    cache = TokenCacheFile("https://a/t", "cid", "https://org", directory=tmp_path)
    cache.save()
    assert not cache.path.exists()  # nothing changed, nothing written
    cache.cache.has_state_changed = True
    cache.save()
    assert cache.path.exists()


def test_environments_never_share_a_file(tmp_path: Path) -> None:
    a = TokenCacheFile("https://127.0.0.1:1111/t", "cid", "r", directory=tmp_path)
    b = TokenCacheFile("https://127.0.0.1:2222/t", "cid", "r", directory=tmp_path)
    c = TokenCacheFile("https://127.0.0.1:1111/t", "other", "r", directory=tmp_path)
    assert len({a.path, b.path, c.path}) == 3


def test_reload_and_clear(tmp_path: Path) -> None:
    first = TokenCacheFile("k", directory=tmp_path)
    first.set_extra("v1", {"refresh_token": "rt-1"})
    second = TokenCacheFile("k", directory=tmp_path)
    assert second.get_extra("v1") == {"refresh_token": "rt-1"}
    second.clear()
    assert not second.path.exists()
    assert TokenCacheFile("k", directory=tmp_path).get_extra("v1") is None


def test_corrupt_file_is_ignored(tmp_path: Path) -> None:
    cache = TokenCacheFile("k", directory=tmp_path)
    cache.path.write_text("{not json")
    again = TokenCacheFile("k", directory=tmp_path)
    assert again.get_extra("v1") is None
    again.set_extra("v1", {"x": 1})
    assert json.loads(again.path.read_text())["d365nb"]["v1"] == {"x": 1}


def test_memory_only_cache_writes_nothing(tmp_path: Path) -> None:
    cache = TokenCacheFile("k", directory=tmp_path, persist=False)
    cache.set_extra("v1", {"x": 1})
    assert cache.get_extra("v1") == {"x": 1}
    assert list(tmp_path.iterdir()) == []
