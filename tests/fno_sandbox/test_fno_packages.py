"""The Data management package API: export → poll → download a zip of CSV files, import it back."""

from __future__ import annotations

import csv
import io
import time
import zipfile
from typing import Any
from urllib.parse import urlsplit

import httpx
import orjson

from d365nb.sandbox import Sandbox

from .conftest import tls

ACTIONS = "/data/DataManagementDefinitionGroups/Microsoft.Dynamics.DataEntities"


def action(fno: httpx.Client, name: str, **body: Any) -> Any:
    response = fno.post(f"{ACTIONS}.{name}", json=body)
    assert response.status_code == 200, response.text
    payload = response.json()
    assert payload["@odata.context"].endswith("/data/$metadata#Edm.String")
    return payload["value"]


def wait(fno: httpx.Client, execution_id: str) -> list[str]:
    states = []
    for _ in range(200):
        states.append(action(fno, "GetExecutionSummaryStatus", executionId=execution_id))
        if states[-1] not in ("Executing", "NotRun"):
            return states
        time.sleep(0.05)
    raise AssertionError(f"still {states[-1]}")


def blob_client(sb: Sandbox) -> httpx.Client:
    # No Authorization header: the SAS in the URL is the credential, as on Azure storage.
    return httpx.Client(verify=tls(sb), trust_env=False, timeout=60)


def read_all(fno: httpx.Client, path: str, params: dict[str, str]) -> list[dict[str, Any]]:
    body = fno.get(path, params=params).json()
    rows = body["value"]
    while "@odata.nextLink" in body:
        body = fno.get(body["@odata.nextLink"]).json()
        rows += body["value"]
    return [{k: v for k, v in r.items() if not k.startswith("@")} for r in rows]


def export(fno: httpx.Client, sb: Sandbox, project: str, company: str) -> zipfile.ZipFile:
    execution_id = action(
        fno,
        "ExportToPackage",
        definitionGroupId=project,
        packageName=f"{project}.zip",
        executionId="",
        reExecute=False,
        legalEntityId=company,
    )
    states = wait(fno, execution_id)
    assert states[0] == "Executing" and states[-1] == "Succeeded"
    url = action(fno, "GetExportedPackageUrl", executionId=execution_id)
    parts = urlsplit(url)
    assert "sig=" in parts.query and parts.hostname != urlsplit(str(fno.base_url)).hostname
    with blob_client(sb) as http:
        response = http.get(url)
    assert response.status_code == 200
    return zipfile.ZipFile(io.BytesIO(response.content))


def as_text(rows: list[dict[str, Any]]) -> list[dict[str, str]]:
    return [{k: str(v) for k, v in r.items()} for r in rows]


def test_export_csv_equals_the_odata_read(fno: httpx.Client, fno_sandbox: Sandbox) -> None:
    package = export(fno, fno_sandbox, "Export-SalesOrders", "usrt")
    names = set(package.namelist())
    assert {"Manifest.xml", "PackageHeader.xml"} <= names
    assert {"Sales order headers V2.csv", "Sales order lines V2.csv"} <= names
    text = package.read("Sales order headers V2.csv").decode("utf-8-sig")
    exported = list(csv.DictReader(io.StringIO(text)))
    odata = read_all(
        fno,
        "/data/SalesOrderHeadersV2",
        {"cross-company": "true", "$filter": "dataAreaId eq 'usrt'"},
    )
    assert exported == as_text(odata)
    assert len(exported) > 10


def test_import_round_trip(fno: httpx.Client, fno_sandbox: Sandbox) -> None:
    package = export(fno, fno_sandbox, "Export-CustomerGroups", "demf")
    text = package.read("Customer groups.csv").decode("utf-8-sig")
    rows = list(csv.DictReader(io.StringIO(text)))
    rows[0]["Description"] = "Changed by import"
    rows.append({**rows[0], "CustomerGroupId": "77", "Description": "New by import"})
    rows.append({**rows[0], "CustomerGroupId": "78", "IsSalesTaxIncludedInPrice": "Maybe"})
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(rows[0]), lineterminator="\r\n")
    writer.writeheader()
    writer.writerows(rows)
    data = io.BytesIO()
    with zipfile.ZipFile(data, "w") as new:
        new.writestr("Customer groups.csv", out.getvalue().encode("utf-8-sig"))
        new.writestr("Manifest.xml", package.read("Manifest.xml"))
    target = orjson.loads(action(fno, "GetAzureWriteUrl", uniqueFileName="groups-import.zip"))
    assert target["BlobId"].startswith("{")
    with blob_client(fno_sandbox) as http:
        missing = http.put(target["BlobUrl"], content=data.getvalue())
        assert missing.status_code == 400  # Azure wants x-ms-blob-type
        put = http.put(
            target["BlobUrl"],
            content=data.getvalue(),
            headers={"x-ms-blob-type": "BlockBlob"},
        )
        assert put.status_code == 201
        assert http.get(target["BlobUrl"].replace("sig=", "sig=x")).status_code == 403
    execution_id = action(
        fno,
        "ImportFromPackage",
        packageUrl=target["BlobUrl"],
        definitionGroupId="Import-CustomerGroups",
        executionId="",
        execute=True,
        overwrite=True,
        legalEntityId="demf",
    )
    assert wait(fno, execution_id)[-1] == "PartiallySucceeded"
    errors = orjson.loads(action(fno, "GetExecutionErrors", executionId=execution_id))
    assert len(errors) == 1 and "Maybe" in errors[0]
    after = read_all(
        fno, "/data/CustomerGroups", {"cross-company": "true", "$filter": "dataAreaId eq 'demf'"}
    )
    by_id = {r["CustomerGroupId"]: r for r in after}
    assert by_id[rows[0]["CustomerGroupId"]]["Description"] == "Changed by import"
    assert by_id["77"]["Description"] == "New by import"
    assert "78" not in by_id
    again = export(fno, fno_sandbox, "Export-CustomerGroups", "demf")
    exported = list(
        csv.DictReader(io.StringIO(again.read("Customer groups.csv").decode("utf-8-sig")))
    )
    assert exported == as_text(after)


def test_action_errors(fno: httpx.Client) -> None:
    response = fno.post(f"{ACTIONS}.ExportToPackage", json={"definitionGroupId": "Nope"})
    assert response.status_code == 500
    assert "Data project 'Nope' was not found." in response.json()["error"]["innererror"]["message"]
    unknown = fno.post(f"{ACTIONS}.GetExecutionSummaryStatus", json={"executionId": "none"})
    assert unknown.json()["value"] == "Unknown"
    bad = fno.post(f"{ACTIONS}.GetExecutionSummaryStatus", json={"id": "x"})
    assert bad.status_code == 400
