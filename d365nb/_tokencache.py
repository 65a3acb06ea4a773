"""The persistent token cache: one owner-only file per environment, outside the notebooks.

msal's `SerializableTokenCache` is kept in memory and written back only when its state
changed (msal's own recipe).  The file is created with mode 0600 in a folder with mode
0700, written atomically (temp file + rename) so that two kernels never see half a file.
The file name is a hash of the authority, the client id and the resource, so that two
environments (or two sandboxes on different ports: msal keys its cache by bare host name)
never share tokens.

Every open tightens what it finds (file 0600, folder 0700) and every missing folder is
made 0700 whatever the umask (`private_dir`).  A cache that cannot be read (not JSON, a
section that is not a dict of entries, a directory in its place) never fails a
connection: it is moved aside (`<name>.corrupt-<time>`), logged on the `d365nb` logger,
and the user signs in again.

The cache holds refresh tokens: treat it as a credential.  It is never placed in the
working directory, so it cannot be committed next to a notebook.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import stat
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import msal
import platformdirs

__all__ = ["TokenCacheFile", "default_cache_dir", "private_dir"]


def default_cache_dir() -> Path:
    """The per-user folder for token caches (`D365NB_TOKEN_CACHE_DIR` overrides it)."""
    env = os.environ.get("D365NB_TOKEN_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    return Path(platformdirs.user_cache_dir("d365nb")) / "tokens"


_log = logging.getLogger("d365nb")

# msal's sections: each maps a key to one entry (a dict of strings).
_MSAL_SECTIONS = ("AccessToken", "RefreshToken", "IdToken", "Account", "AppMetadata")


def private_dir(path: Path) -> None:
    """Create `path` and every missing parent with mode 0700 whatever the umask (mkdir's
    mode is filtered by it), and tighten `path` itself if it exists with a looser mode."""
    missing: list[Path] = []
    folder = path
    while not folder.exists() and folder != folder.parent:
        missing.append(folder)
        folder = folder.parent
    for folder in reversed(missing):
        try:
            folder.mkdir(mode=0o700)
        except FileExistsError:  # made meanwhile (another kernel)
            pass
        os.chmod(folder, 0o700)
    if stat.S_IMODE(path.stat().st_mode) != 0o700:
        os.chmod(path, 0o700)


def _valid(data: Any) -> bool:
    """True for what msal and d365nb wrote: a dict of sections, each a dict of entries."""
    if not isinstance(data, dict):
        return False
    for name in _MSAL_SECTIONS:
        section = data.get(name, {})
        if not isinstance(section, dict) or not all(isinstance(e, dict) for e in section.values()):
            return False
    return isinstance(data.get("d365nb", {}), dict)


def _ensure_private_dir(path: Path) -> None:
    private_dir(path)


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
        if persist and (self.path.exists() or self.path.is_symlink()):
            self._load()

    def __repr__(self) -> str:
        return f"TokenCacheFile(path={str(self.path)!r}, persist={self.persist})"

    def _load(self) -> None:
        """Read the file, owner-only from now on; a corrupt one is moved aside (logged) and
        only costs a sign-in: a cache never fails a connection."""
        try:
            if self.path.is_file() and stat.S_IMODE(self.path.stat().st_mode) & 0o077:
                os.chmod(self.path, 0o600)  # found loose: tightened now, not at next write
            private_dir(self.path.parent)
            data = json.loads(self.path.read_text(encoding="utf-8"))
            if not _valid(data):
                raise ValueError("not a token cache (a section is not a dict of entries)")
            extra = dict(data.pop("d365nb", {}) or {})
            self.cache.deserialize(json.dumps(data))
        except (OSError, ValueError, TypeError, AttributeError, KeyError) as exc:
            self.cache = msal.SerializableTokenCache()
            self._extra = {}
            self._move_aside(exc)
            return
        self._extra = extra

    def _move_aside(self, error: Exception) -> None:
        aside = self.path.with_name(f"{self.path.name}.corrupt-{time.strftime('%Y%m%d-%H%M%S')}")
        try:
            os.replace(self.path, aside)
        except OSError:  # e.g. a directory at the path whose name is taken: try once more
            aside = aside.with_name(f"{aside.name}-{os.getpid()}")
            try:
                os.rename(self.path, aside)
            except OSError as exc:
                _log.warning(
                    "The token cache %s is unreadable (%s) and could not be moved aside (%s); "
                    "signing in without it.",
                    self.path,
                    type(error).__name__,
                    type(exc).__name__,
                )
                self.persist = False
                return
        _log.warning(
            "The token cache %s was unreadable (%s); moved aside to %s. Signing in again.",
            self.path,
            type(error).__name__,
            aside.name,
        )

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
