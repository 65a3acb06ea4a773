"""The persistent token cache: one owner-only file per environment, outside the notebooks.

msal's `SerializableTokenCache` is kept in memory and written back only when its state
changed (msal's own recipe).  The file is created with mode 0600 in a folder with mode
0700, written atomically (temp file + rename) so that two kernels never see half a file.
The file name is a hash of the authority, the client id and the resource, so that two
environments (or two sandboxes on different ports: msal keys its cache by bare host name)
never share tokens.

The cache holds refresh tokens: treat it as a credential.  It is never placed in the
working directory, so it cannot be committed next to a notebook.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import threading
from pathlib import Path
from typing import Any

import msal
import platformdirs

__all__ = ["TokenCacheFile", "default_cache_dir"]


def default_cache_dir() -> Path:
    """The per-user folder for token caches (`D365NB_TOKEN_CACHE_DIR` overrides it)."""
    env = os.environ.get("D365NB_TOKEN_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    return Path(platformdirs.user_cache_dir("d365nb")) / "tokens"


def _ensure_private_dir(path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True)
    # mkdir's mode is filtered by the umask; set it explicitly.
    os.chmod(path, 0o700)


class TokenCacheFile:
    """An msal token cache backed by an owner-only JSON file.

    **Parameters:**

    * **key** - the parts that identify one environment (authority, client id, resource).
    * **directory** - where cache files live; `None` for `default_cache_dir()`.
    * **persist** - `False` keeps the cache in memory only.
    """

    def __init__(self, *key: str, directory: Path | None = None, persist: bool = True):
        digest = hashlib.sha256("\n".join(k.lower().rstrip("/") for k in key).encode())
        self.persist = persist
        self.path = (directory or default_cache_dir()) / f"{digest.hexdigest()[:24]}.json"
        self.cache = msal.SerializableTokenCache()
        self._lock = threading.Lock()
        self._extra: dict[str, Any] = {}
        if persist and self.path.exists():
            self._load()

    def __repr__(self) -> str:
        return f"TokenCacheFile(path={str(self.path)!r}, persist={self.persist})"

    def _load(self) -> None:
        try:
            text = self.path.read_text(encoding="utf-8")
            data = json.loads(text)
        except (OSError, ValueError):
            # A corrupt or unreadable cache only costs a sign-in; never fail on it.
            return
        if isinstance(data, dict):
            self._extra = dict(data.pop("d365nb", {}) or {})
            self.cache.deserialize(json.dumps(data))

    def get_extra(self, name: str) -> Any:
        """A value d365nb keeps beside msal's entries (v1 refresh tokens)."""
        with self._lock:
            return self._extra.get(name)

    def set_extra(self, name: str, value: Any) -> None:
        """Store (or with `None`, remove) a value beside msal's entries and save."""
        with self._lock:
            if value is None:
                self._extra.pop(name, None)
            else:
                self._extra[name] = value
            self._write()

    def save(self) -> None:
        """Write the cache if msal says it changed."""
        with self._lock:
            if self.cache.has_state_changed:
                self._write()
                self.cache.has_state_changed = False

    def clear(self) -> None:
        """Forget every token, in memory and on disk."""
        with self._lock:
            self.cache = msal.SerializableTokenCache()
            self._extra = {}
            if self.persist:
                try:
                    self.path.unlink()
                except FileNotFoundError:
                    pass

    def _write(self) -> None:
        if not self.persist:
            return
        _ensure_private_dir(self.path.parent)
        data = json.loads(self.cache.serialize() or "{}")
        if self._extra:
            data["d365nb"] = self._extra
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=self.path.parent)
        try:
            os.fchmod(fd, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump(data, handle)
            os.replace(tmp, self.path)
        except BaseException:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
            raise
