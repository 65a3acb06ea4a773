"""``python -m benchmarks``: run the benchmarks and write results.{md,json,png}."""

from __future__ import annotations

from .run import main

raise SystemExit(main())
