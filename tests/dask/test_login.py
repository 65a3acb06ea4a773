"""What a task carries to sign in: nothing secret, in its pickle or its repr."""

from __future__ import annotations

import pickle

import pytest

import d365nb
from d365nb._client import Connection
from d365nb.dask._budget import budget_name
from d365nb.dask._login import Login, RelayCredential, _Token, login_for
from d365nb.sandbox import Sandbox

pytestmark = pytest.mark.sandbox


def test_a_login_holds_no_secret_and_shows_none(conn: Connection, dsb: Sandbox) -> None:
    login = login_for(conn, "environment", None)
    assert isinstance(login, Login)
    blob = pickle.dumps(login)
    assert dsb.client_secret.encode() not in blob
    assert "client_credentials" in login.connection_string.lower()
    assert dsb.client_secret not in repr(login) and "ServiceURL" not in repr(login)
    assert login.cadata and isinstance(login.cadata, bytes)  # the sandbox's CA: public


def test_tokens_and_credentials_hide_in_reprs() -> None:
    assert "secret-ish" not in repr(_Token("secret-ish", 0.0))
    assert repr(RelayCredential("key")) == "RelayCredential('key')"


def test_unknown_credentials_mode_is_refused(conn: Connection) -> None:
    with pytest.raises(d365nb.ConfigError, match="credentials"):
        login_for(conn, "secret", None)  # type: ignore[arg-type]


def test_budget_names_name_the_host_not_the_identity() -> None:
    name = budget_name("https://org.crm.dynamics.com/api/data/v9.2/", "oid|app")
    assert name.startswith("d365nb:org.crm.dynamics.com:") and "oid" not in name
    assert name == budget_name("https://org.crm.dynamics.com/api/data/v9.2/", "oid|app")
    assert name != budget_name("https://org.crm.dynamics.com/api/data/v9.2/", "other|app")
