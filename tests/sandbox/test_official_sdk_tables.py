"""Custom tables through Microsoft's official SDK, unchanged (issue 20, item 5).

`client.tables.create` posts `CreateEntities`, reads `EntityDefinitions` back, and the new
table then takes records, queries, new columns and an alternate key like a seeded one.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from enum import IntEnum
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from azure.identity import ClientSecretCredential
from PowerPlatform.Dataverse.client import DataverseClient
from PowerPlatform.Dataverse.core.errors import HttpError, MetadataError
from PowerPlatform.Dataverse.models import UpsertItem
from PowerPlatform.Dataverse.models.filters import col

from d365nb.sandbox import Sandbox, start

from .conftest import app_token, tls

pytestmark = pytest.mark.sandbox


class Size(IntEnum):
    SMALL = 1
    LARGE = 2


@pytest.fixture(scope="module")
def own(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    """A sandbox of its own: these tests create tables."""
    with start(data_dir=tmp_path_factory.mktemp("tables"), database=":memory:", rows=5) as sb:
        yield sb


@pytest.fixture
def client(own: Sandbox, monkeypatch: pytest.MonkeyPatch) -> Iterator[DataverseClient]:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", own.ca_cert)
    credential = ClientSecretCredential(
        own.tenant,
        own.confidential_client_id,
        own.client_secret,
        authority=urlsplit(own.base_url).netloc,
        connection_verify=own.ca_cert,
        disable_instance_discovery=True,
    )
    with DataverseClient(own.base_url, credential) as dv:
        yield dv
    credential.close()


def test_create_use_extend_and_delete_a_custom_table(client: DataverseClient) -> None:
    name = f"new_Gadget{uuid.uuid4().hex[:6]}"
    info = client.tables.create(
        name,
        {
            "new_Code": "string",
            "new_Count": "int",
            "new_Price": "decimal",
            "new_Weight": "float",
            "new_Active": "bool",
            "new_Since": "datetime",
            "new_Size": Size,
        },
        display_name="Gadget",
    )
    logical = name.lower()
    assert info["table_logical_name"] == logical
    assert info["entity_set_name"] == f"{logical}s"
    assert info["primary_id_attribute"] == f"{logical}id"

    got = client.tables.get(name)
    assert got is not None and got["entity_set_name"] == f"{logical}s"

    first = client.records.create(
        logical,
        {
            "new_name": "first",
            "new_code": "G-1",
            "new_count": 3,
            "new_price": 9.5,
            "new_weight": 0.25,
            "new_active": True,
            "new_since": "2026-01-02",
            "new_size": Size.LARGE.value,
        },
    )
    row = client.records.retrieve(logical, first, select=["new_name", "new_count", "new_size"])
    assert row is not None and row["new_name"] == "first" and row["new_count"] == 3
    assert row["new_size"] == Size.LARGE.value
    ids = client.records.create(logical, [{"new_name": f"bulk {i}"} for i in range(3)])
    assert len(ids) == 3
    rows = list(client.records.list(logical, select=["new_name"], filter="new_count eq 3"))
    assert [r["new_name"] for r in rows] == ["first"]

    client.tables.add_columns(name, {"new_Notes": "memo"})
    client.records.update(logical, first, {"new_notes": "added later"})
    again = client.records.retrieve(logical, first, select=["new_notes"])
    assert again is not None and again["new_notes"] == "added later"

    key = client.tables.create_alternate_key(name, "new_code_key", ["new_code"])
    assert key.schema_name == "new_code_key"
    assert [list(k.key_attributes) for k in client.tables.get_alternate_keys(name)] == [
        ["new_code"]
    ]
    client.records.upsert(
        logical,
        [UpsertItem(alternate_key={"new_code": "G-1"}, record={"new_count": 4})],
    )
    updated = client.records.retrieve(logical, first, select=["new_count"])
    assert updated is not None and updated["new_count"] == 4

    client.tables.delete(name)
    assert client.tables.get(name) is None
    try:
        gone = client.records.retrieve(logical, first)
    except (HttpError, MetadataError):
        gone = None
    assert gone is None


def test_a_duplicate_table_is_refused(client: DataverseClient) -> None:
    name = f"new_Twice{uuid.uuid4().hex[:6]}"
    client.tables.create(name, {"new_Code": "string"})
    with pytest.raises(MetadataError):
        client.tables.create(name, {"new_Code": "string"})
    client.tables.delete(name)


def test_entity_definitions_post_and_the_service_document(own: Sandbox) -> None:
    headers = {"Authorization": f"Bearer {app_token(own)}"}
    label = {"LocalizedLabels": [{"Label": "Widget", "LanguageCode": 1033}]}
    body = {
        "@odata.type": "Microsoft.Dynamics.CRM.EntityMetadata",
        "SchemaName": "new_Widget",
        "DisplayName": label,
        "DisplayCollectionName": label,
        "OwnershipType": "UserOwned",
        "HasActivities": False,
        "Attributes": [
            {
                "@odata.type": "Microsoft.Dynamics.CRM.StringAttributeMetadata",
                "SchemaName": "new_Name",
                "IsPrimaryName": True,
                "MaxLength": 10,
                "DisplayName": label,
            }
        ],
    }
    with httpx.Client(base_url=own.service_url, verify=tls(own), headers=headers) as api:
        r = api.post("EntityDefinitions", json=body)
        assert r.status_code == 204, r.text
        assert "EntityDefinitions(" in r.headers["odata-entityid"]
        names = {s["name"] for s in api.get("").json()["value"]}
        assert "new_widgets" in names
        assert 'Name="new_widget"' in api.get("$metadata").text
        too_long = api.post("new_widgets", json={"new_name": "x" * 11})
        assert too_long.status_code == 400 and too_long.json()["error"]["code"] == "0x80044331"
        assert api.post("new_widgets", json={"new_name": "ok"}).status_code == 204
        no_prefix = api.post("EntityDefinitions", json={**body, "SchemaName": "Widget"})
        assert no_prefix.status_code == 400
        system = api.delete("EntityDefinitions(LogicalName='account')")
        assert system.status_code == 400
        assert api.delete("EntityDefinitions(LogicalName='new_widget')").status_code == 204
        assert api.get("new_widgets").status_code == 404


def test_reset_forgets_custom_tables(tmp_path: Path) -> None:
    with start(data_dir=tmp_path, database=":memory:", rows=5) as sb:
        headers = {"Authorization": f"Bearer {app_token(sb)}"}
        with httpx.Client(base_url=sb.service_url, verify=tls(sb), headers=headers) as api:
            attrs = [
                {
                    "@odata.type": "Microsoft.Dynamics.CRM.StringAttributeMetadata",
                    "SchemaName": "new_Name",
                    "IsPrimaryName": True,
                }
            ]
            r = api.post("EntityDefinitions", json={"SchemaName": "new_Thing", "Attributes": attrs})
            assert r.status_code == 204, r.text
            assert api.get("new_things").status_code == 200
            sb.reset()
            assert api.get("new_things").status_code == 404


def test_one_to_many_relationship_lookup_bind_and_expand(client: DataverseClient) -> None:
    tag = uuid.uuid4().hex[:6]
    name = f"new_Order{tag}"
    logical = name.lower()
    client.tables.create(name, {"new_Total": "decimal"})
    lookup = f"new_Account{tag}"
    rel = client.tables.create_lookup_field(logical, lookup, "account", display_name="Account")
    assert rel.relationship_schema_name == f"account_{logical}_{lookup}"
    found = client.tables.get_relationship(rel.relationship_schema_name)
    assert found is not None and found.referencing_entity == logical

    account = client.records.create("account", {"name": f"Buyer {tag}"})
    order = client.records.create(
        logical, {"new_name": f"Order {tag}", f"{lookup}@odata.bind": f"/accounts({account})"}
    )
    row = client.records.retrieve(logical, order, select=[f"_{lookup.lower()}_value"])
    assert row is not None and row[f"_{lookup.lower()}_value"] == account
    # the one side sees its orders through the relationship's collection navigation property
    with_orders = list(
        client.query.builder("account")
        .select("name")
        .where(col("accountid") == account)
        .expand(rel.relationship_schema_name)
        .execute()
    )
    assert [o[f"{logical}id"] for o in with_orders[0][rel.relationship_schema_name]] == [order]
    # disassociate: bind null
    client.records.update(logical, order, {f"{lookup}@odata.bind": None})
    cleared = client.records.retrieve(logical, order, select=[f"_{lookup.lower()}_value"])
    assert cleared is not None and cleared[f"_{lookup.lower()}_value"] is None

    assert rel.relationship_id
    client.tables.delete_relationship(rel.relationship_id)
    assert client.tables.get_relationship(rel.relationship_schema_name) is None
    client.tables.delete(name)


def test_file_upload_small_and_chunked_then_download(
    client: DataverseClient, own: Sandbox, tmp_path: Path
) -> None:
    tag = uuid.uuid4().hex[:6]
    name = f"new_Doc{tag}"
    logical = name.lower()
    client.tables.create(name, {"new_Title": "string"})
    row = client.records.create(logical, {"new_name": "with files"})
    small = tmp_path / "small.txt"
    small.write_bytes(b"hello file column")
    # the SDK adds the file column (FileAttributeMetadata) when it is missing
    client.files.upload(logical, row, "new_Small", str(small), mode="small")
    big = tmp_path / "big.bin"
    payload = bytes(range(256)) * (4096 * 9)  # 9 MiB: three chunks of the advertised 4 MB
    big.write_bytes(payload)
    client.files.upload(logical, row, "new_Big", str(big), mode="chunk")

    headers = {"Authorization": f"Bearer {app_token(own)}"}
    with httpx.Client(base_url=own.service_url, verify=tls(own), headers=headers) as api:
        record = api.get(f"{logical}s({row})?$select=new_small,new_big").json()
        uuid.UUID(record["new_small"])  # a file column holds the file's id
        uuid.UUID(record["new_big"])
        r = api.get(f"{logical}s({row})/new_small/$value")
        assert r.status_code == 200 and r.content == b"hello file column"
        assert r.headers["x-ms-file-name"] == "small.txt"
        r = api.get(f"{logical}s({row})/new_big/$value")
        assert r.content == payload and r.headers["x-ms-file-size"] == str(len(payload))
        part = api.get(f"{logical}s({row})/new_big/$value", headers={"Range": "bytes=0-9"})
        assert part.status_code == 206 and part.content == payload[:10]
        # If-None-Match: null refuses to replace an existing file
        again = api.patch(
            f"{logical}s({row})/new_small",
            content=b"x",
            headers={"If-None-Match": "null", "Content-Type": "application/octet-stream"},
        )
        assert again.status_code == 412
        assert api.delete(f"{logical}s({row})/new_small").status_code == 204
        assert api.get(f"{logical}s({row})/new_small/$value").status_code == 404
    client.tables.delete(name)


def test_many_to_many_relationship_associate_and_disassociate(
    client: DataverseClient, own: Sandbox
) -> None:
    from PowerPlatform.Dataverse.models.relationship import ManyToManyRelationshipMetadata

    tag = uuid.uuid4().hex[:6]
    project = f"new_Project{tag}"
    client.tables.create(project, {"new_Code": "string"})
    schema = f"new_contact_project{tag}"
    rel = client.tables.create_many_to_many_relationship(
        ManyToManyRelationshipMetadata(
            schema_name=schema,
            entity1_logical_name="contact",
            entity2_logical_name=project.lower(),
        )
    )
    assert rel.relationship_schema_name == schema
    found = client.tables.get_relationship(schema)
    assert found is not None and found.relationship_type == "many_to_many"

    projects = project.lower() + "s"
    p1 = client.records.create(project.lower(), {"new_name": "P1"})
    p2 = client.records.create(project.lower(), {"new_name": "P2"})
    contact = client.records.create("contact", {"lastname": f"Member {tag}"})
    headers = {"Authorization": f"Bearer {app_token(own)}"}
    with httpx.Client(base_url=own.service_url, verify=tls(own), headers=headers) as api:
        for pid in (p1, p2):
            ref = {"@odata.id": f"{own.service_url}{projects}({pid})"}
            r = api.post(f"contacts({contact})/{schema}/$ref", json=ref)
            assert r.status_code == 204, r.text
        twice = api.post(
            f"contacts({contact})/{schema}/$ref",
            json={"@odata.id": f"{own.service_url}{projects}({p1})"},
        )
        assert twice.status_code == 400
        linked = api.get(f"contacts({contact})/{schema}?$select=new_name").json()["value"]
        assert sorted(p["new_name"] for p in linked) == ["P1", "P2"]
        back = api.get(f"{projects}({p1})/{schema}?$select=lastname").json()["value"]
        assert [c["lastname"] for c in back] == [f"Member {tag}"]
        assert api.delete(f"contacts({contact})/{schema}({p1})/$ref").status_code == 204
        left = api.get(f"contacts({contact})/{schema}?$select=new_name").json()["value"]
        assert [p["new_name"] for p in left] == ["P2"]

        # one-to-many associate / disassociate through $ref, on seeded tables
        account = client.records.create("account", {"name": f"Ref {tag}"})
        r = api.post(
            f"accounts({account})/contact_customer_accounts/$ref",
            json={"@odata.id": f"{own.service_url}contacts({contact})"},
        )
        assert r.status_code == 204, r.text
        kids = api.get(f"accounts({account})/contact_customer_accounts?$select=lastname")
        assert [c["lastname"] for c in kids.json()["value"]] == [f"Member {tag}"]
        gone = api.delete(f"accounts({account})/contact_customer_accounts({contact})/$ref")
        assert gone.status_code == 204
        kids = api.get(f"accounts({account})/contact_customer_accounts?$select=lastname")
        assert kids.json()["value"] == []
        put = api.put(
            f"contacts({contact})/parentcustomerid_account/$ref",
            json={"@odata.id": f"{own.service_url}accounts({account})"},
        )
        assert put.status_code == 204
        row = api.get(f"contacts({contact})?$select=_parentcustomerid_value").json()
        assert row["_parentcustomerid_value"] == account
        assert api.delete(f"contacts({contact})/parentcustomerid_account/$ref").status_code == 204

    assert rel.relationship_id
    client.tables.delete_relationship(rel.relationship_id)
    assert client.tables.get_relationship(schema) is None
    client.tables.delete(project)


@pytest.mark.parametrize("cascade", ["Restrict", "Cascade", "RemoveLink"])
def test_cascade_delete_of_a_custom_relationship(client: DataverseClient, cascade: str) -> None:
    from PowerPlatform.Dataverse.models.labels import Label, LocalizedLabel
    from PowerPlatform.Dataverse.models.relationship import (
        CascadeConfiguration,
        LookupAttributeMetadata,
        OneToManyRelationshipMetadata,
    )

    tag = uuid.uuid4().hex[:6]
    parent, child = f"new_Par{tag}", f"new_Chi{tag}"
    # {"new_Name": "string"} repeats the primary name column the SDK adds: taken as it
    client.tables.create(parent, {"new_Name": "string"})
    client.tables.create(child, {"new_Info": "string"})
    lookup = f"new_Ref{tag}"
    client.tables.create_one_to_many_relationship(
        lookup=LookupAttributeMetadata(
            schema_name=lookup,
            display_name=Label(localized_labels=[LocalizedLabel(label="Ref", language_code=1033)]),
        ),
        relationship=OneToManyRelationshipMetadata(
            schema_name=f"{parent}_{child}",
            referenced_entity=parent.lower(),
            referencing_entity=child.lower(),
            referenced_attribute=f"{parent.lower()}id",
            cascade_configuration=CascadeConfiguration(delete=cascade),
        ),
    )
    p_id = client.records.create(parent, {"new_name": "parent"})
    bind = {f"{lookup}@odata.bind": f"/{parent.lower()}s({p_id})"}
    c_id = client.records.create(child, {"new_info": "child", **bind})
    if cascade == "Restrict":
        with pytest.raises(HttpError) as refused:
            client.records.delete(parent, p_id)
        assert refused.value.status_code == 405
        assert client.records.retrieve(child, c_id) is not None
        return
    client.records.delete(parent, p_id)
    left = client.records.retrieve(child, c_id, select=[f"_{lookup.lower()}_value"])
    if cascade == "Cascade":
        assert left is None
    else:
        assert left is not None and left[f"_{lookup.lower()}_value"] is None


def test_remove_columns_and_list_many_to_many(client: DataverseClient, own: Sandbox) -> None:
    from PowerPlatform.Dataverse.models.relationship import ManyToManyRelationshipMetadata

    tag = uuid.uuid4().hex[:6]
    name = f"new_Cols{tag}"
    client.tables.create(name, {"new_Keep": "string"})
    client.tables.add_columns(name, {"new_Tags": "string"})
    client.tables.remove_columns(name, ["new_Tags"])
    columns = {c["LogicalName"] for c in client.tables.list_columns(name)}
    assert "new_keep" in columns and "new_tags" not in columns
    schema = f"new_cols_contacts{tag}"
    client.tables.create_many_to_many_relationship(
        ManyToManyRelationshipMetadata(
            schema_name=schema, entity1_logical_name=name.lower(), entity2_logical_name="contact"
        )
    )
    headers = {"Authorization": f"Bearer {app_token(own)}"}
    with httpx.Client(base_url=own.service_url, verify=tls(own), headers=headers) as api:
        listed = api.get(f"EntityDefinitions(LogicalName='{name.lower()}')/ManyToManyRelationships")
        assert [r["SchemaName"] for r in listed.json()["value"]] == [schema]
        system = api.delete(
            f"EntityDefinitions(LogicalName='{name.lower()}')/Attributes(LogicalName='createdon')"
        )
        assert system.status_code == 400
    client.tables.delete(name)
