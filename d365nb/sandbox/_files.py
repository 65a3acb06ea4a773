"""File columns: upload (in one request or in chunks), download and delete.

```
PATCH  {set}({id})/{col}                 the whole file; x-ms-file-name names it
PATCH  {set}({id})/{col}                 x-ms-transfer-mode: chunked -> 200, Location with
                                         ?sessiontoken=..., x-ms-chunk-size
PATCH  {Location}                        Content-Range: bytes a-b/total -> 206, 204 at the end
GET    {set}({id})/{col}/$value          the bytes (Range: bytes=a-b -> 206)
DELETE {set}({id})/{col}                 the file
```

[MS] WA/file-column-data ("Upload files", "Download files", "Delete files").  The column
holds the file's id; the bytes live in the store's `_files` table.
"""

from __future__ import annotations

import re
import secrets
import threading
import uuid
from dataclasses import dataclass, field

from ._errors import ApiError
from ._exchange import Call, Reply
from ._model import Attribute, Table
from ._store import Store

__all__ = ["CHUNK_SIZE", "FileColumns"]

#: The chunk size the service recommends in `x-ms-chunk-size` (4 MB).
CHUNK_SIZE = 4 * 1024 * 1024
_RANGE = re.compile(r"^bytes (\d+)-(\d+)/(\d+)$")
_WANTED = re.compile(r"^bytes=(\d+)-(\d*)$")


@dataclass
class _Session:
    table: Table
    row_id: str
    attr: Attribute
    name: str
    parts: dict[int, bytes] = field(default_factory=dict)
    received: int = 0


class FileColumns:
    """The file-column endpoints of one sandbox's Web API.

    **Parameters:**

    * **store** - the sandbox's database.
    """

    def __init__(self, store: Store) -> None:
        self.store = store
        self._sessions: dict[str, _Session] = {}
        self._lock = threading.Lock()

    def handle(self, call: Call, table: Table, row_id: str, attr: Attribute, sub: str) -> Reply:
        """Answer a request on the file column `attr` of row `row_id` (`sub`: `""`/`$value`)."""
        if sub == "$value":
            if call.method != "GET":
                raise _not_allowed(call)
            return self._download(call, table, row_id, attr)
        if sub:
            raise ApiError(404, "0x8006088a", f"Resource not found for the segment '{sub}'.")
        if call.method == "DELETE":
            self._store_file(table, row_id, attr, None, None)
            return Reply(204)
        if call.method != "PATCH":
            raise _not_allowed(call)
        token = call.params.get("sessiontoken")
        if token is not None:
            return self._chunk(call, token)
        existing = self._file(table, row_id, attr)
        if call.headers.get("if-none-match", "").strip() == "null" and existing is not None:
            # [UNVERIFIED] the code; the service refuses to replace a file under this header.
            raise ApiError(412, "0x80060882", f"The column '{attr.name}' already has a file.")
        name = call.headers.get("x-ms-file-name") or call.params.get("x-ms-file-name") or "file"
        if call.headers.get("x-ms-transfer-mode", "").lower() == "chunked":
            token = secrets.token_urlsafe(24)
            with self._lock:
                self._sessions[token] = _Session(table, row_id, attr, name)
            location = f"{call.root}{table.entity_set}({row_id})/{attr.name}?sessiontoken={token}"
            return Reply(200, [("Location", location), ("x-ms-chunk-size", str(CHUNK_SIZE))])
        self._store_file(table, row_id, attr, name, call.body)
        return Reply(204)

    def _chunk(self, call: Call, token: str) -> Reply:
        with self._lock:
            session = self._sessions.get(token)
        if session is None:
            # [UNVERIFIED] the status and code for an unknown or finished session.
            raise ApiError(400, "0x80060888", "The upload session token is not valid.")
        m = _RANGE.match(call.headers.get("content-range", ""))
        if m is None:
            raise ApiError(400, "0x80060888", "Each chunk needs Content-Range: bytes a-b/total.")
        start, end, total = (int(g) for g in m.groups())
        if end - start + 1 != len(call.body) or end >= total:
            raise ApiError(400, "0x80060888", "Content-Range does not match the chunk sent.")
        with self._lock:
            if start not in session.parts:
                session.received += len(call.body)
            session.parts[start] = call.body
            done = session.received >= total
            if done:
                self._sessions.pop(token, None)
        if not done:
            return Reply(206)
        data = b"".join(session.parts[k] for k in sorted(session.parts))[:total]
        self._store_file(session.table, session.row_id, session.attr, session.name, data)
        return Reply(204)

    def _download(self, call: Call, table: Table, row_id: str, attr: Attribute) -> Reply:
        found = self._file(table, row_id, attr)
        if found is None:
            # [UNVERIFIED] the message for an empty file column.
            raise ApiError(404, "0x80040217", f"No file attachment found for '{attr.name}'.")
        name, data = found
        headers = [
            ("Content-Type", "application/octet-stream"),
            ("x-ms-file-name", name),
            ("x-ms-file-size", str(len(data))),
        ]
        wanted = _WANTED.match(call.headers.get("range", ""))
        if wanted is None:
            return Reply(200, headers, data)
        first = int(wanted.group(1))
        last = min(int(wanted.group(2) or len(data) - 1), len(data) - 1)
        headers.append(("Content-Range", f"bytes {first}-{last}/{len(data)}"))
        return Reply(206, headers, data[first : last + 1])

    def _file(self, table: Table, row_id: str, attr: Attribute) -> tuple[str, bytes] | None:
        rows = self.store.query(
            "SELECT name, data FROM _files WHERE entity = ? AND id = ? AND col = ?",
            [table.logical, row_id, attr.name],
        )
        return (str(rows[0][0]), bytes(rows[0][1])) if rows else None

    def _store_file(
        self, table: Table, row_id: str, attr: Attribute, name: str | None, data: bytes | None
    ) -> None:
        file_id = None if data is None else str(uuid.uuid4())
        with self.store.atomic():
            self.store.execute(
                "DELETE FROM _files WHERE entity = ? AND id = ? AND col = ?",
                [table.logical, row_id, attr.name],
            )
            if data is not None:
                self.store.execute(
                    "INSERT INTO _files VALUES (?, ?, ?, ?, ?)",
                    [table.logical, row_id, attr.name, name, data],
                )
            self.store.execute(
                f'UPDATE "{table.entity_set}" SET "{attr.column}" = ?, versionnumber = ? '
                f'WHERE "{table.primary_id}" = ?',
                [file_id, self.store.next_version(), row_id],
            )


def _not_allowed(call: Call) -> ApiError:
    return ApiError(
        405, "0x80060888", f"The requested resource does not support http method '{call.method}'."
    )
