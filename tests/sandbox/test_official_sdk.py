"""Microsoft's official Python SDK (PowerPlatform-Dataverse-Client) against the sandbox, unchanged.

The SDK signs in through azure-identity's `ClientSecretCredential` pointed at the
sandbox's authority, and talks over `requests`, which trusts the sandbox CA through
`REQUESTS_CA_BUNDLE`.  If the SDK fails here, the sandbox is wrong.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest
from azure.identity import ClientSecretCredential
from PowerPlatform.Dataverse.client import DataverseClient
from PowerPlatform.Dataverse.core.errors import HttpError
from PowerPlatform.Dataverse.models import UpsertItem

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


def _retrieve(client: DataverseClient, table: str, record_id: str, column: str) -> object:
    record = client.records.retrieve(table, record_id, select=[column])
    assert record is not None
    return record[column]


def test_official_sdk_round_trip(client: DataverseClient) -> None:
    tag = uuid.uuid4().hex[:8]
    # create + get
    account_id = client.records.create("account", {"name": f"SDK {tag}", "revenue": 100.0})
    record = client.records.retrieve("account", account_id, select=["name", "revenue"])
    assert record is not None
    assert record["name"] == f"SDK {tag}" and record["revenue"] == 100.0

    # query with paging past several pages
    pages = [
        list(page)
        for page in client.records.list_pages("contact", select=["fullname"], page_size=7)
    ]
    assert len(pages) > 3
    assert all(len(page) <= 7 for page in pages)
    ids = [row["contactid"] for page in pages for row in page]
    assert (
        len(ids) == len(set(ids)) == len(list(client.records.list("contact", select=["fullname"])))
    )

    # filter + orderby through the SDK
    rows = list(
        client.records.list(
            "account", select=["name"], filter=f"name eq 'SDK {tag}'", orderby=["name asc"]
        )
    )
    assert [row["accountid"] for row in rows] == [account_id]

    # update
    client.records.update("account", account_id, {"telephone1": "+1-555-0123"})
    assert _retrieve(client, "account", account_id, "telephone1") == ("+1-555-0123")

    # upsert by alternate key: one item (PATCH) and several (UpsertMultiple)
    number = f"SDK-{tag}"
    client.records.upsert(
        "account",
        [UpsertItem(alternate_key={"accountnumber": number}, record={"name": f"Upserted {tag}"})],
    )
    client.records.upsert(
        "account",
        [
            UpsertItem(alternate_key={"accountnumber": number}, record={"name": f"Again {tag}"}),
            UpsertItem(
                alternate_key={"accountnumber": f"{number}-2"}, record={"name": f"Second {tag}"}
            ),
        ],
    )
    found = list(
        client.records.list(
            "account",
            select=["name", "accountnumber"],
            filter=f"startswith(accountnumber,'{number}')",
            orderby=["accountnumber asc"],
        )
    )
    assert [(r["accountnumber"], r["name"]) for r in found] == [
        (number, f"Again {tag}"),
        (f"{number}-2", f"Second {tag}"),
    ]

    # CreateMultiple
    created = client.records.create("contact", [{"lastname": f"Bulk {tag} {i}"} for i in range(3)])
    assert len(created) == 3
    assert _retrieve(client, "contact", created[1], "fullname") == (f"Bulk {tag} 1")

    # a batch with a change set
    batch = client.batch.new()
    with batch.changeset() as cs:
        cs.records.create("account", {"name": f"Batch {tag} A"})
        cs.records.create("account", {"name": f"Batch {tag} B"})
    batch.records.retrieve("account", account_id, select=["name"])
    result = batch.execute()
    statuses = [item.status_code for item in result.responses]
    assert statuses == [204, 204, 200], statuses
    names = sorted(
        row["name"]
        for row in client.records.list(
            "account", select=["name"], filter=f"startswith(name,'Batch {tag}')"
        )
    )
    assert names == [f"Batch {tag} A", f"Batch {tag} B"]

    # delete
    client.records.delete("account", account_id)
    assert list(client.records.list("account", filter=f"name eq 'SDK {tag}'")) == []
    assert client.records.retrieve("account", account_id) is None


def test_official_sdk_metadata_fetchxml_and_bulk_delete(client: DataverseClient) -> None:
    info = client.tables.get("account")
    assert info is not None
    assert (info.entity_set_name, info.primary_id_attribute) == ("accounts", "accountid")
    assert "contact" in {t["LogicalName"] for t in client.tables.list()}

    fetch = (
        "<fetch count='7'><entity name='contact'><attribute name='fullname'/>"
        "<order attribute='fullname'/></entity></fetch>"
    )
    rows = list(client.query.fetchxml(fetch).execute())
    expected = list(client.records.list("contact", select=["fullname"]))
    assert len(rows) == len(expected)

    tag = uuid.uuid4().hex[:8]
    ids = client.records.create("lead", [{"lastname": f"Doomed {tag} {i}"} for i in range(3)])
    job = client.records.delete("lead", ids)
    assert isinstance(job, str) and job
    assert all(client.records.retrieve("lead", i) is None for i in ids)

    # As an environment without the preview: the unknown query option is refused.
    with pytest.raises(HttpError, match="query parameter sql is not supported"):
        client.query.sql("SELECT name FROM account")
