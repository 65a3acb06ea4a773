"""Wire details of the sandbox's writes that the push relies on (reference §5, §6)."""

from __future__ import annotations

import uuid

import httpx
import pandas as pd
import pytest

from d365nb._client import Connection
from d365nb._multipart import BatchRequest, decode_batch_response, encode_batch_request
from d365nb._report import PushReport
from d365nb._sync import run_sync

pytestmark = pytest.mark.sandbox


def test_key_segment_is_percent_decoded_at_top_level(conn: Connection) -> None:
    number = f"top {uuid.uuid4().hex[:6]}"
    segment = "accountnumber='" + number.replace(" ", "%20") + "'"

    run_sync(conn.arequest("PATCH", f"accounts({segment})", json={"name": number}))

    back = conn.read("accounts", filter=f"name eq '{number}'", progress=False)
    assert back["accountnumber"].tolist() == [number]


def test_key_segment_is_percent_decoded_inside_batch(conn: Connection) -> None:
    # An inner request line is an HTTP request-target: percent-encoded, decoded by the
    # service exactly as at top level (a space cannot appear raw in a request line).
    number = f"batch {uuid.uuid4().hex[:6]}"
    base = httpx.URL(conn.api_root).path
    url = f"{base}accounts(accountnumber='{number.replace(' ', '%20')}')"
    content_type, body = encode_batch_request(
        [BatchRequest.from_json("PATCH", url, {"name": number})]
    )

    response = run_sync(
        conn.arequest("POST", "$batch", content=body, headers={"Content-Type": content_type})
    )

    (part,) = decode_batch_response(response.content, response.headers["content-type"])
    assert getattr(part, "status", None) == 204
    back = conn.read("accounts", filter=f"name eq '{number}'", progress=False)
    assert back["accountnumber"].tolist() == [number]


def test_push_by_alternate_key_with_a_space(conn: Connection) -> None:
    number = f"A {uuid.uuid4().hex[:6]}"
    df = pd.DataFrame({"accountnumber": [number], "name": [number]})

    report = df.d365.push("accounts", key="accountnumber", conn=conn, progress=False)

    assert isinstance(report, PushReport) and report.counts["created"] == 1
    back = conn.read("accounts", filter=f"name eq '{number}'", progress=False)
    assert back["accountnumber"].tolist() == [number]


def test_bind_by_alternate_key_with_a_space(conn: Connection) -> None:
    number = f"P {uuid.uuid4().hex[:6]}"
    parent = pd.DataFrame({"accountnumber": [number], "name": [number]})
    made = parent.d365.push("accounts", mode="create", conn=conn, progress=False)
    child = pd.DataFrame(
        {"name": [f"child of {number}"], "parentaccountid.accountnumber": [number]}
    )

    report = child.d365.push("accounts", mode="create", conn=conn, progress=False)

    assert isinstance(made, PushReport) and isinstance(report, PushReport)
    assert report.ok, report
    back = conn.read("accounts", filter=f"name eq 'child of {number}'", progress=False)
    assert back["parentaccountid"].tolist() == made.rows["id"].tolist()
