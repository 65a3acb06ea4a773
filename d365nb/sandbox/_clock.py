"""The sandbox's clock: real time plus an offset tests can move.

Token lifetimes, refresh tokens, authorization and device codes all read it, so a test
of expiry says ``sb.knobs(clock_offset=3600)`` instead of sleeping.
"""

from __future__ import annotations

import time

__all__ = ["Clock"]


class Clock:
    """Seconds since the epoch, `offset` seconds ahead of the machine's clock.

    **Parameters:**

    * **offset** - how far ahead (negative: behind) of real time the sandbox runs.
    """

    def __init__(self, offset: float = 0.0) -> None:
        self.offset = float(offset)

    def __repr__(self) -> str:
        return f"Clock(offset={self.offset:g})"

    def __call__(self) -> float:
        """Now, as the sandbox sees it."""
        return time.time() + self.offset
