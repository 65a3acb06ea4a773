"""``python -m d365nb.sandbox``: the same as ``d365nb sandbox``."""

from __future__ import annotations

import sys

from ._cli import sandbox_main

__all__: list[str] = []

if __name__ == "__main__":
    sys.exit(sandbox_main(sys.argv[1:], prog="python -m d365nb.sandbox"))
