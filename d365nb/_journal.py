"""Push attempts that did not finish, on disk: what makes a re-run create nothing twice.

Rows created without an id get one made by the client (uuid5 of the table, the push
*attempt* and the row), so a request sent again after a lost answer cannot create a
second copy.  Each push is a new attempt, so two pushes of identical new rows create two
rows each time; but a push that did not finish (Ctrl-C, the Stop button, a killed
kernel, rows whose answer never came) is recorded here, row by row (a fingerprint of the
row's index label and values -> its attempt id), until a later push settles those rows.
Pushing the same rows again re-uses their attempt, so their ids, and finds them.

One small JSON file per service and table in `state_dir()` (`D365NB_STATE_DIR`, else the
per-user state folder), owner-only, changed under a file lock and replaced atomically.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pandas as pd

from ._tokencache import private_dir

__all__ = [
    "Journal",
    "attempts_of",
    "fingerprints",
    "generated_id",
    "generated_ids",
    "state_dir",
]

_KEEP_SECONDS = 30 * 86400  # an attempt left open longer is forgotten


def state_dir() -> Path:
    """The per-user folder for unfinished push attempts (`D365NB_STATE_DIR` overrides)."""
    env = os.environ.get("D365NB_STATE_DIR")
    if env:
        return Path(env).expanduser() / "pushes"
    import platformdirs

    return Path(platformdirs.user_state_dir("d365nb", appauthor=False)) / "pushes"


class Journal:
    """The unfinished attempts of pushes to one table of one service.

    **Parameters:**

    * **service** - the Web API root; **table** - the table's logical name.
    * **directory** - where journals live (default `state_dir()`).
    """

    def __init__(self, service: str, table: str, *, directory: Path | None = None) -> None:
        digest = hashlib.sha256(f"{service.lower().rstrip('/')}\n{table}".encode()).hexdigest()
        self.path = (directory or state_dir()) / f"{digest[:24]}.json"

    def open_rows(self) -> dict[str, str]:
        """`{row fingerprint: attempt id}` of rows no push has settled yet."""
        try:
            data = orjson.loads(self.path.read_bytes())
            rows = data.get("rows") if isinstance(data, dict) else None
        except (OSError, ValueError):
            return {}
        if not isinstance(rows, dict):
            return {}
        now = time.time()
        return {
            str(fp): str(entry[0])
            for fp, entry in rows.items()
            if isinstance(entry, list)
            and len(entry) == 2
            and isinstance(entry[1], (int, float))
            and now - entry[1] < _KEEP_SECONDS
        }

    def record(self, rows: Mapping[str, str]) -> None:
        """Mark rows as sent by an attempt that has not finished (before they are sent)."""
        if rows:
            now = time.time()
            self._change(lambda current: current.update({fp: [a, now] for fp, a in rows.items()}))

    def settle(self, fingerprints: Iterable[str]) -> None:
        """Forget rows whose outcome is known now (landed, or refused by the service)."""
        gone = set(fingerprints)
        if gone:
            self._change(lambda current: [current.pop(fp, None) for fp in gone])

    def _change(self, edit: Any) -> None:
        try:
            private_dir(self.path.parent)
            with _locked(self.path.with_suffix(".lock")):
                try:
                    data = orjson.loads(self.path.read_bytes())
                    current = dict(data["rows"])
                except (OSError, ValueError, KeyError, TypeError):
                    current = {}
                now = time.time()
                current = {
                    fp: entry
                    for fp, entry in current.items()
                    if isinstance(entry, list)
                    and len(entry) == 2
                    and isinstance(entry[1], (int, float))
                    and now - entry[1] < _KEEP_SECONDS
                }
                edit(current)
                if not current:  # nothing open: no file (a lost unlink only re-checks rows)
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(self.path)
                    return
                fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=self.path.parent)
                try:
                    os.fchmod(fd, 0o600)
                    with os.fdopen(fd, "wb") as handle:
                        # One string, by orjson (json.dump writes piece by piece in
                        # Python: 20,000 rows took a tenth of a push).
                        handle.write(orjson.dumps({"rows": current}))
                        handle.flush()
                        os.fsync(handle.fileno())
                    os.replace(tmp, self.path)
                finally:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(tmp)
        except OSError:
            # A journal that cannot be written only loses the re-run guarantee, and the
            # report still carries every row's id (report.failed / report.remaining).
            return


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            import fcntl

            fcntl.flock(fd, fcntl.LOCK_EX)
        except ImportError:  # pragma: no cover - Windows: no lock, still atomic replaces
            pass
        yield
    finally:
        os.close(fd)


# -- ids and fingerprints of rows ----------------------------------------------------------


_ID_NAMESPACE = uuid.UUID("6f1d2c1e-7b7a-4d0e-9c55-d365b0b0c0de")
_ID_PREFIX = _ID_NAMESPACE.bytes


def generated_id(table: str, attempt: str, fingerprint: str) -> str:
    """The id a create of a row without one gets: uuid5 of (table, attempt, row
    fingerprint), new per push, the same when a row of an unfinished attempt is pushed
    again.  `str(uuid.uuid5(...))` without building a `UUID` (20,000 ids: a fifth of the
    time)."""
    name = f"{table}\x1f{attempt}\x1f{fingerprint}"
    digest = bytearray(hashlib.sha1(_ID_PREFIX + name.encode("utf-8")).digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x50  # version 5
    digest[8] = (digest[8] & 0x3F) | 0x80  # RFC 4122 variant
    h = digest.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def generated_ids(table: str, attempts: list[str], prints: list[str]) -> list[str]:
    """`generated_id(table, a, fp)` for each pair of `attempts` and `prints`: the SHA-1
    of the shared prefix is taken once per attempt and copied, the version and variant
    bits are set on every digest at once (20,000 ids: a third of the time)."""
    bases: dict[str, Any] = {}
    digests: list[bytes] = []
    for attempt, fp in zip(attempts, prints, strict=True):
        base = bases.get(attempt)
        if base is None:
            base = bases[attempt] = hashlib.sha1(_ID_PREFIX + f"{table}\x1f{attempt}\x1f".encode())
        h = base.copy()
        h.update(fp.encode("utf-8"))
        digests.append(h.digest())
    if not digests:
        return []
    raw = np.frombuffer(b"".join(digests), dtype=np.uint8).reshape(-1, 20)[:, :16].copy()
    raw[:, 6] = (raw[:, 6] & 0x0F) | 0x50  # version 5
    raw[:, 8] = (raw[:, 8] & 0x3F) | 0x80  # RFC 4122 variant
    text = raw.tobytes().hex()
    return [
        f"{text[i : i + 8]}-{text[i + 8 : i + 12]}-{text[i + 12 : i + 16]}-"
        f"{text[i + 16 : i + 20]}-{text[i + 20 : i + 32]}"
        for i in range(0, len(text), 32)
    ]


def attempts_of(
    frame: pd.DataFrame,
    pk: str,
    positions: list[int],
    attempt: str,
    earlier: Mapping[str, str],
    prints: list[str | None],
    attempts: list[str | None],
) -> None:
    """Fill `prints` and `attempts` at `positions`: each row's fingerprint and the attempt
    it belongs to (an unfinished earlier one that holds it, else this one)."""
    if not positions:
        return
    for i, fp in zip(positions, fingerprints(frame.iloc[positions], pk), strict=True):
        prints[i] = fp
        attempts[i] = earlier.get(fp, attempt)


def fingerprints(frame: pd.DataFrame, pk: str) -> list[str]:
    """Per row, a fingerprint of its index label and values (not its primary id): how a
    row pushed again is known to be the row of an unfinished attempt (`Journal`)."""
    values = frame.drop(columns=[pk], errors="ignore")
    try:
        hashes = pd.util.hash_pandas_object(values, index=True)
    except (TypeError, UnicodeError):  # lists of a multi-select column, lone surrogates
        hashes = pd.util.hash_pandas_object(values.map(repr), index=True)
    return [format(int(h), "016x") for h in hashes.to_numpy()]
