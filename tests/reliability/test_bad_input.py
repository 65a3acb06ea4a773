"""Bad input answered with a clear error before any write, or handled correctly.

Property-based where it fits (hypothesis): connection settings and strings, filter values
(a value never changes a query's meaning, checked against the sandbox), table and column
names, and DataFrames with missing, infinite, mixed, duplicated, empty, long or mistyped
values.
"""

from __future__ import annotations

import math
import string
import uuid
from collections.abc import Iterator

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, example, given, settings, strategies as st

import d365nb
import d365nb._accessor  # noqa: F401 - registers df.d365
from d365nb import ConfigError, D365Error, F, ODataError, where
from d365nb._client import Connection
from d365nb._config import Settings
from d365nb._exceptions import InvalidFrameError
from d365nb._report import PushReport
from d365nb.sandbox import Sandbox
from d365nb.sandbox._connect import connect_to
from tests._support.ledger import record

from ._helpers import landed

AREA = "reliability/bad input"
SLOW = settings(
    max_examples=25,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

# -- connection settings and strings (no I/O) ------------------------------------------------

KEYS = [
    "ServiceURL", "Service URL", "OrganizationURL", "ClientID", "OAuthClientId", "ClientSecret",
    "TokenURI", "OAuthAccessTokenURL", "AuthURI", "Tenant", "Scope", "Grant", "AccessToken",
    "RefreshToken", "RedirectURI", "APIVersion",
]  # fmt: skip
NASTY = st.text(
    alphabet=st.sampled_from(list(";={}'\"\\ \t\n\x00é中🙂/:?#&%") + list(string.ascii_letters)),
    max_size=30,
)
VALUES = st.one_of(
    NASTY,
    st.text(max_size=40),
    st.sampled_from(
        [
            "https://org.crm.dynamics.com",
            "https://org.crm.dynamics.com/api/data/v9.2/",
            "http://org.crm.dynamics.com",
            "https://127.0.0.1:1",
            "https://xn--bcher-kva.example/",
            "https://login.microsoftonline.com/common/oauth2/v2.0/token",
            "POST https://login.microsoftonline.com/x/oauth2/token",
            "00001111-aaaa-2222-bbbb-3333cccc4444",
            "device_code",
            "client_credentials",
            "9.2",
            "",
        ]
    ),
)
SECRET_MARK = "Qx7-SECRET-"


@given(
    pairs=st.lists(st.tuples(st.one_of(st.sampled_from(KEYS), NASTY), VALUES), max_size=8),
    secret=st.text(alphabet=string.ascii_letters + string.digits + "~._-", min_size=4, max_size=20),
    sep=st.sampled_from([";", "; ", ";;", "\n"]),
)
@example(pairs=[("ServiceURL", "")], secret="0000", sep="\n")  # a pasted multi-line string
@settings(max_examples=300, deadline=None, derandomize=True)
def test_connection_strings_parse_or_fail_clearly_and_never_echo_a_secret(
    pairs: list[tuple[str, str]], secret: str, sep: str
) -> None:
    secret = SECRET_MARK + secret
    text = sep.join(f"{k}={v}" for k, v in pairs) + f"{sep}ClientSecret={secret}{sep}"
    try:
        parsed = Settings.from_connection_string(text)
    except ConfigError as exc:
        shown = f"{exc} {exc!r} {exc.hint} {exc.field}"
        record(AREA, "connection strings", operations=1, leaks=int(secret in shown), checks=1)
        assert secret not in shown
        assert exc.hint, "every ConfigError says what to do"
    else:
        shown = f"{parsed!r} {parsed} {parsed.to_connection_string()}"
        record(AREA, "connection strings", operations=1, leaks=int(secret in shown), checks=1)
        assert secret not in shown
        assert parsed.client_secret == secret


@given(
    service_url=VALUES,
    client_id=VALUES,
    tenant=st.one_of(st.none(), VALUES),
    grant=st.one_of(st.none(), VALUES),
    token_uri=st.one_of(st.none(), VALUES),
)
@settings(max_examples=300, deadline=None, derandomize=True)
def test_keyword_settings_connect_or_fail_clearly(
    service_url: str, client_id: str, tenant: str | None, grant: str | None, token_uri: str | None
) -> None:
    try:
        conn = d365nb.connect(
            service_url=service_url,
            client_id=client_id,
            tenant=tenant,
            grant=grant,
            token_uri=token_uri,
            client_secret=SECRET_MARK + "kw",
            token_cache=False,
        )
    except ConfigError as exc:
        assert exc.field and exc.hint
        assert SECRET_MARK not in str(exc)
    else:
        with conn:
            assert conn.api_root.startswith("https://")
            assert SECRET_MARK not in repr(conn) + repr(conn.settings)
    record(AREA, "keyword settings", operations=1, checks=1)


# -- names ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def conn(rsb: Sandbox) -> Iterator[Connection]:
    with connect_to(rsb) as c:
        yield c


NAMES = st.one_of(
    st.text(max_size=30),
    st.sampled_from(
        [
            "accounts?$filter=true",
            "accounts/../contacts",
            "accounts(00000000-0000-0000-0000-000000000000)",
            "accounts;drop",
            "account s",
            "$metadata",
            "Accounts",
            "ACCOUNT",
            "",
            " accounts",
            "accounts\n",
            "κόσμε",
            "a" * 300,
        ]
    ),
)


@pytest.mark.sandbox
@given(name=NAMES)
@SLOW
def test_table_names_are_answered_clearly(conn: Connection, name: str) -> None:
    try:
        frame = conn.read(name, select=None, top=1, progress=False)
    except D365Error as exc:
        assert isinstance(exc, ConfigError | ODataError), repr(exc)
        assert exc.hint, repr(exc)
    else:
        # Only real tables (in any spelling the service accepts) read.
        assert frame.attrs["d365nb"]["entity_set"] in {"accounts"} or len(frame.columns)
    record(AREA, "table names", operations=1, checks=1)


@pytest.mark.sandbox
@given(column=NAMES)
@SLOW
def test_column_names_are_answered_clearly(conn: Connection, column: str) -> None:
    try:
        frame = conn.read("accounts", select=[column], top=2, progress=False)
    except D365Error as exc:
        assert isinstance(exc, ConfigError | ODataError), repr(exc)
        assert exc.hint
    else:
        assert column.strip().lower() in {c.lower() for c in frame.columns}
    record(AREA, "column names", operations=1, checks=1)


# -- filter values: a value never changes the query's meaning --------------------------------

TRICKY = [
    "O'Brien",
    "' or 1 eq 1 or name eq '",
    "x') or (name ne '",
    "'';--",
    "name eq 'a'",
    "a&$filter=true",
    "50% off #1 + 2 ? / \\",
    "tab\there",
    "line\nbreak",
    "Köln – Zürich «ü»",
    "中文名称",
    "emoji 🙂🚀",
    "$top=1",
    "%27%20or%201%20eq%201",
    "contains(name,'a')",
    "   spaced   ",
]


@pytest.fixture(scope="module")
def tricky(conn: Connection) -> dict[str, str]:
    """Accounts named with every tricky value, each tagged; value -> name as stored."""
    tag = "tq" + uuid.uuid4().hex[:6]
    names = [f"{tag} {v}" for v in TRICKY]
    report = pd.DataFrame({"name": names}).d365.push(
        "accounts", mode="create", conn=conn, progress=False
    )
    assert isinstance(report, PushReport) and report.ok, report
    return {v: n for v, n in zip(TRICKY, names, strict=True)}


@pytest.mark.sandbox
@pytest.mark.parametrize("value", TRICKY)
def test_a_tricky_value_finds_exactly_its_row(
    conn: Connection, tricky: dict[str, str], value: str
) -> None:
    name = tricky[value]
    results = {
        "where": conn.read("accounts", select=["name"], filter=where(name=name), progress=False),
        "F": conn.read("accounts", select=["name"], filter=F("name eq {}", name), progress=False),
        "in": conn.read(
            "accounts", select=["name"], filter=where(name__in=[name, "nobody"]), progress=False
        ),
        "startswith": conn.read(
            "accounts", select=["name"], filter=where(name__startswith=name), progress=False
        ),
    }
    wrong = {k: list(v["name"]) for k, v in results.items() if list(v["name"]) != [name]}
    record(
        AREA,
        "tricky filter values",
        operations=len(results),
        checks=len(results),
        rows_lost=sum(1 for v in results.values() if len(v) == 0),
        duplicates=sum(max(0, len(v) - 1) for v in results.values()),
    )
    assert wrong == {}


@pytest.mark.sandbox
@given(value=st.one_of(st.text(max_size=40), st.sampled_from(TRICKY)))
@SLOW
def test_no_value_widens_a_filter(conn: Connection, value: str) -> None:
    """A name no account has (a fresh prefix) matches nothing, whatever follows it."""
    probe = f"zz{uuid.uuid4().hex[:6]} {value}"
    try:
        filters = [where(name=probe), F("name eq {} or name eq {}", probe, probe + "x")]
    except ConfigError as exc:  # e.g. a NUL character: refused before any request
        assert "\x00" in value or exc.hint
        return
    for text in filters:
        frame = conn.read("accounts", select=["name"], filter=text, progress=False)
        record(AREA, "no value widens a filter", operations=1, checks=1, duplicates=len(frame))
        assert len(frame) == 0, (value, text)


# -- DataFrames: a clear error before any write, or written correctly ------------------------


def _nothing_written(conn: Connection, tag: str) -> None:
    assert len(landed(conn, tag)) == 0


def _push(frame: pd.DataFrame, conn: Connection, **options: object) -> PushReport:
    result = frame.d365.push("accounts", conn=conn, progress=False, **options)  # type: ignore[arg-type]
    assert isinstance(result, PushReport)
    return result


def _refused(
    test: str, conn: Connection, frame: pd.DataFrame, tag: str, words: str, **options: object
) -> None:
    """`frame` must be refused with a `ConfigError` naming the problem, nothing written."""
    refused: ConfigError | None = None
    try:
        _push(frame, conn, **options)
    except ConfigError as exc:
        refused = exc
    names = set(landed(conn, tag)["name"])
    first_name_column = [str(c) for c in frame.columns].index("name")
    sent = set(frame.iloc[:, first_name_column])
    lost = 0 if refused else len(sent - names)  # rows meant to be written, silently not
    record(AREA, test, operations=1, checks=1, rows_lost=lost)
    assert refused is not None, f"not refused; landed: {sorted(names)}"
    assert names == set(), "nothing may be written when the frame is refused"
    assert words.lower() in str(refused).lower(), str(refused)
    assert refused.hint


def _tag() -> str:
    return "bi" + uuid.uuid4().hex[:6]


@pytest.mark.sandbox
def test_infinite_numbers_are_refused_before_any_write(conn: Connection) -> None:
    tag = _tag()
    frame = pd.DataFrame(
        {"name": [f"{tag} a", f"{tag} b", f"{tag} c"], "revenue": [1.0, np.inf, -np.inf]}
    )
    _refused("inf", conn, frame, tag, "infinite")


@pytest.mark.sandbox
def test_missing_values_of_every_kind_clear_the_column(conn: Connection) -> None:
    tag = _tag()
    frame = pd.DataFrame(
        {
            "name": [f"{tag} {i}" for i in range(4)],
            "revenue": [1.5, np.nan, None, 2.5],
            "numberofemployees": pd.array([1, pd.NA, 3, pd.NA], dtype="Int64"),
            "lastonholdtime": pd.Series(
                [
                    pd.Timestamp("2024-01-02T03:04:05Z"),
                    None,
                    pd.Timestamp("2024-02-03T04:05:06Z"),
                    pd.NaT,
                ],
                dtype="datetime64[us, UTC]",
            ),
            "description": pd.array(["x", pd.NA, None, "y"], dtype="string"),
        }
    )
    report = _push(frame, conn, mode="create")
    back = conn.read(
        "accounts",
        select=["name", "revenue", "numberofemployees", "lastonholdtime", "description"],
        filter=where(name__startswith=tag),
        progress=False,
    ).sort_values("name", ignore_index=True)
    record(
        AREA,
        "NaN/NA/NaT",
        operations=2,
        checks=4,
        rows_lost=len(frame) - len(back),
        duplicates=max(0, len(back) - len(frame)),
    )
    assert report.ok and len(back) == 4
    assert back["revenue"].isna().tolist() == [False, True, True, False]
    assert back["numberofemployees"].isna().tolist() == [False, True, False, True]
    assert back["lastonholdtime"].isna().tolist() == [False, True, False, True]
    assert back["description"].isna().tolist() == [False, True, True, False]
    assert back.loc[3, "revenue"] == 2.5 and back.loc[0, "description"] == "x"


@pytest.mark.sandbox
def test_mixed_type_object_columns_are_refused(conn: Connection) -> None:
    tag = _tag()
    frame = pd.DataFrame({"name": [f"{tag} a", 7, f"{tag} c"], "revenue": [1, "2", 3.0]})
    _refused("mixed types", conn, frame, tag, "not text")


@pytest.mark.sandbox
def test_wrong_dtypes_are_refused(conn: Connection) -> None:
    tag = _tag()
    frame = pd.DataFrame({"name": [f"{tag} a"], "revenue": ["a lot"], "creditonhold": ["maybe"]})
    _refused("wrong dtypes", conn, frame, tag, "not a number")


@pytest.mark.sandbox
def test_non_string_and_duplicate_column_names_are_refused(conn: Connection) -> None:
    tag = _tag()
    _refused(
        "non-string names",
        conn,
        pd.DataFrame({"name": [f"{tag} a"], 0: ["x"]}),
        tag,
        "not a string column name",
    )
    both = pd.DataFrame([[f"{tag} a", f"{tag} b"]], columns=["name", "name"])
    _refused("duplicate columns", conn, both, tag, "more than once")


@pytest.mark.sandbox
def test_too_long_strings_are_refused(conn: Connection) -> None:
    tag = _tag()
    frame = pd.DataFrame({"name": [f"{tag} ok", f"{tag} " + "x" * 10_000]})
    _refused("long strings", conn, frame, tag, "maximum")


@pytest.mark.sandbox
@pytest.mark.parametrize("empty", ["no rows", "no columns"])
def test_empty_frames_write_nothing_and_say_so(conn: Connection, empty: str) -> None:
    frame = (
        pd.DataFrame({"name": pd.Series([], dtype="string")})
        if empty == "no rows"
        else (pd.DataFrame())
    )
    report = _push(frame, conn)
    record(AREA, f"empty {empty}", operations=1, checks=1)
    assert len(report.rows) == 0 and report.requests == 0 and report.ok


@pytest.mark.sandbox
@pytest.mark.parametrize("key", ["accountnumber", "accountid"])
def test_duplicate_keys_within_the_frame_are_refused(conn: Connection, key: str) -> None:
    """Two rows for one key: which should win?  Writing both (the second silently
    overwriting the first) loses a row the user meant to write."""
    tag = _tag()
    same = str(uuid.uuid4()) if key == "accountid" else f"{tag}-K"
    frame = pd.DataFrame(
        {
            key: [same, same, f"{tag}-other" if key != "accountid" else str(uuid.uuid4())],
            "name": [f"{tag} first", f"{tag} second", f"{tag} third"],
        }
    )
    _refused(
        f"duplicate keys {key}",
        conn,
        frame,
        tag,
        "more than once",
        key=None if key == "accountid" else key,
    )


FLOATS = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.just(float("nan")),
    st.sampled_from([0.0, -0.0, 1e15, -1e15, 1e-9]),
)
TEXTS = st.one_of(st.none(), st.text(max_size=20), st.text(min_size=150, max_size=200))


@pytest.mark.sandbox
@given(rows=st.lists(st.tuples(TEXTS, FLOATS), min_size=1, max_size=6))
@settings(
    max_examples=15,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
def test_random_frames_are_refused_whole_or_written_exactly(
    conn: Connection, rows: list[tuple[str | None, float]]
) -> None:
    tag = _tag()
    names = [f"{tag} {i} {t or ''}" for i, (t, _) in enumerate(rows)]
    frame = pd.DataFrame({"name": pd.array(names, dtype="string"), "revenue": [r for _, r in rows]})
    try:
        report = _push(frame, conn, mode="create")
    except InvalidFrameError as exc:
        written = len(landed(conn, tag))
        record(AREA, "random frames", operations=1, checks=1, duplicates=written)
        assert written == 0
        reasons = " ".join(str(p) for p in exc.problems)
        assert any(len(n) > 160 for n in names) or any(
            math.isinf(r) or abs(r) > 1e14 for _, r in rows
        ), reasons
        return
    back = landed(conn, tag)
    created = report.rows["status"] == "created"
    record(
        AREA,
        "random frames",
        operations=2,
        checks=1,
        rows_lost=int(created.sum()) - len(back),
        duplicates=len(back) - back["name"].nunique(),
    )
    assert set(back["name"]) == set(frame.loc[created, "name"])
    for _, row in back.iterrows():
        sent = frame.loc[frame["name"] == row["name"], "revenue"].iloc[0]
        assert (pd.isna(sent) and pd.isna(row["revenue"])) or row["revenue"] == pytest.approx(sent)
