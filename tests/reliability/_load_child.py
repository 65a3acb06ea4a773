"""A child process running reads and pushes at once against a sandbox (the load test).

Usage: python tests/reliability/_load_child.py '<json: info, tag, reads, pushes, rows>'
Prints one JSON line: a list of outcomes (`{"op", "ok", "error", "rows", "counts"}`).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))


def run(job: dict[str, Any]) -> list[dict[str, Any]]:
    from tests.reliability._load import operations

    return operations(job)


if __name__ == "__main__":
    print(json.dumps(run(json.loads(sys.argv[1]))), flush=True)
