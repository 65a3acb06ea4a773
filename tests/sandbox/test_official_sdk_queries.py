"""The official SDK's query families against the sandbox, unchanged (issue 20, item 6):
the fluent query builder (filters, paging, expand, counts, formatted values) and
`to_dataframe()`, and `client.dataframe`."""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import urlsplit

import pandas as pd
import pytest
from azure.identity import ClientSecretCredential
from PowerPlatform.Dataverse.client import DataverseClient
from PowerPlatform.Dataverse.models.filters import col

from d365nb.sandbox import Sandbox

pytestmark = pytest.mark.sandbox


@pytest.fixture
def client(sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch) -> Iterator[DataverseClient]:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", sandbox.ca_cert)
    credential = ClientSecretCredential(
        sandbox.tenant,
        sandbox.confidential_client_id,
        sandbox.client_secret,
        authority=urlsplit(sandbox.base_url).netloc,
        connection_verify=sandbox.ca_cert,
        disable_instance_discovery=True,
    )
    with DataverseClient(sandbox.base_url, credential) as dv:
        yield dv
    credential.close()


def _all(client: DataverseClient, table: str, *columns: str) -> list[dict[str, object]]:
    return [dict(r) for r in client.records.list(table, select=list(columns))]


def test_query_builder_filters_order_and_top(client: DataverseClient) -> None:
    everyone = _all(client, "account", "name", "revenue", "statecode")
    rich = sorted(
        (r for r in everyone if r["statecode"] == 0 and (r["revenue"] or 0) > 100_000),
        key=lambda r: r["revenue"],  # type: ignore[arg-type,return-value]
        reverse=True,
    )
    result = list(
        client.query.builder("account")
        .select("name", "revenue")
        .where(col("statecode") == 0)
        .where(col("revenue") > 100_000)
        .order_by("revenue", descending=True)
        .top(5)
        .execute()
    )
    assert [r["accountid"] for r in result] == [r["accountid"] for r in rich[:5]]

    names = [r["name"] for r in everyone[:3]]
    picked = list(
        client.query.builder("account").select("name").where(col("name").in_(names)).execute()
    )
    assert sorted(r["name"] for r in picked) == sorted(names)

    either = list(
        client.query.builder("account")
        .select("name")
        .where((col("statecode") == 0) | (col("statecode") == 1))
        .execute()
    )
    assert len(either) == len(everyone)


def test_query_builder_pages_counts_and_formatted_values(client: DataverseClient) -> None:
    pages = list(client.query.builder("contact").select("fullname").page_size(7).execute_pages())
    assert len(pages) > 1 and all(len(list(p)) <= 7 for p in pages)
    with_labels = list(
        client.query.builder("account")
        .select("name", "industrycode")
        .where(col("industrycode").is_not_null())
        .include_formatted_values()
        .top(3)
        .execute()
    )
    assert with_labels
    label = "industrycode@OData.Community.Display.V1.FormattedValue"
    assert all(isinstance(r[label], str) for r in with_labels)


def test_query_builder_expand_and_to_dataframe(client: DataverseClient) -> None:
    rows = list(
        client.query.builder("contact")
        .select("fullname")
        .expand("parentcustomerid_account")
        .top(10)
        .execute()
    )
    assert rows and all("parentcustomerid_account" in r for r in rows)
    frame = (
        client.query.builder("account")
        .select("name", "revenue", "numberofemployees")
        .order_by("name")
        .execute()
        .to_dataframe()
    )
    assert isinstance(frame, pd.DataFrame)
    assert len(frame) == len(_all(client, "account", "name"))
    assert {"name", "revenue", "numberofemployees"} <= set(frame.columns)


def test_dataframe_operations_round_trip(client: DataverseClient) -> None:
    frame = pd.DataFrame({"lastname": ["Frame One", "Frame Two"], "firstname": ["A", "B"]})
    ids = client.dataframe.create("contact", frame)
    assert len(ids) == 2
    framed = col("lastname").startswith("Frame ")
    back = client.query.builder("contact").select("lastname").where(framed).execute()
    assert sorted(back.to_dataframe()["lastname"]) == ["Frame One", "Frame Two"]
    changes = pd.DataFrame({"contactid": ids, "firstname": ["C", "D"]})
    client.dataframe.update("contact", changes, id_column="contactid")
    again = client.query.builder("contact").select("firstname").where(framed).execute()
    assert sorted(again.to_dataframe()["firstname"]) == ["C", "D"]
    client.dataframe.delete("contact", ids)
    gone = client.query.builder("contact").select("lastname").where(framed).execute()
    assert len(gone.to_dataframe()) == 0
