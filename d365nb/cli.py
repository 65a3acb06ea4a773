"""The ``d365nb`` command.

```
d365nb sandbox [options]     run the local Entra ID + Dataverse Web API stand-in
```

Each subcommand lives in one `_add_<name>` / `_run_<name>` pair registered in
`_COMMANDS`, so new ones (``demo``, ``login``, ``export``, ``whoami``) slot in beside it.
Machine-readable output goes to stdout; messages for people go to stderr.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

__all__ = ["build_parser", "main", "sandbox_main"]


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
            sys.stdout.write(json.dumps(info) + "\n")
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


_COMMANDS: dict[
    str,
    tuple[str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]],
] = {
    "sandbox": (
        "run a local stand-in for Entra ID and the Dataverse Web API over HTTPS; prints one "
        "JSON line (service_url, authority, token_uri, ca_cert, client ids, ...) on stdout",
        _add_sandbox_arguments,
        _run_sandbox,
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
