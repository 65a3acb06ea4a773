"""The ``d365nb`` command.

```
d365nb demo [--rows N]          start an embedded sandbox, sign in, read, fix, push, report
d365nb sandbox [options]        run the local Entra ID + Dataverse Web API stand-in
d365nb login [connection]       sign in (device code in a terminal) and save a profile
d365nb whoami [connection]      who the service thinks you are
d365nb export TABLE -o FILE     a table (or a query) to .csv or .parquet
d365nb sync TABLE -o FILE       keep a .parquet copy of a table current (changes only)
```

Each subcommand lives in one `_add_<name>` / `_run_<name>` pair registered in
`_COMMANDS`.  Machine-readable output goes to stdout; messages for people go to stderr.

Connection options are shared by `login`, `whoami` and `export`: a saved profile
(`--profile`), a vendor-style connection string (`--connection-string`), single fields
(`--service-url`, `--client-id`, ...), `D365NB_*` environment variables, or `--sandbox` for
the sandbox that `D365NB_SANDBOX` (or the given JSON/file) describes.  Secrets are never
taken on the command line (shells keep history and `ps` shows arguments): set
`D365NB_CLIENT_SECRET`, `D365NB_ACCESS_TOKEN` or `D365NB_REFRESH_TOKEN` instead.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .sandbox._info import SANDBOX_HELP

if TYPE_CHECKING:
    from ._client import Connection, WhoAmI
    from .sandbox import SandboxInfo

__all__ = ["build_parser", "main"]

_SANDBOX_ENV = "D365NB_SANDBOX"  # the name `d365nb.sandbox.SandboxInfo.from_env` reads
_CA_ENV = "D365NB_CA_CERT"


def _add_sandbox_arguments(parser: argparse.ArgumentParser) -> None:
    from .sandbox._cli import add_sandbox_arguments  # needs the sandbox extra

    add_sandbox_arguments(parser)


def _run_sandbox(args: argparse.Namespace) -> int:
    from .sandbox._cli import run_sandbox

    return run_sandbox(args)


# -- shared connection options (login, whoami, export) ----------------------------------------

_FIELD_FLAGS: tuple[tuple[str, str, str], ...] = (
    ("service_url", "--service-url", "environment URL or Web API root (ServiceURL)"),
    ("client_id", "--client-id", "the app registration's application (client) ID (ClientID)"),
    ("tenant", "--tenant", "directory (tenant) ID or domain"),
    ("auth_uri", "--auth-uri", "OAuth authorization endpoint (AuthURI)"),
    ("token_uri", "--token-uri", "OAuth token endpoint (TokenURI; a leading 'POST ' is fine)"),
    ("scope", "--scope", "v2 scopes, space separated (default: derived from the URL)"),
    ("redirect_uri", "--redirect-uri", "redirect URI for the authorization-code grant"),
    ("api_version", "--api-version", "Web API version: 9.0, 9.1 or 9.2 (default)"),
)


def _add_connection_arguments(parser: argparse.ArgumentParser, *, login: bool = False) -> None:
    from ._fields import GRANTS

    group = parser.add_argument_group(
        "connection",
        "Where to connect and how to sign in.  Precedence: these flags > --connection-string "
        "> --profile > D365NB_* environment variables.  Secrets only come from the "
        "environment: D365NB_CLIENT_SECRET, D365NB_ACCESS_TOKEN, D365NB_REFRESH_TOKEN.",
    )
    group.add_argument("-p", "--profile", help="a saved profile (see `d365nb login`)")
    group.add_argument(
        "--connection-string",
        metavar="TEXT",
        help="vendor-driver style 'ServiceURL=...;ClientID=...;TokenURI=POST ...;' (keep "
        "secrets out of it: use D365NB_CLIENT_SECRET)",
    )
    for name, flag, text in _FIELD_FLAGS:
        group.add_argument(flag, dest=name, help=text)
    group.add_argument(
        "--grant",
        choices=[g for g in GRANTS if g != "credential"],
        help="grant type (default: device_code, or client_credentials when "
        "D365NB_CLIENT_SECRET is set)",
    )
    group.add_argument(
        "--ca-cert",
        metavar="PEM",
        help=f"CA certificate(s) to trust (a corporate proxy's, the sandbox's); also ${_CA_ENV}",
    )
    group.add_argument(
        "--sandbox",
        nargs="?",
        const="",
        metavar="JSON_OR_FILE",
        help=f"use a running sandbox: its JSON info line or a file holding it (default: "
        f"${_SANDBOX_ENV}); grant {'device_code' if login else 'client_credentials'} unless "
        "--grant says otherwise",
    )
    group.add_argument(
        "--no-token-cache",
        dest="token_cache",
        action="store_false",
        help="keep tokens in memory only (default: the per-user token cache, owner-only "
        "files outside any notebook folder)",
    )


def _sandbox_info(args: argparse.Namespace) -> SandboxInfo | None:
    from ._exceptions import ConfigError
    from .sandbox import SandboxInfo

    if args.sandbox is None:
        return None
    info = SandboxInfo.from_text(args.sandbox) if args.sandbox else SandboxInfo.from_env()
    if info is None:
        raise ConfigError(
            f"--sandbox was given but no sandbox is described (${_SANDBOX_ENV} is empty).",
            field=_SANDBOX_ENV,
            hint="Start one with `d365nb sandbox > sandbox.json` and pass --sandbox "
            "sandbox.json (or set D365NB_SANDBOX to that file).",
        )
    return info


def _origin(url: str) -> str:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


def _connect(args: argparse.Namespace, *, default_grant: str) -> Connection:
    """A `Connection` from the shared connection options (no network I/O yet)."""
    import os

    from ._client import Connection
    from ._config import Settings, chosen_grant
    from ._exceptions import ConfigError
    from .sandbox import SandboxInfo

    fields: dict[str, Any] = {
        name: getattr(args, name) for name, _, _ in _FIELD_FLAGS if getattr(args, name)
    }
    if args.grant:
        fields["grant"] = args.grant
    info = _sandbox_info(args)
    if info is not None:
        chosen = chosen_grant(args.connection_string, profile=args.profile)
        grant = fields.get("grant") or chosen or default_grant
        confidential = grant == "client_credentials"
        base = {
            "service_url": info.service_url,
            "tenant": info.tenant,
            "token_uri": info.token_uri,
            "auth_uri": info.auth_uri,
            "client_id": info.confidential_client_id if confidential else info.public_client_id,
            "grant": grant,
        }
        if confidential:
            base["client_secret"] = info.client_secret
        base["ca_cert"] = info.ca_cert
        fields = {**base, **fields}
    if args.ca_cert:
        fields["ca_cert"] = args.ca_cert  # kept in the settings, so a saved profile has it
    settings = Settings.resolve(args.connection_string, profile=args.profile, **fields)
    verify: Any = settings.ca_cert or os.environ.get(_CA_ENV) or None
    if verify is None:
        # A sandbox's address: trust its CA (from --sandbox, or D365NB_SANDBOX).
        known = info
        if known is None:
            try:
                known = SandboxInfo.from_env()
            except ConfigError:
                known = None
        if known is not None and _origin(settings.api_root) == known.origin:
            verify = known.ca_cert
    cls = Connection
    if settings.service == "fno":  # finance and operations apps (issue 23)
        from ._fno_client import FnoConnection

        cls = FnoConnection
    return cls(settings, verify=True if verify is None else verify, token_cache=args.token_cache)


# -- demo ---------------------------------------------------------------------------------------


def _add_demo_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--rows", type=int, default=500, help="accounts to seed in the demo's sandbox (500)"
    )
    parser.add_argument(
        "--latency-ms",
        type=float,
        default=0.0,
        help="delay the sandbox adds to every Web API request (default 0)",
    )


def _run_demo(args: argparse.Namespace) -> int:
    from ._demo import run_demo

    result = run_demo(rows=args.rows, latency_ms=args.latency_ms)
    return 0 if result.ok else 1


# -- login / whoami -----------------------------------------------------------------------------


def _add_login_arguments(parser: argparse.ArgumentParser) -> None:
    _add_connection_arguments(parser, login=True)
    parser.add_argument(
        "--save-as",
        metavar="NAME",
        help="save the settings (never a secret or token) as this profile "
        "(default: --profile's name, else 'default')",
    )
    parser.add_argument(
        "--no-save", action="store_true", help="sign in and check, but save no profile"
    )


def _describe_who(conn: Connection, who: WhoAmI) -> list[str]:
    return [
        f"user:           {who.name or '(name not readable)'} ({who.user_id})",
        f"business unit:  {who.business_unit or who.business_unit_id}",
        f"organization:   {who.organization_id}",
        f"environment:    {conn.settings.org_url}",
        f"grant:          {conn.settings.grant} ({conn.settings.version} endpoints)",
    ]


def _run_login(args: argparse.Namespace) -> int:
    from ._tokencache import default_cache_dir

    with _connect(args, default_grant="device_code") as conn:
        sys.stderr.write(f"Signing in to {conn.settings.org_url} ({conn.settings.grant}) ...\n")
        sys.stderr.flush()
        conn.sign_in()
        who = conn.whoami()
        for line in _describe_who(conn, who):
            sys.stdout.write(line + "\n")
        if args.token_cache:
            sys.stderr.write(f"Tokens are cached (owner-only) in {default_cache_dir()}.\n")
        if not args.no_save:
            name = args.save_as or args.profile or "default"
            path = conn.settings.save_profile(name)
            sys.stderr.write(
                f"Saved profile {name!r} in {path} (no secrets). "
                f"Use it with `d365nb whoami -p {name}` or d365nb.connect(profile={name!r}).\n"
            )
    return 0


def _add_whoami_arguments(parser: argparse.ArgumentParser) -> None:
    _add_connection_arguments(parser)
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def _run_whoami(args: argparse.Namespace) -> int:
    with _connect(args, default_grant="client_credentials") as conn:
        who = conn.whoami()
        if args.json:
            payload = {
                "user_id": who.user_id,
                "name": who.name,
                "business_unit_id": who.business_unit_id,
                "business_unit": who.business_unit,
                "organization_id": who.organization_id,
                "environment": conn.settings.org_url,
                "grant": conn.settings.grant,
            }
            sys.stdout.write(json.dumps(payload) + "\n")
        else:
            for line in _describe_who(conn, who):
                sys.stdout.write(line + "\n")
    return 0


# -- token --------------------------------------------------------------------------------------


def _add_token_arguments(parser: argparse.ArgumentParser) -> None:
    _add_connection_arguments(parser)
    parser.add_argument(
        "--resource",
        metavar="URL",
        help="the resource the token is for (default: the Service URL's); v2 endpoints only",
    )
    parser.add_argument(
        "--json",
        action="store_true",
        help="one JSON object: accessToken, expiresOn (UTC), expires_on (epoch seconds), "
        "tokenType, resource, tenant",
    )


def _run_token(args: argparse.Namespace) -> int:
    from ._exceptions import ConfigError
    from ._sync import run_sync

    if args.resource:
        args.scope = f"{args.resource.rstrip('/')}/.default"
    with _connect(args, default_grant="client_credentials") as conn:
        if args.resource and conn.settings.version == "v1":
            raise ConfigError(
                f"--resource needs v2 endpoints: v1 always asks for {conn.settings.resource}.",
                field="resource",
                hint="Leave --resource out, or use the v2 token URI (.../oauth2/v2.0/token).",
            )
        token = run_sync(conn._token())
        resource = (args.resource or conn.settings.resource).rstrip("/")
        payload = token.as_json(resource=resource, tenant=conn.settings.tenant_id)
        sys.stdout.write((json.dumps(payload) if args.json else token.token) + "\n")
    return 0


# -- export -------------------------------------------------------------------------------------

_FORMATS = ("csv", "parquet")


def _add_export_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("table", help="table: logical name (account) or entity set (accounts)")
    parser.add_argument(
        "-o", "--output", type=Path, required=True, help="file to write: .csv or .parquet"
    )
    parser.add_argument(
        "--format", choices=_FORMATS, help="file format (default: from the file's extension)"
    )
    query = parser.add_argument_group("query")
    query.add_argument("--select", metavar="COLS", help="comma-separated columns (default: all)")
    query.add_argument("--filter", metavar="EXPR", help='OData filter, e.g. "revenue gt 1000000"')
    query.add_argument("--orderby", metavar="EXPR", help='OData orderby, e.g. "name desc"')
    query.add_argument("--top", type=int, metavar="N", help="at most N rows")
    query.add_argument(
        "--expand", metavar="EXPR", help='OData expand, e.g. "primarycontactid($select=fullname)"'
    )
    query.add_argument(
        "--formatted", action="store_true", help="add <column>_label columns (formatted values)"
    )
    query.add_argument(
        "--page-size", type=int, default=5000, help="rows per page, at most 5000 (5000)"
    )
    query.add_argument(
        "--parallel",
        type=int,
        metavar="N",
        help="split the read into N ranges fetched concurrently (default 16; 1: sequential)",
    )
    parser.add_argument(
        "--no-progress", dest="progress", action="store_false", help="no progress bar"
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help="read in primary-key ranges, recording each finished one beside the output "
        "(FILE.d365nb-export/); after a kill, the same command continues where it stopped",
    )
    parser.add_argument(
        "--checkpoint-rows",
        type=int,
        default=100_000,
        metavar="N",
        help="rows per recorded range with --resume (100000)",
    )
    fno = parser.add_argument_group("finance and operations")
    fno.add_argument(
        "--package-threshold",
        type=int,
        default=None,
        metavar="N",
        help="F&O: at N rows or more (by $count) export a whole entity through the Data "
        "management package API instead of OData (default 100000; 0: never)",
    )
    fno.add_argument(
        "--package-project",
        metavar="NAME",
        help="F&O: the export data project the package API runs (default Export-<EntitySet>)",
    )
    _add_connection_arguments(parser)


def _export_format(args: argparse.Namespace) -> str:
    from ._exceptions import ConfigError

    if args.format:
        return str(args.format)
    suffix = args.output.suffix.lower().lstrip(".")
    if suffix in ("parquet", "pq"):
        return "parquet"
    if suffix == "csv":
        return "csv"
    raise ConfigError(
        f"Cannot tell the file format of {str(args.output)!r} from its extension.",
        field="output",
        hint="Name the file .csv or .parquet, or pass --format csv|parquet.",
    )


def _require_pyarrow() -> None:
    import importlib.util

    from ._exceptions import ConfigError

    if importlib.util.find_spec("pyarrow") is None:
        raise ConfigError(
            "Writing .parquet needs pyarrow, which is not installed.",
            field="output",
            hint='Run `pip install pyarrow` (or `pip install "d365nb[parquet]"`), or write '
            "a .csv file instead.",
        )


def _run_export(args: argparse.Namespace) -> int:
    from ._export import export_resumable, write_atomically, write_frame
    from ._sync import run_sync

    fmt = _export_format(args)
    if fmt == "parquet":
        _require_pyarrow()
    select = [c.strip() for c in args.select.split(",") if c.strip()] if args.select else None
    parallel: bool | int = True
    if args.parallel is not None:
        parallel = False if args.parallel <= 1 else args.parallel
    query: dict[str, Any] = {
        "select": select,
        "filter": args.filter,
        "orderby": args.orderby,
        "expand": args.expand,
        "formatted": args.formatted,
        "page_size": args.page_size,
    }
    summary: dict[str, Any] = {"table": args.table}
    with _connect(args, default_grant="client_credentials") as conn:
        packaged = None if args.resume else _export_fno_package(conn, args, query)
        if packaged is not None:
            rows, columns = packaged
        elif args.resume:
            table = run_sync(conn.catalog.table(args.table))
            rows, columns, already = export_resumable(
                lambda **q: conn.read(args.table, parallel=parallel, progress=args.progress, **q),
                primary_id=table.primary_id,
                output=args.output,
                fmt=fmt,
                query=query,
                top=args.top,
                checkpoint_rows=max(1, args.checkpoint_rows),
                report=sys.stderr.write,
            )
        else:
            frame = conn.read(
                args.table, top=args.top, parallel=parallel, progress=args.progress, **query
            )
            # A temporary file beside the output, renamed on success: a killed export
            # leaves the previous file intact.
            write_atomically(args.output, lambda path: write_frame(frame, path, fmt))
            rows, columns = frame.shape
    sys.stderr.write(f"Wrote {rows:,} rows x {columns} columns to {args.output} ({fmt}).\n")
    summary.update(rows=rows, columns=columns, format=fmt, path=str(args.output))
    if packaged is not None:
        summary["via"] = "package API"
    if args.resume:
        summary["resumed_rows"] = already
    sys.stdout.write(json.dumps(summary) + "\n")
    return 0


def _export_fno_package(
    conn: Any, args: argparse.Namespace, query: dict[str, Any]
) -> tuple[int, int] | None:
    """F&O past `--package-threshold` rows: the package API's export; None: use OData."""
    from ._export import write_atomically, write_frame
    from ._fno_export import PACKAGE_THRESHOLD, export_fno_package

    fmt = _export_format(args)
    threshold = PACKAGE_THRESHOLD if args.package_threshold is None else args.package_threshold
    return export_fno_package(
        conn,
        args.table,
        output=args.output,
        query={**query, "top": args.top},
        threshold=threshold,
        project=args.package_project,
        progress=args.progress,
        report=sys.stderr.write,
        write=lambda frame, path: write_atomically(path, lambda p: write_frame(frame, p, fmt)),
    )


def _add_sync_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("table", help="table: logical name (account) or entity set (accounts)")
    parser.add_argument(
        "-o",
        "--output",
        type=Path,
        required=True,
        help="the .parquet copy; its delta link is kept beside it in FILE.d365sync.json",
    )
    parser.add_argument("--select", metavar="COLS", help="comma-separated columns (default: all)")
    parser.add_argument(
        "--no-progress", dest="progress", action="store_false", help="no progress bar"
    )
    _add_connection_arguments(parser)


def _run_sync(args: argparse.Namespace) -> int:
    """First run: a tracked read; later runs: only the changes since the stored link.

    The state file beside the output holds the table, the columns and the delta link
    (never a token).  Both files are written to a temporary name and renamed into place.
    """
    import os
    import time

    import pandas as pd

    _require_pyarrow()
    started = time.perf_counter()
    select = [c.strip() for c in args.select.split(",") if c.strip()] if args.select else None
    out: Path = args.output
    state_path = out.with_name(out.name + ".d365sync.json")
    state: dict[str, Any] = {}
    if out.exists() and state_path.exists():
        state = json.loads(state_path.read_text("utf-8"))
        if state.get("table") != args.table or state.get("select") != select:
            state = {}  # another table or other columns: start over
    with _connect(args, default_grant="client_credentials") as conn:
        if state:
            old = pd.read_parquet(out)
            old.attrs["d365nb"] = {
                "delta_link": state["delta_link"],
                "tracking": {"select": select},
            }
            changes = conn.changes(old, on_expired="reread", progress=args.progress)
            frame = changes.apply(old)
            key = changes.key
            before = set(old[key].astype(str).str.lower())
            after = set(frame[key].astype(str).str.lower())
            touched = set(changes.upserted[key].astype(str).str.lower())
            added, removed = len(after - before), len(before - after)
            updated = len(touched & before & after) if not changes.reread else len(before & after)
            link = changes.delta_link
        else:
            frame = conn.read(args.table, select=select, track_changes=True, progress=args.progress)
            added, updated, removed = len(frame), 0, 0
            link = str(frame.attrs["d365nb"]["delta_link"])
    frame = frame.reset_index(drop=True)
    frame.attrs = {}
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    frame.to_parquet(tmp, index=False)
    os.replace(tmp, out)
    tmp_state = state_path.with_name(f".{state_path.name}.{os.getpid()}.tmp")
    new_state = {"table": args.table, "select": select, "delta_link": link}
    tmp_state.write_text(json.dumps(new_state) + "\n", "utf-8")
    os.replace(tmp_state, state_path)
    took = time.perf_counter() - started
    sys.stderr.write(f"+{added:,} ~{updated:,} -{removed:,} rows in {took:.1f} s\n")
    summary = {"table": args.table, "added": added, "updated": updated, "removed": removed,
               "rows": len(frame), "path": str(out)}  # fmt: skip
    sys.stdout.write(json.dumps(summary) + "\n")
    return 0


_COMMANDS: dict[
    str,
    tuple[str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]],
] = {
    "demo": (
        "the 2-minute tour: start an embedded sandbox, sign in (device code), read accounts "
        "as a typed DataFrame, fix missing emails, push them back (dry run first) and print "
        "a short report",
        _add_demo_arguments,
        _run_demo,
    ),
    "sandbox": (SANDBOX_HELP, _add_sandbox_arguments, _run_sandbox),
    "login": (
        "sign in (device code in a terminal by default), check the connection with WhoAmI and "
        "save the settings as a profile (never a secret); tokens go to the per-user cache",
        _add_login_arguments,
        _run_login,
    ),
    "whoami": (
        "who the service thinks you are: user (or application user), business unit, organization",
        _add_whoami_arguments,
        _run_whoami,
    ),
    "token": (
        "print a current access token for the connection (like `az account get-access-token`), "
        "for curl, Postman or a JDBC/ODBC driver's access-token flow; it is a credential",
        _add_token_arguments,
        _run_token,
    ),
    "export": (
        "read a table (or a query: --select, --filter, ...) with a progress bar and write it "
        "to .csv, or .parquet (needs pyarrow)",
        _add_export_arguments,
        _run_export,
    ),
    "sync": (
        "keep a .parquet copy of a table current: the first run reads it all, later runs "
        "fetch only the changes since (change tracking) and rewrite the file atomically",
        _add_sync_arguments,
        _run_sync,
    ),
}


def build_parser(prog: str = "d365nb") -> argparse.ArgumentParser:
    """The ``d365nb`` argument parser, one subparser per command."""
    from ._version import __version__

    parser = argparse.ArgumentParser(
        prog=prog, description="d365nb: Dynamics 365 / Dataverse from notebooks and shells."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (text, add_arguments, run) in _COMMANDS.items():
        sub = commands.add_parser(name, help=text, description=text)
        add_arguments(sub)
        sub.set_defaults(run=run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``d365nb`` console script.

    **Parameters:**

    * **argv** - the arguments (default: ``sys.argv[1:]``).
    """
    return _dispatch(build_parser().parse_args(argv))


def _dispatch(args: argparse.Namespace) -> int:
    try:
        result: int = args.run(args)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        from ._exceptions import D365Error

        if not isinstance(exc, D365Error):
            raise
        sys.stderr.write(f"d365nb: {exc}\n")
        return 2
    return result
