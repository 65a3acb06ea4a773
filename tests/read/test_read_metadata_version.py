"""`globalmetadataversion` moves on when metadata changes, and the metadata cache on disk
follows it: another connection (another process) fetches a changed table's metadata again
instead of reading with the old one."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from d365nb.sandbox import Sandbox, start
from d365nb.sandbox._connect import connect_to
from tests._support.child import run_child

from ..sandbox.conftest import app_token, tls

pytestmark = pytest.mark.sandbox

VERSION = "Microsoft.Dynamics.CRM.globalmetadataversion"
GIZMO = {
    "@odata.type": "Microsoft.Dynamics.CRM.EntityMetadata",
    "SchemaName": "new_Gizmo",
    "DisplayName": "Gizmo",
    "DisplayCollectionName": "Gizmos",
    "OwnershipType": "UserOwned",
    "HasActivities": False,
    "Attributes": [
        {
            "@odata.type": "Microsoft.Dynamics.CRM.StringAttributeMetadata",
            "SchemaName": "new_Name",
            "IsPrimaryName": True,
            "MaxLength": 100,
            "DisplayName": "Name",
        }
    ],
}
WEIGHT = {
    "@odata.type": "Microsoft.Dynamics.CRM.IntegerAttributeMetadata",
    "SchemaName": "new_Weight",
    "DisplayName": "Weight",
}


@pytest.fixture(scope="module")
def own(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    """A sandbox of this module's own: its tables change."""
    with start(data_dir=tmp_path_factory.mktemp("mdv"), database=":memory:", rows=40) as sb:
        yield sb


@pytest.fixture(scope="module")
def api(own: Sandbox) -> Iterator[httpx.Client]:
    headers = {"Authorization": f"Bearer {app_token(own)}"}
    with httpx.Client(base_url=own.service_url, verify=tls(own), headers=headers) as client:
        yield client


def _version(api: httpx.Client) -> str:
    r = api.get(
        "accounts?$select=name&$top=1",
        headers={"Prefer": f'odata.include-annotations="{VERSION}"'},
    )
    assert r.status_code == 200, r.text[:300]
    return str(r.json()["@" + VERSION])


def test_the_version_moves_on_with_every_metadata_change_only(api: httpx.Client) -> None:
    start_version = _version(api)
    assert api.post("accounts", json={"name": "not metadata"}).status_code == 204
    assert _version(api) == start_version, "a data write leaves the metadata version"
    assert api.post("EntityDefinitions", json=GIZMO).status_code == 204
    after_table = _version(api)
    assert int(after_table) > int(start_version)
    added = api.post("EntityDefinitions(LogicalName='new_gizmo')/Attributes", json=WEIGHT)
    assert added.status_code == 204, added.text[:300]
    after_column = _version(api)
    assert int(after_column) > int(after_table)
    assert _version(api) == after_column, "stable while nothing changes"


_CHILD = (
    "import json, sys\n"
    "import d365nb.sandbox\n"
    "info, folder = json.loads(sys.argv[1]), sys.argv[2]\n"
    "conn = d365nb.sandbox.connect(info, metadata_cache=folder)\n"
    "df = conn.read('new_gizmos', progress=False)\n"
    "print(json.dumps([conn.catalog.requests, list(df.columns), len(df)]))\n"
    "conn.close()\n"
)


def _child(sb: Sandbox, folder: Path) -> tuple[int, list[str], int]:
    """A read of every column of `new_gizmos` in another process: (metadata requests,
    columns, rows)."""
    requests, columns, rows = run_child(_CHILD, sb, folder, timeout=180)
    return int(requests), list(columns), int(rows)


def test_a_metadata_change_invalidates_the_disk_cache_across_connections(
    own: Sandbox, api: httpx.Client, tmp_path: Path
) -> None:
    if api.get("EntityDefinitions(LogicalName='new_gizmo')").status_code == 404:
        assert api.post("EntityDefinitions", json=GIZMO).status_code == 204
    assert api.post("new_gizmos", json={"new_name": "first"}).status_code == 204
    first = connect_to(own, metadata_cache=tmp_path)
    before = first.read("new_gizmos", progress=False)
    assert first.catalog.requests > 0
    first.close()

    requests, columns, _ = _child(own, tmp_path)
    assert requests == 0, "unchanged metadata: the cache on disk is used"
    assert columns == list(before.columns)

    name = "new_volume"
    body = dict(WEIGHT, SchemaName="new_Volume", DisplayName="Volume")
    added = api.post("EntityDefinitions(LogicalName='new_gizmo')/Attributes", json=body)
    assert added.status_code == 204, added.text[:300]
    assert api.post("new_gizmos", json={"new_name": "second", name: 7}).status_code == 204

    requests, columns, rows = _child(own, tmp_path)
    assert requests > 0, "the moved version made the other process fetch the metadata again"
    assert name in columns and name not in before.columns
    assert rows == 2

    # This process's memory held the old entry too: the version moves it on as well.
    again = connect_to(own, metadata_cache=tmp_path)
    df = again.read("new_gizmos", progress=False)
    assert name in df.columns and sorted(df[name].dropna().tolist()) == [7]
    again.close()
    requests, columns, _ = _child(own, tmp_path)
    assert requests == 0 and name in columns, "the fresh metadata is cached again"
