"""The Data management package REST API and a stand-in for its Azure blob storage (§5.4).

Actions (``POST <root>/data/DataManagementDefinitionGroups/<namespace>.<Action>`` with
the namespace ``Microsoft.Dynamics.DataEntities``, JSON bodies; each answers
``{"@odata.context": "…#Edm.String", "value": …}``):

* `ExportToPackage` {definitionGroupId, packageName, executionId, reExecute,
  legalEntityId} → execution id.  The project's entities are written, one CSV file each
  (all fields, header row, wire values: enum names, ISO dates), into a zip with
  `Manifest.xml` and `PackageHeader.xml` ([UNVERIFIED] file names and layout, §5.4).
* `GetExecutionSummaryStatus` {executionId} → ``Unknown | NotRun | Executing |
  Succeeded | PartiallySucceeded | Failed | Canceled``.  Work runs in a thread; the
  first `min_executing_polls` polls after it ends still say ``Executing`` so clients
  meet the polling state even on tiny packages.
* `GetExportedPackageUrl` {executionId} → a blob URL with a SAS token ("" until done).
* `GetAzureWriteUrl` {uniqueFileName} → a JSON *string* ``{"BlobId","BlobUrl"}``.
* `ImportFromPackage` {packageUrl, definitionGroupId, executionId, execute, overwrite,
  legalEntityId} → execution id; rows are upserted by key, each on its own (a bad row
  fails alone: ``PartiallySucceeded``), errors listed by `GetExecutionErrors`
  ([UNVERIFIED] its value: a JSON string of messages).

Blob URLs point at ``/fno/_blob/dmf/<name>`` on the *other* loopback name
(``localhost`` ⇄ ``127.0.0.1``) so that a client's host pin treats them as a foreign
host and never sends its bearer token there, as with real Azure storage.  They need
the SAS signature; a PUT needs ``x-ms-blob-type: BlockBlob`` (as Azure's Put Blob does).
"""

from __future__ import annotations

import base64
import csv
import hashlib
import hmac
import io
import itertools
import secrets
import threading
import zipfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any
from urllib.parse import quote
from xml.etree import ElementTree as ET

import orjson

from ._exchange import Reply
from ._fno_errors import FnoError
from ._fno_metadata import ACTIONS
from ._fno_schema import DATA_PROJECTS, ENTITIES, DataProject, Entity, entity_by_set
from ._fno_service import FnoCall, FnoService, json_reply
from ._fno_store import to_wire
from ._tokens import loopback_aliases

__all__ = ["Packages"]

_ODATA_EXCEPTION = "Microsoft.Dynamics.Platform.Integration.Services.OData.AxODataException"
_MANIFEST_TYPE = (
    "Microsoft.Dynamics.AX.Framework.Tools.DataManagement.Serialization."
    "DataManagementPackageManifest"
)
_MANIFEST_NS = "http://schemas.microsoft.com/dynamics/2015/01/DataManagement"


@dataclass
class _Execution:
    id: str
    project: DataProject
    status: str = "NotRun"
    done: threading.Event = field(default_factory=threading.Event)
    polls: int = 0
    package: str | None = None  # blob name of the exported package
    errors: list[str] = field(default_factory=list)


def _action_error(text: str) -> FnoError:
    return FnoError(500, "An error has occurred.", inner=text, inner_type=_ODATA_EXCEPTION)


class Packages:
    """Executions, blobs and the package API's actions.

    **Parameters:**

    * **service** - the OData service (its store and write rules are reused).
    * **root** - the environment root, ``https://127.0.0.1:PORT/fno``.
    """

    def __init__(self, service: FnoService, *, root: str) -> None:
        self.service = service
        self.root = root.rstrip("/")
        aliases = loopback_aliases(self.root)
        self.blob_root = f"{aliases[-1]}/_blob/dmf"
        self._secret = secrets.token_bytes(32)
        self._lock = threading.Lock()
        self._counter = itertools.count(1)
        self.executions: dict[str, _Execution] = {}
        self.blobs: dict[str, bytes] = {}
        self.min_executing_polls = 1
        self.nested_values = False

    # -- blobs

    def _sign(self, name: str, permissions: str) -> str:
        digest = hmac.new(self._secret, f"{name}|{permissions}".encode(), hashlib.sha256)
        return base64.urlsafe_b64encode(digest.digest()).decode().rstrip("=")

    def blob_url(self, name: str, permissions: str) -> str:
        """A SAS URL for blob `name` (`permissions`: ``r`` or ``rw``)."""
        expiry = (
            datetime.now(timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")
        )
        sig = quote(self._sign(name, permissions), safe="")
        return (
            f"{self.blob_root}/{quote(name)}?sv=2021-08-06&sr=b&sp={permissions}"
            f"&se={quote(expiry)}&sig={sig}"
        )

    def blob(
        self, method: str, name: str, params: dict[str, str], headers: dict[str, str], body: bytes
    ) -> Reply:
        """Answer a request to the blob stand-in (Azure's XML error shape)."""
        permissions = params.get("sp", "")
        wanted = "w" if method == "PUT" else "r"
        if wanted not in permissions or not hmac.compare_digest(
            params.get("sig", ""), self._sign(name, permissions)
        ):
            return _azure_error(
                403, "AuthenticationFailed", "Server failed to authenticate the request."
            )
        if method == "PUT":
            if headers.get("x-ms-blob-type", "") != "BlockBlob":
                return _azure_error(
                    400,
                    "MissingRequiredHeader",
                    "An HTTP header that's mandatory for this request is not specified.",
                )
            with self._lock:
                self.blobs[name] = body
            return Reply(201, [("x-ms-request-server-encrypted", "true")])
        with self._lock:
            data = self.blobs.get(name)
        if data is None:
            return _azure_error(404, "BlobNotFound", "The specified blob does not exist.")
        return Reply(
            200, [("Content-Type", "application/zip"), ("x-ms-blob-type", "BlockBlob")], data
        )

    # -- actions

    def action(self, name: str, call: FnoCall) -> Reply:
        """Run action `name` (404 for unknown actions)."""
        if name not in ACTIONS or call.method != "POST":
            raise FnoError(
                404, f"Resource not found for the segment 'Microsoft.Dynamics.DataEntities.{name}'."
            )
        body = call.json()
        if not isinstance(body, dict):
            raise FnoError(400, "The request body must be a JSON object.")
        for key in body:
            if key not in ACTIONS[name]:
                raise FnoError(
                    400,
                    f"The parameter '{key}' in the request payload is not a valid parameter for "
                    f"the operation '{name}'.",
                )
        value: Any = getattr(self, f"_{name}")(body, call)
        if self.nested_values:
            value = {"value": value}
        return json_reply(
            200, {"@odata.context": f"{self.root}/data/$metadata#Edm.String", "value": value}
        )

    def _project(self, body: dict[str, Any], operation: str) -> DataProject:
        group = str(body.get("definitionGroupId") or "")
        project = DATA_PROJECTS.get(group.lower())
        if project is None:
            raise _action_error(f"Data project '{group}' was not found.")
        if project.operation != operation:
            raise _action_error(
                f"Data project '{group}' is an {project.operation.lower()} project."
            )
        return project

    def _start(
        self, body: dict[str, Any], project: DataProject, work: Any, *, execute: bool = True
    ) -> str:
        stamp = datetime.now(timezone.utc).strftime("%Y%m%d%H%M%S")
        execution_id = str(
            body.get("executionId") or f"{project.name}-{stamp}-{next(self._counter)}"
        )
        run = _Execution(execution_id, project)
        with self._lock:
            self.executions[execution_id] = run
        if not execute:
            run.done.set()
            return execution_id
        run.status = "Executing"

        def target() -> None:
            try:
                work(run)
            except Exception as exc:  # the execution fails, the server goes on
                run.errors.append(str(exc))
                run.status = "Failed"
            run.done.set()

        threading.Thread(target=target, name=f"fno-dmf-{execution_id}", daemon=True).start()
        return execution_id

    def _company(self, body: dict[str, Any], call: FnoCall) -> str:
        return str(body.get("legalEntityId") or call.caller.company).lower()

    def _ExportToPackage(self, body: dict[str, Any], call: FnoCall) -> str:
        project = self._project(body, "Export")
        company = self._company(body, call)

        def work(run: _Execution) -> None:
            files = {f"{e.label}.csv": self.export_csv(e, company) for e in _entities(project)}
            package = _zip(project, files)
            name = f"{run.id}/{body.get('packageName') or project.name}.zip"
            with self._lock:
                self.blobs[name] = package
            run.package = name
            run.status = "Succeeded"

        return self._start(body, project, work)

    def export_csv(self, entity: Entity, company: str) -> bytes:
        """One entity's rows (a company's, for company entities) as CSV, key order."""
        where, args = ('WHERE "dataAreaId" = ?', [company]) if entity.company else ("", [])
        cols = ", ".join(f'"{p.name}"' for p in entity.props)
        order = ", ".join(f'"{k}"' for k in entity.keys)
        rows = self.service.store.query(
            f'SELECT {cols} FROM "{entity.entity_set}" {where} ORDER BY {order}', args
        )
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\r\n")
        writer.writerow([p.name for p in entity.props])
        for row in rows:
            writer.writerow([to_wire(p, v) for p, v in zip(entity.props, row, strict=True)])
        return out.getvalue().encode("utf-8-sig")

    def _GetExecutionSummaryStatus(self, body: dict[str, Any], call: FnoCall) -> str:
        with self._lock:
            run = self.executions.get(str(body.get("executionId", "")))
        if run is None:
            return "Unknown"
        if not run.done.is_set():
            return "Executing"
        if run.status != "NotRun" and run.polls < self.min_executing_polls:
            run.polls += 1
            return "Executing"
        return run.status

    def _GetExportedPackageUrl(self, body: dict[str, Any], call: FnoCall) -> str:
        with self._lock:
            run = self.executions.get(str(body.get("executionId", "")))
        if run is None or run.package is None or not run.done.is_set():
            return ""  # [UNVERIFIED] no package (yet): an empty string
        return self.blob_url(run.package, "r")

    def _GetAzureWriteUrl(self, body: dict[str, Any], call: FnoCall) -> str:
        name = str(body.get("uniqueFileName") or "")
        if not name:
            raise _action_error("The parameter 'uniqueFileName' must be given.")
        blob_id = (
            f"{{{secrets.token_hex(4).upper()}-0000-4000-8000-{secrets.token_hex(6).upper()}}}"
        )
        url = self.blob_url(name, "rw")
        return orjson.dumps({"BlobId": blob_id, "BlobUrl": url}).decode()

    def _GetExecutionErrors(self, body: dict[str, Any], call: FnoCall) -> str:
        with self._lock:
            run = self.executions.get(str(body.get("executionId", "")))
        return orjson.dumps(run.errors if run else []).decode()

    def _ImportFromPackage(self, body: dict[str, Any], call: FnoCall) -> str:
        project = self._project(body, "Import")
        company = self._company(body, call)
        url = str(body.get("packageUrl") or "")
        name, _, query = url.partition("?")
        prefix = next(
            (
                f"{a}/_blob/dmf/"
                for a in loopback_aliases(self.root)
                if name.startswith(f"{a}/_blob/dmf/")
            ),
            None,
        )
        with self._lock:
            blob = self.blobs.get(name[len(prefix) :]) if prefix else None
        if blob is None:
            raise _action_error(f"The package at '{name}' could not be read.")

        def work(run: _Execution) -> None:
            done = failed = 0
            with zipfile.ZipFile(io.BytesIO(blob)) as package:
                for entity, data in _package_files(package, project):
                    text = data.decode("utf-8-sig")
                    for number, row in enumerate(csv.DictReader(io.StringIO(text)), start=2):
                        try:
                            self.service.upsert(entity, _typed(entity, row), company)
                            done += 1
                        except FnoError as exc:
                            failed += 1
                            run.errors.append(f"{entity.label}, line {number}: {exc}")
            run.status = "Succeeded" if not failed else ("PartiallySucceeded" if done else "Failed")

        return self._start(body, project, work, execute=bool(body.get("execute", True)))


def _entities(project: DataProject) -> list[Entity]:
    return [e for e in (entity_by_set(s) for s in project.entity_sets) if e is not None]


def _zip(project: DataProject, files: dict[str, bytes]) -> bytes:
    manifest = ET.Element("DataManagementPackageManifest", xmlns=_MANIFEST_NS)
    ET.SubElement(manifest, "DefinitionGroupName").text = project.name
    listing = ET.SubElement(manifest, "PackageEntityList")
    for entity in _entities(project):
        item = ET.SubElement(listing, "DataManagementPackageEntityData")
        ET.SubElement(item, "EntityName").text = entity.label
        ET.SubElement(item, "EntitySetName").text = entity.entity_set
        ET.SubElement(item, "SourceFormat").text = "CSV-Unicode"
        ET.SubElement(item, "FileName").text = f"{entity.label}.csv"
    header = ET.Element("DataManagementPackageHeader", xmlns=_MANIFEST_NS)
    ET.SubElement(header, "Description").text = project.description
    ET.SubElement(header, "ManifestType").text = _MANIFEST_TYPE
    ET.SubElement(header, "PackageType").text = "DefinitionGroup"
    ET.SubElement(header, "PackageVersion").text = "2"
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as package:
        for name, data in files.items():
            package.writestr(name, data)
        package.writestr(
            "Manifest.xml", ET.tostring(manifest, encoding="utf-8", xml_declaration=True)
        )
        package.writestr(
            "PackageHeader.xml", ET.tostring(header, encoding="utf-8", xml_declaration=True)
        )
    return out.getvalue()


def _package_files(package: zipfile.ZipFile, project: DataProject) -> list[tuple[Entity, bytes]]:
    """(entity, CSV bytes) for each data file whose name is an entity of `project`."""
    by_label = {f"{e.label}.csv".lower(): e for e in _entities(project)}
    by_label.update({f"{e.entity_set}.csv".lower(): e for e in _entities(project)})
    found = []
    for info in package.infolist():
        entity = by_label.get(info.filename.rsplit("/", 1)[-1].lower())
        if entity is not None:
            found.append((entity, package.read(info)))
    if not found:
        raise ValueError(f"The package holds no data file for project '{project.name}'.")
    order = {e.entity_set: i for i, e in enumerate(ENTITIES)}
    return sorted(found, key=lambda pair: order[pair[0].entity_set])


def _typed(entity: Entity, row: dict[str, str]) -> dict[str, Any]:
    """A CSV row's text as JSON values of the entity's types."""
    out: dict[str, Any] = {}
    for name, text in row.items():
        prop = entity.prop(name or "")
        if prop is None or prop.read_only or text is None:
            continue
        if prop.kind in ("Int32", "Int64"):
            out[name] = int(text) if text.strip() else 0
        elif prop.kind == "Decimal":
            out[name] = float(text) if text.strip() else 0.0
        else:
            out[name] = text
    return out


def _azure_error(status: int, code: str, message: str) -> Reply:
    body = (
        '<?xml version="1.0" encoding="utf-8"?><Error><Code>'
        f"{code}</Code><Message>{message}</Message></Error>"
    )
    return Reply(
        status, [("Content-Type", "application/xml"), ("x-ms-error-code", code)], body.encode()
    )
