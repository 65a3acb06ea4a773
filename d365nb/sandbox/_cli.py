"""``d365nb sandbox`` / ``python -m d365nb.sandbox``: the sandbox's command-line options.

`add_sandbox_arguments` declares the knobs as flags, `run_sandbox` starts a sandbox, prints
its JSON line (`SandboxInfo.to_json()`) on stdout and serves until Ctrl-C.  The ``d365nb``
command (`d365nb/cli.py`) registers these two as its ``sandbox`` subcommand;
`sandbox_main` runs them alone.
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .._exceptions import D365Error
from ._info import SANDBOX_HELP
from ._options import SandboxOptions
from ._server import start, wait_for_signal

__all__ = ["add_sandbox_arguments", "run_sandbox", "sandbox_main"]


def add_sandbox_arguments(parser: argparse.ArgumentParser) -> None:

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
    secret = info.get("admin_secret", "")
    approve = (
        "  Device codes approve themselves (--auto-approve).\n"
        if auto_approve
        else (
            f"  Approve a device code:  open {info['device_login_url']}\n"
            f"                          or curl --cacert {ca} -H 'Content-Type: "
            "application/json' \\\n"
            f"                            -H 'X-D365NB-Sandbox-Secret: {secret}' \\\n"
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


def run_sandbox(args: argparse.Namespace) -> int:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
    logger = logging.getLogger("d365nb.sandbox")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        sandbox = start(**_sandbox_knobs(args))
        # This process only serves now: what start-up made (imports, the schema, the
        # seed) lives as long as it does, so the collector stops walking it (a bulk
        # write's allocations triggered full collections over all of it).
        gc.freeze()
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


def sandbox_main(argv: Sequence[str] | None = None, *, prog: str = "d365nb sandbox") -> int:
    """Run only the sandbox command (``python -m d365nb.sandbox``).

    **Parameters:**

    * **argv** - the arguments (default: ``sys.argv[1:]``).
    * **prog** - the program name shown in ``--help``.
    """
    parser = argparse.ArgumentParser(prog=prog, description=SANDBOX_HELP)
    add_sandbox_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return run_sandbox(args)
    except KeyboardInterrupt:
        return 130
    except D365Error as exc:
        sys.stderr.write(f"d365nb: {exc}\n")
        return 2
