"""One toolkit, two services: F&O settings, and sign-in for the F&O resource."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

import d365nb
from d365nb._config import Settings
from d365nb._fno_client import FnoConnection
from d365nb.sandbox import Sandbox

from .conftest import fno_connect

CLIENT = "00001111-aaaa-2222-bbbb-3333cccc4444"


@pytest.mark.parametrize(
    "url",
    [
        "https://contoso.operations.dynamics.com",
        "https://contoso.operations.dynamics.com/",
        "https://contoso.operations.dynamics.com/data/",
        "https://contoso.sandbox.operations.dynamics.com/data",
        "https://dev1aos.cloudax.dynamics.com",
    ],
)
def test_fno_hosts_derive_resource_root_and_scope(url: str) -> None:
    s = Settings(service_url=url, client_id=CLIENT, tenant="contoso.com", client_secret="x")
    root = url.removesuffix("/").removesuffix("/data").removesuffix("/")
    assert s.service == "fno"
    assert s.resource == root
    assert s.api_root == f"{root}/data/"
    assert s.scopes == (f"{root}/.default",)
    delegated = Settings(service_url=url, client_id=CLIENT, tenant="contoso.com")
    assert delegated.scopes == (f"{root}/.default", "offline_access")  # no user_impersonation


def test_connection_string_and_service_field() -> None:
    s = Settings.from_connection_string(
        f"ServiceURL=https://contoso.operations.dynamics.com;ClientID={CLIENT};TenantID=contoso.com"
    )
    assert s.service == "fno"
    path_root = Settings(service_url="https://127.0.0.1:8443/fno", service="fno", client_id=CLIENT)
    assert path_root.api_root == "https://127.0.0.1:8443/fno/data/"
    assert path_root.resource == "https://127.0.0.1:8443/fno"
    crm = Settings(service_url="https://org.crm.dynamics.com", client_id=CLIENT)
    assert crm.service == "dataverse" and crm.api_root.endswith("/api/data/v9.2/")
    with pytest.raises(d365nb.ConfigError) as err:
        Settings(service_url="https://org.crm.dynamics.com", client_id=CLIENT, service="sap")
    assert err.value.field == "service"


def test_connect_returns_an_fno_connection() -> None:
    conn = d365nb.connect(
        service_url="https://contoso.operations.dynamics.com", client_id=CLIENT, tenant="x.com"
    )
    assert isinstance(conn, FnoConnection)
    assert conn.api_root == "https://contoso.operations.dynamics.com/data/"
    conn.close()


@pytest.mark.parametrize(
    ("grant", "version"),
    [("client_credentials", "v2"), ("client_credentials", "v1"), ("device_code", "v2")],
)
def test_sign_in_for_the_fno_resource(fno_sandbox: Sandbox, grant: str, version: str) -> None:
    conn = fno_connect(fno_sandbox, grant=grant, version=version)
    if grant == "device_code":
        conn.prompt = lambda code: fno_sandbox.approve(code.user_code, user="alex")
    try:
        conn.sign_in()
        companies = conn.companies()
        assert {"usmf", "usrt", "demf"} <= set(companies["LegalEntityId"].str.lower())
        # alex's default company is usmf: reads without cross-company stay there
        default = conn.read("CustomerGroups", progress=False)
        assert set(default["dataAreaId"]) == {"usmf"}
        who = conn.whoami()  # F&O has no WhoAmI: the token's identity and the companies
        assert who.business_unit_id == "usmf" and "usrt" in (who.business_unit or "")
    finally:
        conn.close()


def test_changes_points_to_the_package_api(conn: FnoConnection) -> None:
    with pytest.raises(d365nb.ConfigError, match="no OData change tracking") as err:
        conn.changes("CustomersV3")
    assert "export_package" in (err.value.hint or "")


def test_cli_export_reaches_fno(
    fno_sandbox: Sandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from d365nb.cli import main

    monkeypatch.setenv("D365NB_SERVICE_URL", fno_sandbox.fno_service_url)
    monkeypatch.setenv("D365NB_CLIENT_ID", fno_sandbox.confidential_client_id)
    monkeypatch.setenv("D365NB_CLIENT_SECRET", fno_sandbox.client_secret)
    monkeypatch.setenv("D365NB_TOKEN_URI", fno_sandbox.token_uri)
    monkeypatch.setenv("D365NB_TOKEN_CACHE_DIR", str(tmp_path / "tokens"))
    out = tmp_path / "customers.csv"
    code = main(
        ["export", "CustomersV3", "-o", str(out), "--ca-cert", fno_sandbox.ca_cert,
         "--no-progress", "--no-token-cache"]
    )  # fmt: skip
    assert code == 0
    frame = pd.read_csv(out)
    assert set(frame["dataAreaId"]) == {"usmf"} and len(frame) == 60
