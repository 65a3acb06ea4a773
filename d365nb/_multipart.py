"""OData `$batch` bodies (`multipart/mixed`), in both directions, byte for byte.

The client encodes requests and decodes responses; the sandbox decodes requests and
encodes responses.  Nothing here does I/O or knows about the sandbox.

The wire format is Microsoft's (reference/dataverse-protocol.md section 6): a change
set, then a single GET.

```
--batch_<id>
Content-Type: multipart/mixed; boundary="changeset_<id>"

--changeset_<id>
Content-Type: application/http
Content-Transfer-Encoding: binary
Content-ID: 1

POST /api/data/v9.2/tasks HTTP/1.1
Content-Type: application/json; type=entry

{"subject": "Task 1"}
--changeset_<id>--

--batch_<id>
Content-Type: application/http
Content-Transfer-Encoding: binary

GET /api/data/v9.2/accounts HTTP/1.1


--batch_<id>--
```

Every line ends with CRLF.  As RFC 2046 says, the CRLF before a delimiter belongs to
the delimiter, so a body is exactly the bytes between the blank line after the inner
headers and the next `CRLF--boundary`.

Why hand-written framing instead of a library: the standard library's `email` parser
splits on any line ending, decodes and re-folds what it reads and reports broken
structure as "defects" instead of failing, so it can neither reproduce Microsoft's
bytes nor reject a body the service rejects (bare-LF line endings); `python-multipart`
is a callback-driven parser made for `multipart/form-data` fields, with no encoder and
no nested parts; and `h11` refuses an HTTP/1.1 request without a `Host` header
("Missing mandatory Host: header"), which `$batch` parts never carry.  The
framing is ~100 lines; the fiddly parts are delegated to the standard library:
`email.message.Message` parses `Content-Type` parameters (quoted or bare boundaries)
and `http.HTTPStatus` supplies reason phrases.
"""

from __future__ import annotations

import json as jsonlib
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from email.message import Message
from http import HTTPStatus
from typing import Any, TypeAlias

from ._exceptions import BatchFormatError

__all__ = [
    "BatchFormatError",
    "BatchRequest",
    "BatchResponse",
    "ChangeSet",
    "ChangeSetResponse",
    "MAX_BATCH_OPERATIONS",
    "decode_batch_request",
    "decode_batch_response",
    "encode_batch_request",
    "encode_batch_response",
]

MAX_BATCH_OPERATIONS = 1000
"""Most requests one `$batch` may hold (change-set members each count)."""

_CRLF = b"\r\n"
_JSON_ENTRY = "application/json; type=entry"
_JSON_RESPONSE = "application/json; odata.metadata=minimal"

Headers: TypeAlias = "tuple[tuple[str, str], ...]"
HeaderTypes: TypeAlias = "Mapping[str, str] | Iterable[tuple[str, str]] | None"


def _normalise_headers(headers: HeaderTypes) -> Headers:
    if headers is None:
        return ()
    items = headers.items() if isinstance(headers, Mapping) else headers
    return tuple((str(name), str(value)) for name, value in items)


def _get_header(headers: Headers, name: str) -> str | None:
    lower = name.lower()
    for key, value in headers:
        if key.lower() == lower:
            return value
    return None


def _json_bytes(data: Any) -> bytes:
    return jsonlib.dumps(data, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def _parse_json(body: bytes) -> Any:
    if not body.strip():
        return None
    return jsonlib.loads(body.decode("utf-8-sig"))


@dataclass(frozen=True, init=False)
class BatchRequest:
    """One request inside a `$batch`.

    `url` is what goes on the request line: server-relative (`/api/data/v9.2/tasks`),
    absolute, or a `$1` Content-ID reference (`$1/primarycontactid/$ref`).
    `headers` may be given as a mapping or as pairs; they are kept as ordered pairs.
    `content_id` is required for members of a change set (the encoder numbers the
    ones left out).

    Usage:

    ```python
    BatchRequest.from_json("POST", "/api/data/v9.2/tasks", {"subject": "x"}, content_id="1")
    BatchRequest("GET", "/api/data/v9.2/accounts?$select=name")
    ```
    """

    method: str
    url: str
    headers: Headers
    body: bytes
    content_id: str | None

    def __init__(
        self,
        method: str,
        url: str,
        *,
        headers: HeaderTypes = None,
        body: bytes | str = b"",
        content_id: str | None = None,
    ) -> None:
        object.__setattr__(self, "method", method)
        object.__setattr__(self, "url", url)
        object.__setattr__(self, "headers", _normalise_headers(headers))
        object.__setattr__(self, "body", body.encode("utf-8") if isinstance(body, str) else body)
        object.__setattr__(self, "content_id", content_id)

    @classmethod
    def from_json(
        cls,
        method: str,
        url: str,
        data: Any,
        *,
        headers: HeaderTypes = None,
        content_id: str | None = None,
    ) -> BatchRequest:
        """A request with a JSON body and `Content-Type: application/json; type=entry`."""
        pairs = _normalise_headers(headers)
        if _get_header(pairs, "content-type") is None:
            pairs = (("Content-Type", _JSON_ENTRY), *pairs)
        return cls(method, url, headers=pairs, body=_json_bytes(data), content_id=content_id)

    def header(self, name: str) -> str | None:
        """The first value of header `name` (case-insensitive), or `None`."""
        return _get_header(self.headers, name)

    def json(self) -> Any:
        """The body parsed as JSON (`None` when there is no body)."""
        return _parse_json(self.body)


@dataclass(frozen=True, init=False)
class ChangeSet:
    """Requests that succeed or fail together (an atomic `multipart/mixed` part).

    `boundary` is generated (`changeset_<uuid>`) when not given.
    """

    requests: tuple[BatchRequest, ...]
    boundary: str | None = field(compare=False)

    def __init__(self, requests: Iterable[BatchRequest], *, boundary: str | None = None) -> None:
        object.__setattr__(self, "requests", tuple(requests))
        object.__setattr__(self, "boundary", boundary)


@dataclass(frozen=True, init=False)
class BatchResponse:
    """One response inside a `$batch` response.

    `reason` defaults to the standard phrase for `status` (`204` → `No Content`).
    """

    status: int
    headers: Headers
    body: bytes
    content_id: str | None
    reason: str | None = field(compare=False)

    def __init__(
        self,
        status: int,
        *,
        headers: HeaderTypes = None,
        body: bytes | str = b"",
        content_id: str | None = None,
        reason: str | None = None,
    ) -> None:
        object.__setattr__(self, "status", status)
        object.__setattr__(self, "headers", _normalise_headers(headers))
        object.__setattr__(self, "body", body.encode("utf-8") if isinstance(body, str) else body)
        object.__setattr__(self, "content_id", content_id)
        object.__setattr__(self, "reason", reason)

    @classmethod
    def from_json(
        cls,
        status: int,
        data: Any,
        *,
        headers: HeaderTypes = None,
        content_id: str | None = None,
    ) -> BatchResponse:
        """A response with a JSON body; `Content-Type` and `OData-Version` are added."""
        pairs = _normalise_headers(headers)
        extra: list[tuple[str, str]] = []
        if _get_header(pairs, "content-type") is None:
            extra.append(("Content-Type", _JSON_RESPONSE))
        if _get_header(pairs, "odata-version") is None:
            extra.append(("OData-Version", "4.0"))
        return cls(status, headers=(*extra, *pairs), body=_json_bytes(data), content_id=content_id)

    @property
    def is_success(self) -> bool:
        """`True` for a 2xx status."""
        return 200 <= self.status < 300

    def header(self, name: str) -> str | None:
        """The first value of header `name` (case-insensitive), or `None`."""
        return _get_header(self.headers, name)

    def json(self) -> Any:
        """The body parsed as JSON (`None` when there is no body)."""
        return _parse_json(self.body)


@dataclass(frozen=True, init=False)
class ChangeSetResponse:
    """The responses to one change set, in request order."""

    responses: tuple[BatchResponse, ...]
    boundary: str | None = field(compare=False)

    def __init__(self, responses: Iterable[BatchResponse], *, boundary: str | None = None) -> None:
        object.__setattr__(self, "responses", tuple(responses))
        object.__setattr__(self, "boundary", boundary)


BatchRequestItem: TypeAlias = "BatchRequest | ChangeSet"
BatchResponseItem: TypeAlias = "BatchResponse | ChangeSetResponse"


# -- encoding ----------------------------------------------------------------------------


def _header_lines(headers: Iterable[tuple[str, str]]) -> bytes:
    out = bytearray()
    for name, value in headers:
        if "\r" in name or "\n" in name or "\r" in value or "\n" in value or ":" in name:
            raise BatchFormatError(f"Header {name!r} has a line break or a colon in its name.")
        out += f"{name}: {value}".encode() + _CRLF
    return bytes(out)


def _application_http(content_id: str | None) -> bytes:
    headers = [("Content-Type", "application/http"), ("Content-Transfer-Encoding", "binary")]
    if content_id is not None:
        headers.append(("Content-ID", content_id))
    return _header_lines(headers) + _CRLF


def _inner_request(request: BatchRequest) -> bytes:
    if any(c in request.url for c in " \r\n"):
        raise BatchFormatError(f"Batch request URL {request.url!r} must be percent-encoded.")
    line = f"{request.method.upper()} {request.url} HTTP/1.1".encode()
    return line + _CRLF + _header_lines(request.headers) + _CRLF + request.body


def _inner_response(response: BatchResponse) -> bytes:
    reason = response.reason
    if reason is None:
        try:
            reason = HTTPStatus(response.status).phrase
        except ValueError:
            reason = ""
    line = f"HTTP/1.1 {response.status} {reason}".encode()
    return line + _CRLF + _header_lines(response.headers) + _CRLF + response.body


def _choose_boundary(prefix: str, given: str | None, bodies: Sequence[bytes]) -> str:
    def clashes(boundary: str) -> bool:
        needle = b"--" + boundary.encode("ascii")
        return any(needle in body for body in bodies)

    if given is not None:
        if clashes(given):
            raise BatchFormatError(f"Boundary {given!r} occurs inside a part; choose another.")
        return given
    while True:
        boundary = f"{prefix}_{uuid.uuid4()}"
        if not clashes(boundary):
            return boundary


def encode_batch_request(
    items: Iterable[BatchRequestItem], *, boundary: str | None = None
) -> tuple[str, bytes]:
    """Encode requests and change sets as a `$batch` body.

    Returns `(content_type, body)`: the `Content-Type` header value
    (`multipart/mixed; boundary="batch_<uuid>"`, quoted as in Microsoft's examples) and
    the body.  Change-set members without a `content_id` are numbered with the
    smallest integers not used elsewhere in the batch.

    **Parameters:**

    * **items** - `BatchRequest` and `ChangeSet` objects, in execution order.
    * **boundary** - *(optional)* the batch boundary; `batch_<uuid4>` by default.
    """
    items = list(items)
    count = sum(len(i.requests) if isinstance(i, ChangeSet) else 1 for i in items)
    if count > MAX_BATCH_OPERATIONS:
        raise _too_many(count)
    used = {
        r.content_id
        for item in items
        for r in (item.requests if isinstance(item, ChangeSet) else (item,))
        if r.content_id is not None
    }
    next_id = 1

    def fresh_id() -> str:
        nonlocal next_id
        while str(next_id) in used:
            next_id += 1
        used.add(str(next_id))
        return str(next_id)

    parts: list[bytes] = []  # each top-level part, without delimiters
    for item in items:
        if isinstance(item, ChangeSet):
            members = [
                _application_http(r.content_id or fresh_id()) + _inner_request(r)
                for r in item.requests
            ]
            cs = _choose_boundary("changeset", item.boundary, members)
            delimiter = b"--" + cs.encode("ascii")
            body = b"".join(delimiter + _CRLF + m + _CRLF for m in members)
            # Microsoft's example has a blank line after the change set's close delimiter.
            body += delimiter + b"--" + _CRLF
            head = _header_lines([("Content-Type", f'multipart/mixed; boundary="{cs}"')])
            parts.append(head + _CRLF + body)
        else:
            parts.append(_application_http(item.content_id) + _inner_request(item))
    batch = _choose_boundary("batch", boundary, parts)
    return f'multipart/mixed; boundary="{batch}"', _frame(batch, parts)


def encode_batch_response(
    results: Iterable[BatchResponseItem], *, boundary: str | None = None
) -> tuple[str, bytes]:
    """Encode responses as a `$batch` response body, as the Web API writes it.

    Returns `(content_type, body)`; the content type is
    `multipart/mixed; boundary=batchresponse_<uuid>` (unquoted, like the change-set
    boundaries Microsoft shows).  `Content-ID` is echoed on every response that has one.

    **Parameters:**

    * **results** - `BatchResponse` and `ChangeSetResponse` objects, in request order.
    * **boundary** - *(optional)* the batch boundary; `batchresponse_<uuid4>` by default.
    """
    parts: list[bytes] = []
    for item in results:
        if isinstance(item, ChangeSetResponse):
            members = [_application_http(r.content_id) + _inner_response(r) for r in item.responses]
            cs = _choose_boundary("changesetresponse", item.boundary, members)
            delimiter = b"--" + cs.encode("ascii")
            body = b"".join(delimiter + _CRLF + m + _CRLF for m in members)
            body += delimiter + b"--"  # no CRLF: the next batch delimiter's CRLF follows
            head = _header_lines([("Content-Type", f"multipart/mixed; boundary={cs}")])
            parts.append(head + _CRLF + body)
        else:
            parts.append(_application_http(item.content_id) + _inner_response(item))
    batch = _choose_boundary("batchresponse", boundary, parts)
    return f"multipart/mixed; boundary={batch}", _frame(batch, parts)


def _frame(boundary: str, parts: Sequence[bytes]) -> bytes:
    delimiter = b"--" + boundary.encode("ascii")
    if not parts:
        return delimiter + b"--" + _CRLF
    # Like ODataLib: a CRLF after the close delimiter (and the service demands it).
    return b"".join(delimiter + _CRLF + p + _CRLF for p in parts) + delimiter + b"--" + _CRLF


# -- decoding ----------------------------------------------------------------------------

# Messages: the service's own where the reference has them ([MS]/[OBS]); otherwise
# ODataLib's wording, which is what a Dataverse server would put through ([UNVERIFIED]).


def _not_readable() -> BatchFormatError:
    # [MS] TS/web-api-client-errors: bare-LF line endings / a last line without CRLF give
    # 400 with 0x80048d19 and "... InnerException : System.ArgumentException: Stream was
    # not readable."  [UNVERIFIED] the text before "InnerException" (taken from the same
    # page's other 0x80048d19 message).
    return BatchFormatError(
        "Error identified in Payload provided by the user for Entity :''  ---->  "
        "InnerException : System.ArgumentException: Stream was not readable.",
        code="0x80048d19",
    )


def _too_many(count: int) -> BatchFormatError:
    # [OBS] message (DynamicsWebApi PR #71); [UNVERIFIED] code and the count being per batch.
    return BatchFormatError(
        "The current change set contains too many operations. A maximum number of "
        f"'{MAX_BATCH_OPERATIONS}' operations are allowed in a change set."
    )


def _content_type(value: str) -> tuple[str, str | None]:
    message = Message()
    message["Content-Type"] = value
    boundary = message.get_param("boundary")
    if boundary is not None and not isinstance(boundary, str):
        boundary = None
    return message.get_content_type(), boundary


def _split(body: bytes, boundary: str, *, top_level: bool) -> list[bytes]:
    """The parts of a multipart body, each exactly as sent (headers + content)."""
    delimiter = b"--" + boundary.encode("latin-1")
    if body.startswith(delimiter):
        pos = 0
    else:
        found = body.find(_CRLF + delimiter)
        if found < 0:
            if (b"\n" + delimiter) in body or body.startswith(delimiter):
                raise _not_readable()
            raise BatchFormatError(
                f"The batch body does not contain the boundary '{boundary}' given in the "
                "Content-Type header."
            )
        pos = found + 2
    parts: list[bytes] = []
    while True:
        pos += len(delimiter)
        if body.startswith(b"--", pos):  # close delimiter; the rest is the epilogue
            if top_level and not body.startswith(_CRLF, pos + 2):
                raise _not_readable()
            return parts
        eol = body.find(b"\n", pos)
        if eol < 0 or body[eol - 1 : eol] != b"\r":
            raise _not_readable()
        if body[pos : eol - 1].strip(b" \t"):
            raise BatchFormatError(f"Malformed boundary line after '--{boundary}'.")
        start = eol + 1
        search = start
        while True:
            nxt = body.find(_CRLF + delimiter, search)
            if nxt < 0:
                if (b"\n" + delimiter) in body[start:]:
                    raise _not_readable()
                raise BatchFormatError(f"The batch body has no closing boundary '--{boundary}--'.")
            after = body[nxt + 2 + len(delimiter) : nxt + 4 + len(delimiter)]
            if after in (b"--", b"\r\n", b"") or after[:1] in (b" ", b"\t"):
                break
            search = nxt + 2  # "--boundaryXYZ" is another boundary, not ours
        parts.append(body[start:nxt])
        pos = nxt + 2


def _split_head(data: bytes, what: str) -> tuple[list[str], bytes]:
    """Split `data` into header lines and the body after the first blank line."""
    if data.startswith(_CRLF):
        return [], data[2:]
    head, sep, rest = data.partition(b"\r\n\r\n")
    if not sep:
        if b"\n\n" in data:
            raise _not_readable()
        if data.endswith(_CRLF):
            head, rest = data[:-2], b""
        else:
            head, rest = data, b""
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BatchFormatError(f"The {what} headers are not valid UTF-8.") from exc
    lines = text.split("\r\n")
    if any("\n" in line for line in lines):
        raise _not_readable()
    return lines, rest


def _parse_headers(lines: Iterable[str], what: str) -> Headers:
    headers: list[tuple[str, str]] = []
    for line in lines:
        name, colon, value = line.partition(":")
        if not colon or not name or name != name.strip():
            raise BatchFormatError(f"Malformed header line {line!r} in the {what}.")
        headers.append((name, value.strip(" \t")))
    return tuple(headers)


def _parse_part(part: bytes) -> tuple[Headers, bytes]:
    lines, content = _split_head(part, "part")
    return _parse_headers(lines, "batch part"), content


def _decode_inner_request(content: bytes, content_id: str | None) -> BatchRequest:
    lines, body = _split_head(content, "request")
    if not lines or not lines[0]:
        raise BatchFormatError("A batch part has no request line.")
    words = lines[0].split(" ")
    if len(words) < 3 or not words[-1].startswith("HTTP/"):
        raise BatchFormatError(f"Malformed request line {lines[0]!r} in a batch part.")
    method, url = words[0], " ".join(words[1:-1])
    headers = _parse_headers(lines[1:], "batch request")
    if content_id is None:
        content_id = _get_header(headers, "content-id")
    return BatchRequest(method, url, headers=headers, body=body, content_id=content_id)


def _decode_inner_response(content: bytes, content_id: str | None) -> BatchResponse:
    lines, body = _split_head(content, "response")
    status_line = lines[0] if lines else ""
    version, _, rest = status_line.partition(" ")
    code, _, reason = rest.partition(" ")
    if not version.startswith("HTTP/") or not code.isdigit():
        raise BatchFormatError(f"Malformed status line {status_line!r} in a batch response.")
    headers = _parse_headers(lines[1:], "batch response")
    if content_id is None:
        content_id = _get_header(headers, "content-id")
    return BatchResponse(
        int(code), headers=headers, body=body, content_id=content_id, reason=reason
    )


def _check_application_http(headers: Headers) -> None:
    media, _ = _content_type(_get_header(headers, "content-type") or "")
    if media != "application/http":
        raise BatchFormatError(
            f"The batch part's Content-Type is '{media}'; expected 'application/http'."
        )


def decode_batch_request(body: bytes, content_type: str) -> list[BatchRequestItem]:
    """Read a `$batch` request body as the Web API does.

    Raises `BatchFormatError` (status, code and message as the service answers them)
    for a body without CRLF line endings, a missing boundary, a change-set member
    without `Content-ID`, a `GET` in a change set, a repeated `Content-ID`, a nested
    change set or more than `MAX_BATCH_OPERATIONS` requests.

    **Parameters:**

    * **body** - the request body.
    * **content_type** - the request's `Content-Type` header value.
    """
    media, boundary = _content_type(content_type)
    if media != "multipart/mixed" or not boundary:
        raise BatchFormatError(
            f"The content type '{content_type}' is not supported for a batch request; "
            "use 'multipart/mixed' with a boundary."
        )
    items: list[BatchRequestItem] = []
    seen_ids: set[str] = set()
    count = 0

    def note_id(content_id: str | None) -> None:
        if content_id is None:
            return
        if content_id in seen_ids:
            raise BatchFormatError(
                f"The content ID '{content_id}' was found more than once in the same batch "
                "request. Content IDs have to be unique across all operations of a batch."
            )
        seen_ids.add(content_id)

    for part in _split(body, boundary, top_level=True):
        headers, content = _parse_part(part)
        media, inner_boundary = _content_type(_get_header(headers, "content-type") or "")
        if media == "multipart/mixed":
            if not inner_boundary:
                raise BatchFormatError("A change set's Content-Type has no boundary.")
            requests: list[BatchRequest] = []
            for sub in _split(content, inner_boundary, top_level=False):
                sub_headers, sub_content = _parse_part(sub)
                if _content_type(_get_header(sub_headers, "content-type") or "")[0] == (
                    "multipart/mixed"
                ):
                    raise BatchFormatError("Change sets cannot be nested.")
                _check_application_http(sub_headers)
                request = _decode_inner_request(sub_content, _get_header(sub_headers, "content-id"))
                if request.content_id is None:
                    # [OBS] ryanmichaeljames/dataverse-mcp v1.3.2
                    raise BatchFormatError("Content-ID header not present", code="0x80060888")
                if request.method.upper() == "GET":
                    raise BatchFormatError(
                        "An invalid HTTP method 'GET' was detected for a request in a change "
                        "set. Requests in change sets only support the HTTP methods 'POST', "
                        "'PUT', 'DELETE', and 'PATCH'."
                    )
                note_id(request.content_id)
                requests.append(request)
            count += len(requests)
            items.append(ChangeSet(tuple(requests), boundary=inner_boundary))
        else:
            _check_application_http(headers)
            request = _decode_inner_request(content, _get_header(headers, "content-id"))
            note_id(request.content_id)
            count += 1
            items.append(request)
        if count > MAX_BATCH_OPERATIONS:
            raise _too_many(count)
    return items


def decode_batch_response(body: bytes, content_type: str) -> list[BatchResponseItem]:
    """Read a `$batch` response body: one `BatchResponse` per request, change sets grouped.

    A non-multipart answer (the service rejects a malformed batch with a plain JSON
    error) raises `BatchFormatError` carrying the service's code and message.

    **Parameters:**

    * **body** - the response body.
    * **content_type** - the response's `Content-Type` header value.
    """
    media, boundary = _content_type(content_type)
    if media != "multipart/mixed" or not boundary:
        try:
            error = jsonlib.loads(body.decode("utf-8-sig"))["error"]
            code, message = str(error.get("code", "")), str(error["message"])
        except (ValueError, KeyError, TypeError, AttributeError):
            raise BatchFormatError(
                f"Expected a multipart/mixed batch response, got '{content_type}'."
            ) from None
        raise BatchFormatError(message, code=code)
    items: list[BatchResponseItem] = []
    for part in _split(body, boundary, top_level=False):
        headers, content = _parse_part(part)
        media, inner_boundary = _content_type(_get_header(headers, "content-type") or "")
        if media == "multipart/mixed":
            if not inner_boundary:
                raise BatchFormatError("A change-set response's Content-Type has no boundary.")
            responses = []
            for sub in _split(content, inner_boundary, top_level=False):
                sub_headers, sub_content = _parse_part(sub)
                _check_application_http(sub_headers)
                responses.append(
                    _decode_inner_response(sub_content, _get_header(sub_headers, "content-id"))
                )
            items.append(ChangeSetResponse(tuple(responses), boundary=inner_boundary))
        else:
            _check_application_http(headers)
            items.append(_decode_inner_response(content, _get_header(headers, "content-id")))
    return items
