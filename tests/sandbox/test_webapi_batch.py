"""`$batch` over HTTPS: Microsoft's wire format, change sets, Content-ID references, errors."""

from __future__ import annotations

import re
import uuid
from typing import Any

import httpx
import pytest

from d365nb._multipart import (
    BatchRequest,
    BatchResponse,
    ChangeSet,
    ChangeSetResponse,
    decode_batch_response,
    encode_batch_request,
)
from d365nb.sandbox import Sandbox

pytestmark = pytest.mark.sandbox

GUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"


def _send(api: httpx.Client, items: list[Any], prefer: str | None = None) -> httpx.Response:
    content_type, body = encode_batch_request(items)
    headers = {"Content-Type": content_type}
    if prefer:
        headers["Prefer"] = prefer
    return api.post("$batch", content=body, headers=headers)


def test_batch_response_bytes_match_microsofts_example(api: httpx.Client, sandbox: Sandbox) -> None:
    parent = api.get("accounts?$select=name&$top=1").json()["value"][0]["accountid"]
    tag = uuid.uuid4().hex[:8]
    crlf = "\r\n"
    part = (
        "--changeset_X\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: "
        "binary\r\nContent-ID: {n}\r\n\r\nPOST /api/data/v9.2/contacts HTTP/1.1\r\n"
        "Content-Type: application/json; type=entry\r\n\r\n"
        '{{\r\n  "lastname": "{tag} {n}",\r\n  "parentcustomerid_account@odata.bind": '
        '"accounts({parent})"\r\n}}\r\n'
    )
    body = (
        '--batch_B\r\nContent-Type: multipart/mixed; boundary="changeset_X"\r\n\r\n'
        + part.format(n=1, tag=tag, parent=parent)
        + part.format(n=2, tag=tag, parent=parent)
        + "--changeset_X--\r\n\r\n--batch_B\r\nContent-Type: application/http\r\n"
        "Content-Transfer-Encoding: binary\r\n\r\n"
        f"GET /api/data/v9.2/contacts?$select=lastname&$filter=startswith(lastname,'{tag}')"
        "&$orderby=lastname HTTP/1.1\r\n\r\n\r\n--batch_B--\r\n"
    )
    r = api.post(
        "$batch",
        content=body.encode(),
        headers={"Content-Type": 'multipart/mixed; boundary="batch_B"'},
    )
    assert r.status_code == 200, r.text
    m = re.fullmatch(
        r"multipart/mixed; boundary=(batchresponse_" + GUID + ")", r.headers["content-type"]
    )
    assert m
    text = r.content.decode()
    boundary = m.group(1)
    found = re.search(r"boundary=(changesetresponse_" + GUID + ")", text)
    assert found is not None
    cs = found.group(1)
    ids = re.findall(
        r"OData-EntityId: " + re.escape(sandbox.service_url) + r"contacts\((" + GUID + r")\)", text
    )
    assert len(ids) == 2
    rows = api.get(
        "contacts",
        params={
            "$select": "lastname",
            "$filter": f"startswith(lastname,'{tag}')",
            "$orderby": "lastname",
        },
    ).json()["value"]
    created = (
        "--{cs}\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n"
        "Content-ID: {n}\r\n\r\nHTTP/1.1 204 No Content\r\nOData-Version: 4.0\r\n"
        "Location: {url}\r\nOData-EntityId: {url}\r\n\r\n\r\n"
    )
    get_body = (
        '{"@odata.context":"' + sandbox.service_url + '$metadata#contacts(lastname)",'
        '"value":['
        + ",".join(
            '{"@odata.etag":"' + row["@odata.etag"].replace('"', '\\"') + '",'
            '"lastname":"' + row["lastname"] + '","contactid":"' + row["contactid"] + '"}'
            for row in rows
        )
        + "]}"
    )
    expected = (
        f"--{boundary}{crlf}Content-Type: multipart/mixed; boundary={cs}{crlf}{crlf}"
        + created.format(cs=cs, n=1, url=f"{sandbox.service_url}contacts({ids[0]})")
        + created.format(cs=cs, n=2, url=f"{sandbox.service_url}contacts({ids[1]})")
        + f"--{cs}--{crlf}--{boundary}{crlf}Content-Type: application/http{crlf}"
        f"Content-Transfer-Encoding: binary{crlf}{crlf}HTTP/1.1 200 OK{crlf}"
        f"Content-Type: application/json; odata.metadata=minimal; odata.streaming=true{crlf}"
        f"OData-Version: 4.0{crlf}{crlf}{get_body}{crlf}--{boundary}--{crlf}"
    )
    assert text == expected
    assert [row["contactid"] for row in rows] == ids


def test_change_set_rolls_back_as_a_unit(api: httpx.Client) -> None:
    tag = uuid.uuid4().hex[:8]
    items = [
        ChangeSet(
            [
                BatchRequest.from_json(
                    "POST", "/api/data/v9.2/accounts", {"name": f"CS {tag}"}, content_id="1"
                ),
                BatchRequest.from_json(
                    "POST", "/api/data/v9.2/accounts", {"name": "x" * 500}, content_id="2"
                ),
            ]
        )
    ]
    r = _send(api, items)
    assert r.status_code == 400
    responses = decode_batch_response(r.content, r.headers["content-type"])
    assert len(responses) == 1
    failed = responses[0]
    assert isinstance(failed, BatchResponse)
    assert failed.status == 400 and failed.content_id == "2"
    assert failed.header("REQ_ID")
    assert failed.json()["error"]["code"] == "0x80044331"
    assert api.get("accounts", params={"$filter": f"name eq 'CS {tag}'"}).json()["value"] == []


def test_content_id_references_in_url_and_bind(api: httpx.Client) -> None:
    tag = uuid.uuid4().hex[:8]
    items = [
        ChangeSet(
            [
                BatchRequest.from_json(
                    "POST", "/api/data/v9.2/accounts", {"name": f"Ref {tag}"}, content_id="a"
                ),
                BatchRequest.from_json(
                    "PATCH", "$a", {"telephone1": "+1-555-0199"}, content_id="b"
                ),
                BatchRequest.from_json(
                    "POST",
                    "/api/data/v9.2/contacts",
                    {"lastname": tag, "parentcustomerid_account@odata.bind": "$a"},
                    content_id="c",
                ),
            ]
        )
    ]
    r = _send(api, items)
    assert r.status_code == 200, r.text
    (cs,) = decode_batch_response(r.content, r.headers["content-type"])
    assert isinstance(cs, ChangeSetResponse)
    assert [x.status for x in cs.responses] == [204, 204, 204]
    assert [x.content_id for x in cs.responses] == ["a", "b", "c"]
    account = api.get(
        "accounts", params={"$filter": f"name eq 'Ref {tag}'", "$select": "telephone1"}
    ).json()["value"][0]
    assert account["telephone1"] == "+1-555-0199"
    contact = api.get(
        "contacts", params={"$filter": f"lastname eq '{tag}'", "$select": "_parentcustomerid_value"}
    ).json()["value"][0]
    assert contact["_parentcustomerid_value"] == account["accountid"]


def test_unknown_content_id_reference(api: httpx.Client) -> None:
    r = _send(
        api, [ChangeSet([BatchRequest.from_json("PATCH", "$9", {"name": "x"}, content_id="1")])]
    )
    assert r.status_code == 400
    (part,) = decode_batch_response(r.content, r.headers["content-type"])
    assert isinstance(part, BatchResponse)
    assert part.json()["error"]["message"] == (
        "Content-ID Reference: '$9' does not exist in the batch context."
    )


def test_stop_at_first_error_or_continue_on_error(api: httpx.Client) -> None:
    missing = "00000000-0000-0000-0000-00000000beef"
    items = [
        BatchRequest("GET", f"/api/data/v9.2/accounts({missing})"),
        BatchRequest("GET", "/api/data/v9.2/accounts?$select=name&$top=1"),
    ]
    r = _send(api, items)
    assert r.status_code == 400
    parts = decode_batch_response(r.content, r.headers["content-type"])
    assert [p.status for p in parts if isinstance(p, BatchResponse)] == [404]
    r = _send(api, items, prefer="odata.continue-on-error")
    assert r.status_code == 200
    parts = decode_batch_response(r.content, r.headers["content-type"])
    assert [p.status for p in parts if isinstance(p, BatchResponse)] == [404, 200]
    assert isinstance(parts[1], BatchResponse)
    assert len(parts[1].json()["value"]) == 1


def test_malformed_and_oversized_batches(api: httpx.Client) -> None:
    body = b"--batch_B\nContent-Type: application/http\n\nGET /api/data/v9.2/accounts HTTP/1.1\n"
    r = api.post(
        "$batch", content=body, headers={"Content-Type": "multipart/mixed; boundary=batch_B"}
    )
    assert r.status_code == 400
    assert r.json()["error"]["code"] == "0x80048d19"
    part = (
        "--batch_B\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary"
        "\r\n\r\nGET /api/data/v9.2/WhoAmI HTTP/1.1\r\n\r\n\r\n"
    )
    body = (part * 1001 + "--batch_B--\r\n").encode()
    r = api.post(
        "$batch", content=body, headers={"Content-Type": "multipart/mixed; boundary=batch_B"}
    )
    assert r.status_code == 400
    assert "'1000'" in r.json()["error"]["message"]


def test_get_parts_carry_their_own_prefer(api: httpx.Client) -> None:
    items = [
        BatchRequest(
            "GET",
            "/api/data/v9.2/accounts?$select=industrycode&$filter=industrycode%20ne%20null&$top=1",
            headers={"Prefer": 'odata.include-annotations="*"'},
        )
    ]
    r = _send(api, items)
    (part,) = decode_batch_response(r.content, r.headers["content-type"])
    assert isinstance(part, BatchResponse)
    row = part.json()["value"][0]
    assert "industrycode@OData.Community.Display.V1.FormattedValue" in row


def test_inner_request_targets_are_percent_decoded(api: httpx.Client) -> None:
    number = f"b {uuid.uuid4().hex[:6]}"
    url = "/api/data/v9.2/accounts(accountnumber='" + number.replace(" ", "%20") + "')"
    r = _send(api, [BatchRequest.from_json("PATCH", url, {"name": number})])
    assert r.status_code == 200, r.text
    row = api.get(
        "accounts", params={"$filter": f"name eq '{number}'", "$select": "accountnumber"}
    ).json()["value"]
    assert [a["accountnumber"] for a in row] == [number]
