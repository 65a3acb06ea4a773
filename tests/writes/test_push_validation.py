"""Bad arguments and bad frames are refused before anything is written."""

from __future__ import annotations

import uuid
from typing import Any

import pandas as pd
import pytest

from d365nb._accessor import D365Accessor, resolve_connection
from d365nb._client import Connection
from d365nb._exceptions import ConfigError, InvalidFrameError
from d365nb._options import validate_push


def _frame() -> pd.DataFrame:
    out: pd.DataFrame = pd.DataFrame({"name": ["a", "b"]})
    return out


@pytest.mark.parametrize(
    ("options", "field", "text"),
    [
        ({"mode": "merge"}, "mode", "'create', 'update', 'upsert', 'delete'"),
        ({"on_error": "ignore"}, "on_error", "'collect'"),
        ({"batch_size": 0}, "batch_size", "1 to 10,000"),
        ({"batch_size": 10_001}, "batch_size", "1 to 10,000"),
        ({"batch_size": True}, "batch_size", "1 to 10,000"),
        ({"parallel": 0}, "parallel", "True (adaptive)"),
        ({"columns": "name"}, "columns", "columns=['name']"),
        ({"columns": ["nmae"]}, "columns", "Did you mean 'name'?"),
        ({"key": [], "mode": "update"}, "key", "key='accountnumber'"),
        ({"key": "acountnumber", "mode": "update"}, "key", "not a column of the frame"),
        ({"force": "yes"}, "force", "True or False"),
    ],
)
def test_bad_options_are_refused_by_name(options: dict[str, Any], field: str, text: str) -> None:
    df = _frame().assign(accountnumber=["1", "2"])

    with pytest.raises(ConfigError) as caught:
        validate_push(df, "accounts", **options)

    assert caught.value.field == field
    assert text in str(caught.value)


def test_a_frame_not_read_from_dataverse_needs_a_table() -> None:
    with pytest.raises(ConfigError, match=r"df.d365.push\('accounts'\)"):
        validate_push(_frame())


def test_duplicate_index_labels_are_refused() -> None:
    df = pd.DataFrame({"name": ["a", "b"]}, index=[7, 7])

    with pytest.raises(ConfigError, match="reset_index"):
        validate_push(df, "accounts")


def test_without_a_connection_the_error_says_pass_conn() -> None:
    with pytest.raises(ConfigError) as caught:
        resolve_connection(_frame())

    assert caught.value.field == "conn"
    assert "conn=" in str(caught.value)


def test_the_accessor_is_stateless_and_only_on_frames() -> None:
    df = _frame()

    assert isinstance(df.d365, D365Accessor)
    assert df.d365 is not df.d365
    assert not hasattr(pd.Series([1]), "d365")
    assert vars(df.d365) == {"_obj": df}


@pytest.mark.sandbox
def test_validation_happens_before_any_io(conn: Connection) -> None:
    with pytest.raises(ConfigError):
        _frame().d365.push("accounts", mode="merge", conn=conn)  # type: ignore[arg-type]

    assert conn.catalog.cached("account") is None  # not even metadata was fetched


@pytest.mark.sandbox
def test_unknown_and_read_only_columns_are_reported_before_sending(conn: Connection) -> None:
    tag = "v" + uuid.uuid4().hex[:10]
    df = pd.DataFrame(
        {
            "name": [f"{tag} a"],
            "revenu": [1.0],
            "createdon": [pd.Timestamp("2024-01-01", tz="UTC")],
            "industrycode": ["Not an industry"],
        }
    )

    with pytest.raises(InvalidFrameError) as caught:
        df.d365.push("accounts", conn=conn, columns=["name", "revenu", "createdon", "industrycode"])

    text = str(caught.value)
    assert "'revenu'" in text and "Did you mean 'revenue'" in text
    assert "'createdon'" in text and "read-only" in text
    assert "'industrycode'" in text and "Not an industry" in text
    assert "nothing was sent" in text
    assert {p.column for p in caught.value.problems} >= {"revenu", "createdon", "industrycode"}
    assert conn.read("accounts", filter=f"startswith(name,'{tag}')", progress=False).empty


@pytest.mark.sandbox
def test_bad_keys_name_the_table_keys(conn: Connection) -> None:
    df = pd.DataFrame({"name": ["x"], "telephone1": ["1"]})

    with pytest.raises(ConfigError) as caught:
        df.d365.push("accounts", key="telephone1", conn=conn, progress=False)
    with pytest.raises(InvalidFrameError, match="has no value"):
        pd.DataFrame({"accountid": [None], "name": ["x"]}).d365.push(
            "accounts", mode="update", conn=conn, progress=False
        )
    with pytest.raises(InvalidFrameError, match="GUID"):
        pd.DataFrame({"accountid": ["nope"], "name": ["x"]}).d365.push(
            "accounts", mode="delete", conn=conn, progress=False
        )

    assert "'accountnumber'" in str(caught.value) and "'accountid'" in str(caught.value)


@pytest.mark.sandbox
def test_alternate_key_lookup_columns_are_checked(conn: Connection) -> None:
    df = pd.DataFrame({"name": ["x"], "parentaccountid.telephone1": ["1"]})
    partial = pd.DataFrame(
        {
            "lastname": ["x", "y"],
            "parentcustomerid.contact.firstname": ["a", "b"],
            "parentcustomerid.contact.emailaddress1": ["a@x.example", None],
        }
    )

    with pytest.raises(InvalidFrameError, match="alternate key of 'account'"):
        df.d365.push("accounts", mode="create", conn=conn, progress=False)
    with pytest.raises(ConfigError, match="parentcustomerid.account.firstname"):
        partial.rename(columns=lambda c: c.replace(".contact", "")).d365.push(
            "contacts", mode="create", conn=conn, progress=False
        )
    with pytest.raises(InvalidFrameError, match="some but not all key values"):
        partial.d365.push("contacts", mode="create", conn=conn, progress=False)


@pytest.mark.sandbox
def test_without_conn_the_setup_panel_connection_is_used(
    conn: Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    import d365nb._setup

    monkeypatch.setattr(d365nb._setup, "_current", conn)

    assert resolve_connection(_frame()) is conn
    plan = _frame().d365.push("accounts", mode="create", dry_run=True)
    assert plan.counts == {"create": 2}
