"""Running a script in a new Python process against a sandbox (a new kernel's view)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from d365nb.sandbox import Sandbox


def run_child(script: str, sandbox: Sandbox, folder: Path, *, timeout: float = 120) -> Any:
    """Run `script` with argv `[sandbox info as JSON, folder]`; its last line, as JSON."""
    done = subprocess.run(
        [sys.executable, "-c", script, json.dumps(sandbox.info()), str(folder)],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])
