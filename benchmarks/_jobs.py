"""One measured job per child process: a contender reading or writing against a sandbox.

Run as ``python -m benchmarks._jobs SPEC.json OUT.json``.  The child imports what the
contender needs, records its resident memory (the baseline), runs the job once under a
wall clock, then records its peak resident memory (`VmHWM` from `/proc/self/status` on
Linux, `ru_maxrss` on macOS, psutil's `peak_wset` on Windows), so every contender's memory
is measured in a process of its own.  Checks of the data (fingerprints, read-backs) run
after the clock stops.
"""

from __future__ import annotations

import hashlib
import json
import os
import ssl
import sys
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import quote, urlsplit

import pandas as pd

#: The columns every read contender asks for: ~20 columns of mixed types, no lookups
#: (lookups would make d365nb ask for annotations the others do not get).
READ_COLUMNS: tuple[str, ...] = (
    "accountid",
    "name",
    "accountnumber",
    "telephone1",
    "emailaddress1",
    "address1_city",
    "address1_country",
    "address1_latitude",
    "address1_longitude",
    "description",
    "numberofemployees",
    "revenue",
    "creditlimit",
    "exchangerate",
    "industrycode",
    "customertypecode",
    "creditonhold",
    "donotemail",
    "cr_foundedon",
    "lastonholdtime",
    "statecode",
    "createdon",
    "modifiedon",
)

#: Columns compared across contenders, with how to normalise them (typed vs raw JSON).
FINGERPRINT_COLUMNS: tuple[tuple[str, str], ...] = (
    ("accountid", "str"),
    ("name", "str"),
    ("accountnumber", "str"),
    ("telephone1", "str"),
    ("address1_latitude", "float"),
    ("numberofemployees", "int"),
    ("revenue", "float"),
    ("creditonhold", "bool"),
    ("cr_foundedon", "time"),
    ("lastonholdtime", "time"),
    ("createdon", "time"),
)

#: Columns a write sets (besides the key, `accountnumber`).
WRITE_COLUMNS: tuple[str, ...] = ("name", "telephone1", "revenue", "numberofemployees")

PAGE_SIZE = 5000


# -- memory ------------------------------------------------------------------------------


def rss_bytes() -> int:
    """This process's resident memory now."""
    try:
        import psutil

        return int(psutil.Process().memory_info().rss)
    except ImportError:  # pragma: no cover - psutil is in the bench extra
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def peak_rss_bytes() -> int:
    """This process's peak resident memory so far.

    Linux: `VmHWM`, which starts afresh at `exec` (`ru_maxrss` does not: a child inherits
    the high-water mark of the process it was forked from)."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return int(peak) if sys.platform == "darwin" else int(peak) * 1024
    except ImportError:  # pragma: no cover - Windows
        import psutil

        info = psutil.Process().memory_info()
        return int(getattr(info, "peak_wset", info.rss))


# -- data fingerprints -------------------------------------------------------------------


def _normalise(series: pd.Series, kind: str) -> pd.Series:
    missing = series.isna()
    if kind == "str":
        out = series.astype(object).where(~missing, "").astype(str)
    elif kind == "int":
        numbers = pd.to_numeric(series.where(~missing), errors="coerce")
        out = numbers.round().astype("Int64").astype(str)
    elif kind == "float":
        numbers = pd.to_numeric(series.where(~missing), errors="coerce").astype(float)
        out = numbers.map(lambda v: f"{v:.4f}")
    elif kind == "bool":
        out = series.astype(object).map(lambda v: "1" if v is True or v == 1 else "0")
    elif kind == "time":
        stamps = pd.to_datetime(series.astype(object).where(~missing), utc=True, format="mixed")
        out = stamps.dt.strftime("%Y-%m-%dT%H:%M:%S")
    else:  # pragma: no cover - programming error
        raise ValueError(kind)
    return out.where(~missing, "")


def fingerprint(df: pd.DataFrame, columns: tuple[tuple[str, str], ...]) -> str:
    """A hash of `columns` of `df`, normalised so typed and raw-JSON frames compare equal."""
    norm = pd.DataFrame({name: _normalise(df[name], kind) for name, kind in columns})
    norm = norm.sort_values(columns[0][0], kind="stable").reset_index(drop=True)
    return hashlib.sha256(norm.to_csv(index=False).encode()).hexdigest()[:16]


# -- clients -----------------------------------------------------------------------------


def _ssl(info: dict[str, str]) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=info["ca_cert"])


def _token(info: dict[str, str], client: Any) -> str:
    response = client.post(
        info["token_uri"],
        data={
            "grant_type": "client_credentials",
            "client_id": info["confidential_client_id"],
            "client_secret": info["client_secret"],
            "scope": f"{info['base_url']}/.default",
        },
    )
    response.raise_for_status()
    return str(response.json()["access_token"])


def _odata_headers(token: str) -> dict[str, str]:
    return {
        "Authorization": f"Bearer {token}",
        "Accept": "application/json",
        "OData-MaxVersion": "4.0",
        "OData-Version": "4.0",
    }


def _d365nb_connection(info: dict[str, str]) -> Any:
    import d365nb.sandbox

    return d365nb.sandbox.connect(info)


def _d365nb_stats(conn: Any, stats: dict[str, Any]) -> dict[str, Any]:
    from d365nb._sync import run_sync

    async def current() -> Any:
        return conn.transport_stats

    found = run_sync(current())
    if found is not None:
        stats.update(requests=found.attempts, throttled=found.throttled, retries=found.retries)
    return stats


def _sdk_client(info: dict[str, str]) -> tuple[Any, Any]:
    """Microsoft's DataverseClient as its README shows, signed in at the sandbox.

    azure-identity's `ClientSecretCredential` takes the sandbox's host as `authority`
    (instance discovery off: the sandbox is not a known cloud) and trusts its CA through
    `connection_verify`; the SDK's own HTTP (requests) trusts it via `REQUESTS_CA_BUNDLE`.
    """
    os.environ["REQUESTS_CA_BUNDLE"] = info["ca_cert"]
    from azure.identity import ClientSecretCredential
    from PowerPlatform.Dataverse.client import DataverseClient

    credential = ClientSecretCredential(
        info["tenant"],
        info["confidential_client_id"],
        info["client_secret"],
        authority=urlsplit(info["base_url"]).netloc,
        connection_verify=info["ca_cert"],
        disable_instance_discovery=True,
    )
    return DataverseClient(info["base_url"], credential), credential


class _RequestsCounter:
    """Counts the HTTP responses (and 429s) the official SDK receives through `requests`."""

    def __init__(self, stats: dict[str, Any]) -> None:
        import requests.adapters

        stats.update(requests=0, throttled=0)
        original = requests.adapters.HTTPAdapter.send

        def send(adapter: Any, request: Any, *args: Any, **kwargs: Any) -> Any:
            response = original(adapter, request, *args, **kwargs)
            if "/api/data/" in str(request.url):
                stats["requests"] += 1
                stats["throttled"] += int(response.status_code == 429)
            return response

        requests.adapters.HTTPAdapter.send = send  # type: ignore[method-assign]


# -- read contenders ---------------------------------------------------------------------


def read_d365nb(info: dict[str, str], params: dict[str, Any], stats: dict) -> pd.DataFrame:
    """`conn.read(...)` with d365nb's defaults (or `parallel=False`)."""
    conn = _d365nb_connection(info)
    try:
        return conn.read(
            "accounts",
            select=list(params.get("columns", READ_COLUMNS)),
            parallel=params.get("parallel", True),
            page_size=PAGE_SIZE,
            progress=False,
        )
    finally:
        _d365nb_stats(conn, stats)
        conn.close()


def read_sdk(info: dict[str, str], params: dict[str, Any], stats: dict) -> pd.DataFrame:
    """The SDK's query API, all pages, into a DataFrame (its README's `to_dataframe()`)."""
    _RequestsCounter(stats)
    client, credential = _sdk_client(info)
    try:
        with client:
            query = client.query.builder("account").select(*READ_COLUMNS).page_size(PAGE_SIZE)
            df: pd.DataFrame = query.execute().to_dataframe()
            return df
    finally:
        credential.close()


def read_httpx(info: dict[str, str], params: dict[str, Any], stats: dict) -> pd.DataFrame:
    """A plain loop: GET, follow `@odata.nextLink`, then `pd.json_normalize`; no retries."""
    import httpx

    stats.update(requests=0, throttled=0, rows_before_error=0)

    def count(response: httpx.Response) -> None:
        if "/api/data/" in str(response.request.url):
            stats["requests"] += 1
            stats["throttled"] += int(response.status_code == 429)

    with httpx.Client(
        verify=_ssl(info), timeout=300, event_hooks={"response": [count]}, trust_env=False
    ) as client:
        headers = _odata_headers(_token(info, client))
        headers["Prefer"] = f"odata.maxpagesize={PAGE_SIZE}"
        url: str | None = f"{info['service_url']}accounts?$select={','.join(READ_COLUMNS)}"
        rows: list[dict[str, Any]] = []
        while url:
            response = client.get(url, headers=headers)
            response.raise_for_status()
            body = response.json()
            rows.extend(body["value"])
            stats["rows_before_error"] = len(rows)
            url = body.get("@odata.nextLink")
    return pd.json_normalize(rows)


def _with_token(reader: Callable[..., pd.DataFrame]) -> Callable[..., pd.DataFrame]:
    """A contender of `_expert` with the token fetched the way every script does it."""

    def run(info: dict[str, str], params: dict[str, Any], stats: dict) -> pd.DataFrame:
        import httpx

        with httpx.Client(verify=_ssl(info), timeout=60, trust_env=False) as client:
            token = _token(info, client)
        select = list(params.get("columns", READ_COLUMNS))
        return reader(info, token, select, PAGE_SIZE, stats)

    return run


def read_expert(info: dict[str, str], params: dict[str, Any], stats: dict) -> pd.DataFrame:
    """The expert's 50-line script (`benchmarks/_expert.py`)."""
    from ._expert import read_expert as expert

    return _with_token(expert)(info, params, stats)


def read_wire_floor(info: dict[str, str], params: dict[str, Any], stats: dict) -> pd.DataFrame:
    """The same concurrent fetch, bytes only (`benchmarks/_expert.py`)."""
    from ._expert import read_wire_floor as floor

    return _with_token(floor)(info, params, stats)


READERS: dict[str, Callable[[dict[str, str], dict[str, Any], dict], pd.DataFrame]] = {
    "expert-script": read_expert,
    "wire-floor": read_wire_floor,
    "d365nb": read_d365nb,
    "d365nb-sequential": lambda info, params, stats: read_d365nb(
        info, {**params, "parallel": False}, stats
    ),
    "official-sdk": read_sdk,
    "httpx-loop": read_httpx,
}


# -- write contenders --------------------------------------------------------------------


def write_frame(rows: int, existing: int, tag: str) -> pd.DataFrame:
    """`rows` rows keyed by accountnumber: the first half update seeded accounts
    (``ACC-0000001``...), the rest create accounts new to this run (``<tag>-00001``...).
    `telephone1` carries the run's `tag` so that a read-back finds exactly these rows."""
    update = min(rows // 2, existing)
    numbers = [f"ACC-{i:07d}" for i in range(1, update + 1)]
    numbers += [f"{tag}-{i:05d}" for i in range(1, rows - update + 1)]
    return pd.DataFrame(
        {
            "accountnumber": numbers,
            "name": [f"Bench {tag} {i}" for i in range(rows)],
            "telephone1": [tag] * rows,
            "revenue": [round(1000.0 + i * 1.25, 2) for i in range(rows)],
            "numberofemployees": pd.array([i % 5000 for i in range(rows)], dtype="Int64"),
        }
    )


def _records(df: pd.DataFrame) -> list[dict[str, Any]]:
    out = []
    for row in df.itertuples(index=False):
        out.append(
            {
                "accountnumber": row.accountnumber,
                "name": row.name,
                "telephone1": row.telephone1,
                "revenue": float(row.revenue),
                "numberofemployees": int(row.numberofemployees),
            }
        )
    return out


def write_d365nb(info: dict[str, str], df: pd.DataFrame, stats: dict) -> None:
    """`df.d365.push(...)` upserting by the alternate key (or creating: `mode` in attrs)."""
    mode = df.attrs.get("bench_mode", "upsert")
    conn = _d365nb_connection(info)
    try:
        if mode == "create":
            report = df.d365.push(table="accounts", mode="create", conn=conn, progress=False)
        else:
            report = df.d365.push(
                table="accounts", key="accountnumber", mode="upsert", conn=conn, progress=False
            )
        failed = getattr(report, "failed", None)
        if failed is not None:
            stats["failed_rows"] = len(failed)
        counts = getattr(report, "counts", None)
        if counts is not None:
            stats["statuses"] = {k: int(v) for k, v in counts.items() if v}
        stats["push_requests"] = getattr(report, "requests", None)
    finally:
        _d365nb_stats(conn, stats)
        conn.close()


def _register_accessor() -> None:
    """`import d365nb` should register `DataFrame.d365`; import its module if it did not."""
    import d365nb  # noqa: F401

    if not hasattr(pd.DataFrame, "d365"):
        import d365nb._accessor  # noqa: F401


def write_sdk(info: dict[str, str], df: pd.DataFrame, stats: dict) -> None:
    """`client.records.upsert(table, [UpsertItem(...)])`: UpsertMultiple, as the README shows
    (creates: `client.records.create(table, [...])`, CreateMultiple)."""
    from PowerPlatform.Dataverse.models import UpsertItem

    _RequestsCounter(stats)
    client, credential = _sdk_client(info)
    try:
        with client:
            if df.attrs.get("bench_mode") == "create":
                client.records.create("account", _records(df))
                return
            items = [
                UpsertItem(
                    alternate_key={"accountnumber": record.pop("accountnumber")}, record=record
                )
                for record in _records(df)
            ]
            client.records.upsert("account", items)
    finally:
        credential.close()


def write_httpx(info: dict[str, str], df: pd.DataFrame, stats: dict) -> None:
    """One `PATCH accounts(accountnumber='...')` per row, one after the other."""
    import httpx

    stats.update(requests=0, throttled=0)
    with httpx.Client(verify=_ssl(info), timeout=300, trust_env=False) as client:
        headers = _odata_headers(_token(info, client))
        for record in _records(df):
            key = quote(record.pop("accountnumber").replace("'", "''"))
            url = f"{info['service_url']}accounts(accountnumber='{key}')"
            response = client.patch(url, json=record, headers=headers)
            stats["requests"] += 1
            stats["throttled"] += int(response.status_code == 429)
            response.raise_for_status()


WRITERS: dict[str, Callable[[dict[str, str], pd.DataFrame, dict], None]] = {
    "d365nb": write_d365nb,
    "official-sdk": write_sdk,
    "httpx-per-row": write_httpx,
}


def read_back(info: dict[str, str], tag: str) -> pd.DataFrame:
    """The accounts whose telephone1 is `tag` (a write's rows), with plain httpx."""
    import httpx

    with httpx.Client(verify=_ssl(info), timeout=300, trust_env=False) as client:
        headers = _odata_headers(_token(info, client))
        headers["Prefer"] = f"odata.maxpagesize={PAGE_SIZE}"
        select = ",".join(("accountnumber", *WRITE_COLUMNS))
        url: str | None = (
            f"{info['service_url']}accounts?$select={select}&$filter=telephone1 eq '{tag}'"
        )
        rows: list[dict[str, Any]] = []
        while url:
            response = client.get(url, headers=headers)
            response.raise_for_status()
            body = response.json()
            rows.extend(body["value"])
            url = body.get("@odata.nextLink")
    return pd.DataFrame(rows, columns=["accountnumber", *WRITE_COLUMNS])


WRITE_FINGERPRINT: tuple[tuple[str, str], ...] = (
    ("accountnumber", "str"),
    ("name", "str"),
    ("telephone1", "str"),
    ("revenue", "float"),
    ("numberofemployees", "int"),
)


# -- the child process -------------------------------------------------------------------


def _load_d365nb() -> None:
    """Load d365nb's client and HTTP stack before the baseline, as the other contenders'
    libraries are: the harness's `d365nb.sandbox.connect` and httpcore (which httpx
    imports only when its first transport is built).  Only imports: no connection, no
    request, no cache is touched."""
    import httpcore  # noqa: F401

    import d365nb.sandbox._connect  # noqa: F401
    import d365nb.sandbox._notebook  # noqa: F401


def run_job(spec: dict[str, Any]) -> dict[str, Any]:
    """Run one job described by `spec` and return its measurements."""
    info: dict[str, str] = spec["sandbox"]
    kind: str = spec["kind"]
    contender: str = spec["contender"]
    params: dict[str, Any] = spec.get("params", {})
    result: dict[str, Any] = {"kind": kind, "contender": contender}
    stats: dict[str, Any] = {}
    if kind == "read":
        job: Callable[[], Any] = lambda: READERS[contender](info, params, stats)  # noqa: E731
        # Import what the contender needs before the baseline.
        if contender.startswith("d365nb"):
            _load_d365nb()
        elif contender == "official-sdk":
            import azure.identity  # noqa: F401
            import PowerPlatform.Dataverse.client  # noqa: F401
        else:
            import httpx  # noqa: F401
            import orjson  # noqa: F401

            from . import _expert  # noqa: F401
    elif kind == "write":
        frame = write_frame(params["rows"], params["existing"], params["tag"])
        frame.attrs["bench_mode"] = params.get("mode", "upsert")
        job = lambda: WRITERS[contender](info, frame, stats)  # noqa: E731
        if contender == "d365nb":
            _register_accessor()
            _load_d365nb()
        elif contender == "official-sdk":
            import azure.identity  # noqa: F401
            import PowerPlatform.Dataverse.client  # noqa: F401
    else:
        raise ValueError(f"unknown job kind {kind!r}")
    baseline = rss_bytes()
    started, cpu_started = time.perf_counter(), time.process_time()
    error: str | None = None
    output: Any = None
    try:
        output = job()
    except Exception as exc:  # reported, not raised: a contender may fail (e.g. on 429)
        error = f"{type(exc).__name__}: {str(exc)[:300]}"
    seconds = time.perf_counter() - started
    cpu_seconds = time.process_time() - cpu_started
    result.update(
        seconds=seconds,
        cpu_seconds=cpu_seconds,
        baseline_rss=baseline,
        peak_rss=peak_rss_bytes(),
        error=error,
    )
    result.update(stats)
    if kind == "read":
        if output is not None:
            df = output
            result["rows"] = stats.pop("wire_rows", len(df))
            result["columns"] = len(df.columns)
            result["frame_bytes"] = int(df.memory_usage(deep=True).sum())
            if spec.get("fingerprint", True) and len(df) and contender != "wire-floor":
                result["fingerprint"] = fingerprint(df, FINGERPRINT_COLUMNS)
        else:
            result["rows"] = 0
    else:
        back = read_back(info, params["tag"])
        result["rows"] = len(back)
        result["fingerprint"] = fingerprint(back, WRITE_FINGERPRINT) if len(back) else None
        result["expected_fingerprint"] = fingerprint(frame, WRITE_FINGERPRINT)
    return result


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    spec_path, out_path = args
    with open(spec_path) as fh:
        spec = json.load(fh)
    result = run_job(spec)
    with open(out_path, "w") as fh:
        json.dump(result, fh)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
