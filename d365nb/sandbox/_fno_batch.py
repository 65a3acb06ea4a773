"""`POST /data/$batch` for the F&O environment: OData 4.0 multipart, atomic change sets.

Framing is `d365nb._multipart` (shared with the client).  Each part runs through the
same `FnoService.handle` as a top-level request.  A change set runs inside one SQLite
SAVEPOINT: the first failing member rolls the set back and the set answers with that
member's error alone (§4.6, [OBS] a 500 `AxODataWriteException` inside a batch part).
The batch itself answers **200** and stops after the first failed item unless the
request says ``Prefer: odata.continue-on-error`` - ASP.NET OData's batch handler
behaviour ([UNVERIFIED] for F&O).  Part URLs may be absolute, server-relative or
relative to ``/data/``; ``$<Content-ID>`` references name an earlier create.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from contextlib import AbstractContextManager
from urllib.parse import parse_qsl, unquote

from .._multipart import (
    BatchFormatError,
    BatchRequest,
    BatchResponse,
    ChangeSet,
    ChangeSetResponse,
    decode_batch_request,
    encode_batch_response,
)
from ._exchange import Reply
from ._fno_errors import FnoError
from ._fno_service import FnoCall, json_reply

__all__ = ["run_batch"]

_DATA = re.compile(r"^(?:https?://[^/]+)?(?:/[^?]*?)?/data/")
_REF = re.compile(r"^\$([A-Za-z0-9_.-]+)(.*)$")


class _Rollback(Exception):
    def __init__(self, response: BatchResponse) -> None:
        self.response = response


def _error_reply(exc: FnoError) -> Reply:
    return json_reply(exc.status, exc.body(), list(exc.headers.items()))


def run_batch(
    call: FnoCall,
    dispatch: Callable[[FnoCall], Reply],
    atomic: Callable[[], AbstractContextManager[None]],
) -> Reply:
    """Execute a `$batch` call.

    **Parameters:**

    * **call** - the top-level `$batch` request.
    * **dispatch** - answers one inner call (raises `FnoError`).
    * **atomic** - a context-manager factory: a change set runs inside one.
    """
    try:
        items = decode_batch_request(call.body, call.headers.get("content-type", ""))
    except BatchFormatError as exc:
        # [OBS, low trust] malformed envelopes: 400 with little text (§4.6).
        return json_reply(400, FnoError(400, str(exc)).body())
    keep_going = "odata.continue-on-error" in call.prefer
    locations: dict[str, str] = {}
    results: list[BatchResponse | ChangeSetResponse] = []

    def one(request: BatchRequest) -> BatchResponse:
        url = request.url
        ref = _REF.match(url)
        if ref and ref.group(1) in locations:
            url = locations[ref.group(1)] + ref.group(2)
        m = _DATA.match(url)
        rel = url[m.end() :] if m else url.lstrip("/")
        path, _, query = rel.partition("?")
        headers = {k.lower(): v for k, v in request.headers}
        inner = FnoCall(
            method=request.method.upper(),
            path=unquote(path),
            params=dict(parse_qsl(query, keep_blank_values=True)),
            headers=headers,
            body=request.body,
            root=call.root,
            caller=call.caller,
        )
        try:
            if inner.path == "$batch":
                raise FnoError(400, "Nested batch requests are not supported.")
            reply = dispatch(inner)
        except FnoError as exc:
            reply = _error_reply(exc)
        out = [(n, v) for n, v in reply.headers if not n.lower().startswith("x-sandbox")]
        for name, value in out:
            if name == "Location" and request.content_id:
                locations[request.content_id] = value
        return BatchResponse(
            reply.status, headers=out, body=reply.body, content_id=request.content_id
        )

    for item in items:
        failed = False
        if isinstance(item, ChangeSet):
            try:
                with atomic():
                    responses = []
                    for request in item.requests:
                        response = one(request)
                        if not response.is_success:
                            raise _Rollback(response)
                        responses.append(response)
                results.append(
                    ChangeSetResponse(responses, boundary=f"changesetresponse_{uuid.uuid4()}")
                )
            except _Rollback as exc:
                for request in item.requests:
                    locations.pop(request.content_id or "", None)
                results.append(exc.response)
                failed = True
        else:
            response = one(item)
            results.append(response)
            failed = not response.is_success
        if failed and not keep_going:
            break
    content_type, body = encode_batch_response(results, boundary=f"batchresponse_{uuid.uuid4()}")
    return Reply(200, [("Content-Type", content_type)], body)
