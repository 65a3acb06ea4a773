"""Tests for d365nb._multipart: Microsoft's $batch bytes, round trips, errors."""

# The fixtures below are copied verbatim, long lines included.
# ruff: noqa: E501

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings, strategies as st

from d365nb._exceptions import D365Error
from d365nb._multipart import (
    MAX_BATCH_OPERATIONS,
    BatchFormatError,
    BatchRequest,
    BatchResponse,
    ChangeSet,
    ChangeSetResponse,
    decode_batch_request,
    decode_batch_response,
    encode_batch_request,
    encode_batch_response,
)


def _crlf(*lines: str) -> bytes:
    """Lines of a reference code block joined with CRLF (the block's final empty line
    stands for the CRLF that ends the close delimiter)."""
    return "\r\n".join(lines).encode()


# Verbatim from /work/shared/reference/dataverse-protocol.md section 6 (Microsoft's
# WA/execute-batch-operations-using-web-api examples).
REQUEST_BODY = _crlf(
    "--batch_22975cad-7f57-410d-be15-6363209367ea",
    'Content-Type: multipart/mixed; boundary="changeset_246e6bfe-89a4-4c77-b293-7a433f082e8a"',
    "",
    "--changeset_246e6bfe-89a4-4c77-b293-7a433f082e8a",
    "Content-Type: application/http",
    "Content-Transfer-Encoding: binary",
    "Content-ID: 1",
    "",
    "POST /api/data/v9.2/tasks HTTP/1.1",
    "Content-Type: application/json; type=entry",
    "",
    "{",
    '  "subject": "Task 1 in batch",',
    '  "regardingobjectid_account_task@odata.bind": "accounts(00000000-0000-0000-0000-000000000001)"',
    "}",
    "--changeset_246e6bfe-89a4-4c77-b293-7a433f082e8a",
    "Content-Type: application/http",
    "Content-Transfer-Encoding: binary",
    "Content-ID: 2",
    "",
    "POST /api/data/v9.2/tasks HTTP/1.1",
    "Content-Type: application/json; type=entry",
    "",
    "{",
    '  "subject": "Task 2 in batch",',
    '  "regardingobjectid_account_task@odata.bind": "accounts(00000000-0000-0000-0000-000000000001)"',
    "}",
    "--changeset_246e6bfe-89a4-4c77-b293-7a433f082e8a--",
    "",
    "--batch_22975cad-7f57-410d-be15-6363209367ea",
    "Content-Type: application/http",
    "Content-Transfer-Encoding: binary",
    "",
    "GET /api/data/v9.2/accounts(00000000-0000-0000-0000-000000000001)/Account_Tasks?$select=subject HTTP/1.1",
    "",
    "",
    "--batch_22975cad-7f57-410d-be15-6363209367ea--",
    "",
)

RESPONSE_BODY = _crlf(
    "--batchresponse_f27ef42d-51b0-4685-bac9-f468f844de2f",
    "Content-Type: multipart/mixed; boundary=changesetresponse_64cc3fff-023a-45b0-b29d-df21583ffa15",
    "",
    "--changesetresponse_64cc3fff-023a-45b0-b29d-df21583ffa15",
    "Content-Type: application/http",
    "Content-Transfer-Encoding: binary",
    "Content-ID: 1",
    "",
    "HTTP/1.1 204 No Content",
    "OData-Version: 4.0",
    "Location: https://contoso.api.crm.dynamics.com/api/data/v9.2/tasks(e73ffc82-e292-ed11-aad1-000d3a9933c9)",
    "OData-EntityId: https://contoso.api.crm.dynamics.com/api/data/v9.2/tasks(e73ffc82-e292-ed11-aad1-000d3a9933c9)",
    "",
    "",
    "--changesetresponse_64cc3fff-023a-45b0-b29d-df21583ffa15",
    "Content-Type: application/http",
    "Content-Transfer-Encoding: binary",
    "Content-ID: 2",
    "",
    "HTTP/1.1 204 No Content",
    "OData-Version: 4.0",
    "Location: https://contoso.api.crm.dynamics.com/api/data/v9.2/tasks(e83ffc82-e292-ed11-aad1-000d3a9933c9)",
    "OData-EntityId: https://contoso.api.crm.dynamics.com/api/data/v9.2/tasks(e83ffc82-e292-ed11-aad1-000d3a9933c9)",
    "",
    "",
    "--changesetresponse_64cc3fff-023a-45b0-b29d-df21583ffa15--",
    "--batchresponse_f27ef42d-51b0-4685-bac9-f468f844de2f",
    "Content-Type: application/http",
    "Content-Transfer-Encoding: binary",
    "",
    "HTTP/1.1 200 OK",
    "Content-Type: application/json; odata.metadata=minimal; odata.streaming=true",
    "OData-Version: 4.0",
    "",
    "{",
    '  "@odata.context": "https://contoso.api.crm.dynamics.com/api/data/v9.2/$metadata#tasks(subject)",',
    '  "value": [',
    "    {",
    '      "@odata.etag": "W/\\"77181173\\"",',
    '      "subject": "Task 1 in batch",',
    '      "activityid": "e73ffc82-e292-ed11-aad1-000d3a9933c9"',
    "    }",
    "  ]",
    "}",
    "--batchresponse_f27ef42d-51b0-4685-bac9-f468f844de2f--",
    "",
)

FAILED_RESPONSE_BODY = _crlf(
    "--batchresponse_156da4b8-cd2c-4862-a911-4aaab97c001a",
    "Content-Type: application/http",
    "Content-Transfer-Encoding: binary",
    "",
    "HTTP/1.1 400 Bad Request",
    "REQ_ID: 5ecd1cb3-1730-4ffc-909c-d44c22270026",
    "Content-Type: application/json; odata.metadata=minimal",
    "OData-Version: 4.0",
    "",
    '{"error":{"code":"0x80044331","message":"A validation error occurred.  The length of the \'subject\' attribute of the \'task\' entity exceeded the maximum allowed length of \'200\'."}}',
    "--batchresponse_156da4b8-cd2c-4862-a911-4aaab97c001a--",
    "",
)

BATCH = "batch_22975cad-7f57-410d-be15-6363209367ea"
CHANGESET = "changeset_246e6bfe-89a4-4c77-b293-7a433f082e8a"
BATCH_RESPONSE = "batchresponse_f27ef42d-51b0-4685-bac9-f468f844de2f"
CHANGESET_RESPONSE = "changesetresponse_64cc3fff-023a-45b0-b29d-df21583ffa15"
ORG = "https://contoso.api.crm.dynamics.com/api/data/v9.2"
ACCOUNT = "00000000-0000-0000-0000-000000000001"


def _task_body(n: int) -> bytes:
    return _crlf(
        "{",
        f'  "subject": "Task {n} in batch",',
        f'  "regardingobjectid_account_task@odata.bind": "accounts({ACCOUNT})"',
        "}",
    )


def _example_requests() -> list[BatchRequest | ChangeSet]:
    entry = (("Content-Type", "application/json; type=entry"),)
    return [
        ChangeSet(
            (
                BatchRequest(
                    "POST",
                    "/api/data/v9.2/tasks",
                    headers=entry,
                    body=_task_body(1),
                    content_id="1",
                ),
                BatchRequest(
                    "POST",
                    "/api/data/v9.2/tasks",
                    headers=entry,
                    body=_task_body(2),
                    content_id="2",
                ),
            ),
            boundary=CHANGESET,
        ),
        BatchRequest("GET", f"/api/data/v9.2/accounts({ACCOUNT})/Account_Tasks?$select=subject"),
    ]


def _created(task: str, content_id: str) -> BatchResponse:
    url = f"{ORG}/tasks({task})"
    headers = {"OData-Version": "4.0", "Location": url, "OData-EntityId": url}
    return BatchResponse(204, headers=headers, content_id=content_id)


GET_RESPONSE_JSON = _crlf(
    "{",
    f'  "@odata.context": "{ORG}/$metadata#tasks(subject)",',
    '  "value": [',
    "    {",
    '      "@odata.etag": "W/\\"77181173\\"",',
    '      "subject": "Task 1 in batch",',
    '      "activityid": "e73ffc82-e292-ed11-aad1-000d3a9933c9"',
    "    }",
    "  ]",
    "}",
)


def _example_responses() -> list[BatchResponse | ChangeSetResponse]:
    return [
        ChangeSetResponse(
            (
                _created("e73ffc82-e292-ed11-aad1-000d3a9933c9", "1"),
                _created("e83ffc82-e292-ed11-aad1-000d3a9933c9", "2"),
            ),
            boundary=CHANGESET_RESPONSE,
        ),
        BatchResponse(
            200,
            headers=[
                ("Content-Type", "application/json; odata.metadata=minimal; odata.streaming=true"),
                ("OData-Version", "4.0"),
            ],
            body=GET_RESPONSE_JSON,
        ),
    ]


# -- Microsoft's bytes ---------------------------------------------------------------------


def test_encode_request_matches_microsoft_example_byte_for_byte():
    content_type, body = encode_batch_request(_example_requests(), boundary=BATCH)
    assert content_type == f'multipart/mixed; boundary="{BATCH}"'
    assert body == REQUEST_BODY


def test_decode_microsoft_request_example():
    items = decode_batch_request(REQUEST_BODY, f'multipart/mixed; boundary="{BATCH}"')
    assert items == _example_requests()
    changeset = items[0]
    assert isinstance(changeset, ChangeSet)
    assert changeset.boundary == CHANGESET
    assert [r.content_id for r in changeset.requests] == ["1", "2"]
    assert changeset.requests[0].json()["subject"] == "Task 1 in batch"
    assert changeset.requests[0].header("content-type") == "application/json; type=entry"
    get = items[1]
    assert isinstance(get, BatchRequest)
    assert get.method == "GET" and get.body == b"" and get.content_id is None


def test_decode_request_accepts_unquoted_boundary():
    items = decode_batch_request(REQUEST_BODY, f"multipart/mixed;boundary={BATCH}")
    assert len(items) == 2


def test_encode_response_matches_microsoft_example_byte_for_byte():
    content_type, body = encode_batch_response(_example_responses(), boundary=BATCH_RESPONSE)
    assert content_type == f"multipart/mixed; boundary={BATCH_RESPONSE}"
    assert body == RESPONSE_BODY


def test_encode_failed_response_matches_microsoft_example():
    error = {
        "error": {
            "code": "0x80044331",
            "message": "A validation error occurred.  The length of the 'subject' attribute of "
            "the 'task' entity exceeded the maximum allowed length of '200'.",
        }
    }
    response = BatchResponse.from_json(
        400, error, headers={"REQ_ID": "5ecd1cb3-1730-4ffc-909c-d44c22270026"}
    )
    # from_json puts Content-Type/OData-Version first; Microsoft's order is REQ_ID first.
    response = BatchResponse(
        400, headers=[response.headers[2], *response.headers[:2]], body=response.body
    )
    _, body = encode_batch_response(
        [response], boundary="batchresponse_156da4b8-cd2c-4862-a911-4aaab97c001a"
    )
    assert body == FAILED_RESPONSE_BODY


def test_decode_microsoft_response_example():
    items = decode_batch_response(RESPONSE_BODY, f"multipart/mixed; boundary={BATCH_RESPONSE}")
    assert items == _example_responses()
    changeset, get = items
    assert isinstance(changeset, ChangeSetResponse) and isinstance(get, BatchResponse)
    assert [r.status for r in changeset.responses] == [204, 204]
    assert [r.content_id for r in changeset.responses] == ["1", "2"]
    assert changeset.responses[1].header("odata-entityid") == (
        f"{ORG}/tasks(e83ffc82-e292-ed11-aad1-000d3a9933c9)"
    )
    assert changeset.responses[0].json() is None
    assert get.status == 200 and get.reason == "OK" and get.is_success
    assert get.json()["value"][0]["subject"] == "Task 1 in batch"


def test_decode_microsoft_failed_response():
    (item,) = decode_batch_response(
        FAILED_RESPONSE_BODY,
        "multipart/mixed; boundary=batchresponse_156da4b8-cd2c-4862-a911-4aaab97c001a",
    )
    assert isinstance(item, BatchResponse)
    assert (item.status, item.reason, item.is_success) == (400, "Bad Request", False)
    assert item.header("REQ_ID") == "5ecd1cb3-1730-4ffc-909c-d44c22270026"
    assert item.json()["error"]["code"] == "0x80044331"


# -- encoding details ------------------------------------------------------------------------


def test_encoder_numbers_missing_content_ids_uniquely():
    cs = ChangeSet(
        (
            BatchRequest.from_json("POST", "/api/data/v9.2/tasks", {"a": 1}, content_id="1"),
            BatchRequest.from_json("POST", "/api/data/v9.2/tasks", {"a": 2}),
            BatchRequest("PATCH", "$1", body=b"{}"),
        )
    )
    content_type, body = encode_batch_request([cs])
    (decoded,) = decode_batch_request(body, content_type)
    assert isinstance(decoded, ChangeSet)
    assert [r.content_id for r in decoded.requests] == ["1", "2", "3"]
    assert decoded.requests[2].url == "$1"


def test_generated_boundaries_have_microsoft_prefixes():
    cs = ChangeSet((BatchRequest("DELETE", "accounts(1)", content_id="1"),))
    content_type, body = encode_batch_request([cs])
    assert content_type.startswith('multipart/mixed; boundary="batch_')
    assert b'Content-Type: multipart/mixed; boundary="changeset_' in body
    content_type, body = encode_batch_response([ChangeSetResponse((BatchResponse(204),))])
    assert content_type.startswith("multipart/mixed; boundary=batchresponse_")
    assert b"Content-Type: multipart/mixed; boundary=changesetresponse_" in body


def test_from_json_sets_entry_content_type_and_utf8_body():
    request = BatchRequest.from_json("POST", "/api/data/v9.2/accounts", {"name": "Zoë"})
    assert request.header("Content-Type") == "application/json; type=entry"
    assert request.body == '{"name":"Zoë"}'.encode()


def test_given_boundary_found_in_a_body_is_refused():
    request = BatchRequest("POST", "tasks", body=b"--batch_x inside")
    with pytest.raises(BatchFormatError, match="occurs inside a part"):
        encode_batch_request([request], boundary="batch_x")


def test_encoder_refuses_header_injection_and_unencoded_urls():
    with pytest.raises(BatchFormatError):
        encode_batch_request([BatchRequest("GET", "accounts", headers={"X": "a\r\nEvil: 1"})])
    with pytest.raises(BatchFormatError, match="percent-encoded"):
        encode_batch_request([BatchRequest("GET", "accounts?$filter=name eq 'x'")])


def test_encoder_enforces_operation_cap():
    requests = [BatchRequest("GET", f"accounts({i})") for i in range(MAX_BATCH_OPERATIONS)]
    encode_batch_request(requests)  # exactly at the cap is fine
    with pytest.raises(BatchFormatError, match="'1000' operations"):
        encode_batch_request([*requests, BatchRequest("GET", "accounts")])


# -- decoder errors --------------------------------------------------------------------------


def _content_type(boundary: str = BATCH) -> str:
    return f'multipart/mixed; boundary="{boundary}"'


def test_lf_only_body_is_rejected_like_the_service():
    body = REQUEST_BODY.replace(b"\r\n", b"\n")
    with pytest.raises(BatchFormatError) as info:
        decode_batch_request(body, _content_type())
    assert info.value.status == 400
    assert info.value.code == "0x80048d19"
    assert "Stream was not readable." in info.value.message
    assert info.value.to_json()["error"]["code"] == "0x80048d19"


def test_missing_final_crlf_is_rejected():
    body = REQUEST_BODY[: -len(b"\r\n")]
    assert body.endswith(b"--")
    with pytest.raises(BatchFormatError) as info:
        decode_batch_request(body, _content_type())
    assert info.value.code == "0x80048d19"


def test_more_than_1000_operations_is_rejected():
    # Built by hand: the encoder refuses to make such a body.
    part = _crlf(
        "Content-Type: application/http",
        "Content-Transfer-Encoding: binary",
        "",
        "GET /api/data/v9.2/accounts HTTP/1.1",
        "",
        "",
    )
    delimiter = f"--{BATCH}\r\n".encode()
    body = delimiter + delimiter.join([part] * (MAX_BATCH_OPERATIONS + 1))
    body += f"--{BATCH}--\r\n".encode()
    with pytest.raises(BatchFormatError, match="A maximum number of '1000' operations") as info:
        decode_batch_request(body, _content_type())
    assert info.value.status == 400
    ok = delimiter + delimiter.join([part] * MAX_BATCH_OPERATIONS) + f"--{BATCH}--\r\n".encode()
    assert len(decode_batch_request(ok, _content_type())) == MAX_BATCH_OPERATIONS


def test_changeset_member_without_content_id_is_rejected():
    body = REQUEST_BODY.replace(b"Content-ID: 2\r\n", b"")
    with pytest.raises(BatchFormatError, match="Content-ID header not present") as info:
        decode_batch_request(body, _content_type())
    assert info.value.code == "0x80060888"


def test_duplicate_content_id_is_rejected():
    body = REQUEST_BODY.replace(b"Content-ID: 2\r\n", b"Content-ID: 1\r\n")
    with pytest.raises(BatchFormatError, match="content ID '1' was found more than once"):
        decode_batch_request(body, _content_type())


def test_get_inside_a_changeset_is_rejected():
    cs = ChangeSet((BatchRequest("POST", "tasks", body=b"{}", content_id="1"),))
    content_type, body = encode_batch_request([cs])
    body = body.replace(b"POST tasks HTTP/1.1", b"GET tasks HTTP/1.1")
    with pytest.raises(BatchFormatError, match="invalid HTTP method 'GET'"):
        decode_batch_request(body, content_type)


@pytest.mark.parametrize(
    ("content_type", "message"),
    [
        ("application/json", "not supported for a batch request"),
        ("multipart/mixed", "not supported for a batch request"),
        ('multipart/mixed; boundary="batch_other"', "does not contain the boundary"),
    ],
)
def test_bad_content_type_or_boundary(content_type: str, message: str):
    with pytest.raises(BatchFormatError, match=message):
        decode_batch_request(REQUEST_BODY, content_type)


def test_truncated_body_has_no_closing_boundary():
    body = REQUEST_BODY[: REQUEST_BODY.index(b"GET /api")]
    with pytest.raises(BatchFormatError, match="no closing boundary"):
        decode_batch_request(body, _content_type())


def test_part_with_wrong_content_type_and_bad_request_line():
    body = REQUEST_BODY.replace(
        b"Content-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n\r\nGET",
        b"Content-Type: text/plain\r\n\r\nGET",
    )
    with pytest.raises(BatchFormatError, match="expected 'application/http'"):
        decode_batch_request(body, _content_type())
    body = REQUEST_BODY.replace(b" HTTP/1.1\r\n\r\n\r\n--batch", b"\r\n\r\n\r\n--batch")
    with pytest.raises(BatchFormatError, match="Malformed request line"):
        decode_batch_request(body, _content_type())


def test_malformed_header_line():
    body = REQUEST_BODY.replace(b"Content-ID: 1\r\n", b"Content-ID 1\r\n")
    with pytest.raises(BatchFormatError, match="Malformed header line"):
        decode_batch_request(body, _content_type())


def test_json_error_instead_of_multipart_response():
    body = json.dumps({"error": {"code": "0x0", "message": "The batch is malformed."}}).encode()
    with pytest.raises(BatchFormatError, match="The batch is malformed.") as info:
        decode_batch_response(body, "application/json; odata.metadata=minimal")
    assert info.value.code == "0x0"
    assert isinstance(info.value, D365Error)
    with pytest.raises(BatchFormatError, match="Expected a multipart/mixed"):
        decode_batch_response(b"<html/>", "text/html")


def test_malformed_status_line_in_response():
    body = RESPONSE_BODY.replace(b"HTTP/1.1 200 OK", b"HTTP/1.1 OK")
    with pytest.raises(BatchFormatError, match="Malformed status line"):
        decode_batch_response(body, f"multipart/mixed; boundary={BATCH_RESPONSE}")


def test_boundary_prefix_inside_body_is_not_a_delimiter():
    # "--batch_x" followed by more name characters is a different boundary.
    # The encoder is stricter (it refuses any occurrence), so build the body by hand.
    content_type, body = encode_batch_request(
        [BatchRequest("POST", "tasks", body=b"PLACEHOLDER")], boundary="batch_xy"
    )
    tricky = b"{}\r\n--batch_xyz\r\n"
    (decoded,) = decode_batch_request(body.replace(b"PLACEHOLDER", tricky), content_type)
    assert decoded == BatchRequest("POST", "tasks", body=tricky)


# -- round trips ------------------------------------------------------------------------------

_header_name = st.from_regex(r"\A[A-Za-z][A-Za-z0-9-]{0,15}\Z")
_header_value = st.text(
    st.characters(min_codepoint=0x20, max_codepoint=0x2FF, exclude_characters="\x7f"),
    max_size=20,
).map(str.strip)
_headers = st.lists(st.tuples(_header_name, _header_value), max_size=4).map(tuple)
_url = st.one_of(
    st.from_regex(r"\A/api/data/v9\.2/[a-z]{1,10}(\([0-9a-f-]{1,36}\))?\Z"),
    st.from_regex(r"\A\$[1-9][0-9]{0,2}(/[a-z]{1,8})?\Z"),
    st.from_regex(r"\Ahttps://contoso\.api\.crm\.dynamics\.com/api/data/v9\.2/[a-z]{1,8}\Z"),
)
_tricky_text = st.text(max_size=60) | st.sampled_from(
    [
        "--batch_",
        "\r\n--changeset_\r\n",
        "--batchresponse_x--\r\n",
        "\r\n\r\nHTTP/1.1 200 OK\r\n",
        "Content-ID: 9\r\n",
        "ünïcødé ✓ 𝄞",
    ]
)
_body = st.one_of(
    st.just(b""),
    st.lists(_tricky_text, max_size=4).map(lambda xs: "".join(xs).encode("utf-8")),
    st.binary(max_size=40),
)
_method = st.sampled_from(["GET", "POST", "PATCH", "PUT", "DELETE"])


@st.composite
def _batches(draw: st.DrawFn) -> list[BatchRequest | ChangeSet]:
    ids = iter(range(1, 10_000))
    items: list[BatchRequest | ChangeSet] = []
    for _ in range(draw(st.integers(0, 4))):
        if draw(st.booleans()):
            members = tuple(
                BatchRequest(
                    draw(st.sampled_from(["POST", "PATCH", "PUT", "DELETE"])),
                    draw(_url),
                    headers=draw(_headers),
                    body=draw(_body),
                    content_id=str(next(ids)),
                )
                for _ in range(draw(st.integers(1, 3)))
            )
            items.append(ChangeSet(members))
        else:
            content_id = str(next(ids)) if draw(st.booleans()) else None
            items.append(
                BatchRequest(
                    draw(_method),
                    draw(_url),
                    headers=draw(_headers),
                    body=draw(_body),
                    content_id=content_id,
                )
            )
    return items


@st.composite
def _results(draw: st.DrawFn) -> list[BatchResponse | ChangeSetResponse]:
    status = st.sampled_from([200, 201, 204, 400, 404, 412, 429, 500])
    items: list[BatchResponse | ChangeSetResponse] = []
    for _ in range(draw(st.integers(0, 4))):
        if draw(st.booleans()):
            members = tuple(
                BatchResponse(
                    draw(status), headers=draw(_headers), body=draw(_body), content_id=str(i)
                )
                for i in range(draw(st.integers(1, 3)))
            )
            items.append(ChangeSetResponse(members))
        else:
            items.append(BatchResponse(draw(status), headers=draw(_headers), body=draw(_body)))
    return items


@settings(max_examples=150, deadline=None)
@given(_batches())
def test_request_round_trip(items: list[BatchRequest | ChangeSet]):
    content_type, body = encode_batch_request(items)
    assert body.endswith(b"--\r\n")
    assert decode_batch_request(body, content_type) == items


@settings(max_examples=150, deadline=None)
@given(_results())
def test_response_round_trip(items: list[BatchResponse | ChangeSetResponse]):
    content_type, body = encode_batch_response(items)
    assert decode_batch_response(body, content_type) == items
