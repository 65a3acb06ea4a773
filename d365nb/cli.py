"""The ``d365nb`` command.

```
d365nb demo [--rows N]          start an embedded sandbox, sign in, read, fix, push, report
d365nb sandbox [options]        run the local Entra ID + Dataverse Web API stand-in
d365nb login [connection]       sign in (device code in a terminal) and save a profile
d365nb whoami [connection]      who the service thinks you are
d365nb export TABLE -o FILE     a table (or a query) to .csv or .parquet
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
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._client import Connection, WhoAmI
    from .sandbox import SandboxInfo

__all__ = ["build_parser", "main", "sandbox_main"]

_SANDBOX_ENV = "D365NB_SANDBOX"  # the name `d365nb.sandbox.SandboxInfo.from_env` reads
_CA_ENV = "D365NB_CA_CERT"


def _add_sandbox_arguments(parser: argparse.ArgumentParser) -> None:
    from .sandbox._options import SandboxOptions

    d = SandboxOptions()
    server = parser.add_argument_group("server")
    server.add_argument(
        "--host", help=f"interface to listen on (default {d.host}; 0.0.0.0 in a container)"
    )
    server.add_argument("--port", type=int, help="port to listen on (default: a free port)")
    server.add_argument(
        "--data-dir",
        type=Path,
        help=f"where the CA, keys and database live (default {d.data_dir})",
    )
    server.add_argument(
        "--memory",
        action="store_true",
        default=None,
        help="keep the database in memory (nothing written but the CA and keys)",
    )
    server.add_argument(
        "--reset", action="store_true", default=None, help="re-seed the database on start"
    )
    data = parser.add_argument_group("data")
    data.add_argument("--rows", type=int, help=f"number of accounts to seed (default {d.rows})")
    data.add_argument("--seed", type=int, help=f"random seed of the data (default {d.seed})")
    data.add_argument("--fno", action="store_true", default=None, help="also serve F&O at /fno")
    data.add_argument("--fno-rows", type=int, help=f"F&O customers (default {d.fno_rows})")
    identity = parser.add_argument_group("sign-in")
    identity.add_argument(
        "--auto-approve",
        action="store_true",
        default=None,
        help="device codes approve themselves as the first user (demos, Binder)",
    )
    identity.add_argument(
        "--token-lifetime",
        type=int,
        metavar="SECONDS",
        help=f"access token lifetime (default {d.access_token_lifetime}; msal refreshes "
        "tokens with less than 300 s left)",
    )
    web = parser.add_argument_group("Web API behaviour")
    web.add_argument(
        "--latency-ms", type=float, help="delay added to every Web API request (default 0)"
    )
    web.add_argument(
        "--max-requests",
        type=int,
        help="service protection: requests per user per window "
        f"(default {d.max_requests_per_window})",
    )
    web.add_argument(
        "--window",
        type=float,
        metavar="SECONDS",
        help=f"service protection: window length (default {d.window_seconds:g})",
    )
    web.add_argument(
        "--max-concurrent",
        type=int,
        help=f"service protection: concurrent requests per user (default "
        f"{d.max_concurrent_requests})",
    )
    web.add_argument(
        "--retry-after",
        type=float,
        metavar="SECONDS",
        help="fixed Retry-After on HTTP 429 (default: time until the window ends)",
    )
    web.add_argument(
        "--fault-503-rate",
        type=float,
        metavar="SHARE",
        help="share of Web API requests answered 503, 0..1 (default 0)",
    )
    web.add_argument(
        "--fault-drop-rate",
        type=float,
        metavar="SHARE",
        help="share of Web API requests whose connection is dropped, 0..1 (default 0)",
    )
    # Used by start(subprocess=True) to hand every SandboxOptions field to the child.
    parser.add_argument("--options-json", help=argparse.SUPPRESS)


_FLAG_TO_OPTION = {
    "host": "host",
    "port": "port",
    "data_dir": "data_dir",
    "reset": "reset",
    "rows": "rows",
    "seed": "seed",
    "fno": "fno",
    "fno_rows": "fno_rows",
    "auto_approve": "auto_approve",
    "token_lifetime": "access_token_lifetime",
    "latency_ms": "latency_ms",
    "max_requests": "max_requests_per_window",
    "window": "window_seconds",
    "max_concurrent": "max_concurrent_requests",
    "retry_after": "retry_after_seconds",
    "fault_503_rate": "fault_503_rate",
    "fault_drop_rate": "fault_drop_rate",
}


def _sandbox_knobs(args: argparse.Namespace) -> dict[str, Any]:
    knobs: dict[str, Any] = {}
    if args.options_json:
        knobs.update(json.loads(args.options_json))
    for flag, option in _FLAG_TO_OPTION.items():
        value = getattr(args, flag)
        if value is not None:
            knobs[option] = value
    if args.memory:
        knobs["database"] = ":memory:"
    return knobs


def _instructions(info: dict[str, str], *, auto_approve: bool) -> str:
    ca = info["ca_cert"]
    approve = (
        "  Device codes approve themselves (--auto-approve).\n"
        if auto_approve
        else (
            f"  Approve a device code:  open {info['device_login_url']}\n"
            f"                          or curl --cacert {ca} -H 'Content-Type: "
            "application/json' \\\n"
            f'                            -d \'{{"user_code": "CODE", "user": "alex"}}\''
            f" {info['approve_url']}\n"
        )
    )
    return (
        f"d365nb sandbox running at {info['base_url']}  (Ctrl-C to stop)\n"
        f"  Service URL (Web API):  {info['service_url']}\n"
        f"  Authority:              {info['authority']}\n"
        f"  Token URI:              POST {info['token_uri']}\n"
        f"  Auth URI:               {info['auth_uri']}\n"
        f"  Trust this CA:          {ca}\n"
        f"  Public client id:       {info['public_client_id']}  (device code, auth code)\n"
        f"  Confidential client id: {info['confidential_client_id']}  "
        f"secret: {info['client_secret']}\n"
        f"{approve}"
        "  Users: alex, megan (Dataverse roles), norole (no role: reads get 403)\n"
    )


def _run_sandbox(args: argparse.Namespace) -> int:
    from .sandbox._server import start, wait_for_signal

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
    logger = logging.getLogger("d365nb.sandbox")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        sandbox = start(**_sandbox_knobs(args))
        try:
            info = sandbox.info()
            sys.stdout.write(sandbox.describe().to_json() + "\n")
            sys.stdout.flush()
            sys.stderr.write(_instructions(info, auto_approve=sandbox.options.auto_approve))
            sys.stderr.flush()
            wait_for_signal()
        finally:
            sandbox.stop()
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    sys.stderr.write("d365nb sandbox stopped.\n")
    return 0


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
    from ._config import GRANTS

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
    from ._config import Settings
    from ._exceptions import ConfigError
    from .sandbox import SandboxInfo

    fields: dict[str, Any] = {
        name: getattr(args, name) for name, _, _ in _FIELD_FLAGS if getattr(args, name)
    }
    if args.grant:
        fields["grant"] = args.grant
    info = _sandbox_info(args)
    if info is not None:
        grant = fields.get("grant") or default_grant
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
        fields = {**base, **fields}
    settings = Settings.resolve(args.connection_string, profile=args.profile, **fields)
    verify: Any = args.ca_cert or os.environ.get(_CA_ENV) or None
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
    return Connection(
        settings, verify=True if verify is None else verify, token_cache=args.token_cache
    )


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
        if args.resume:
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
    if args.resume:
        summary["resumed_rows"] = already
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
    "sandbox": (
        "run a local stand-in for Entra ID and the Dataverse Web API over HTTPS; prints one "
        "JSON line (service_url, authority, token_uri, ca_cert, client ids, ...) on stdout",
        _add_sandbox_arguments,
        _run_sandbox,
    ),
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
    "export": (
        "read a table (or a query: --select, --filter, ...) with a progress bar and write it "
        "to .csv, or .parquet (needs pyarrow)",
        _add_export_arguments,
        _run_export,
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


def sandbox_main(argv: Sequence[str] | None = None, *, prog: str = "d365nb sandbox") -> int:
    """Run only the sandbox command (``python -m d365nb.sandbox``)."""
    text, add_arguments, run = _COMMANDS["sandbox"]
    parser = argparse.ArgumentParser(prog=prog, description=text)
    add_arguments(parser)
    args = parser.parse_args(argv)
    args.run = run
    return _dispatch(args)


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
