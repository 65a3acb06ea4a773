"""F&O throttling: service protection limits and priority-based throttling (§5.1, §5.2).

`FnoLimits.admit(caller_key)` runs before each top-level request and raises a 429
`FnoError` with ``Retry-After`` (integer seconds) when:

* the caller's **integration priority** (`priorities`: client id or UPN → ``Low`` /
  ``Medium`` / ``High``; unmapped callers are ``Medium`` [UNVERIFIED]) is at or below
  the simulated `resource_pressure` (``none`` / ``low`` / ``medium`` / ``high``), or a
  `throttle_next` storm is on (the next N requests, whoever sends them) - Microsoft's
  "high resource utilization" message, ``Retry-After: retry_after_seconds``;
* a **user-based limit** is crossed (per caller, sliding `window_seconds`):
  `max_requests_per_window` requests, `max_execution_seconds_per_window` seconds of
  execution, `max_concurrent_requests` at once - Microsoft's messages (typo included),
  ``Retry-After`` = until the window frees a slot.

The 429 body has F&O's error shape with the message in `error.message` ([UNVERIFIED]).
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from ._fno_errors import FnoError

__all__ = ["FnoLimits"]

_LEVELS = {"none": 0, "low": 1, "medium": 2, "high": 3}
_PRIORITIES = {"low": 1, "medium": 2, "high": 3}
_RESOURCE = (
    "This request could not be processed at this time due to system experiencing high "
    "resource utilization."
)


@dataclass
class _Bucket:
    starts: deque[float] = field(default_factory=deque)
    runs: deque[tuple[float, float]] = field(default_factory=deque)
    in_flight: int = 0


@dataclass
class FnoLimits:
    """Throttling knobs and counters (changed at run time through ``/fno/_sandbox/knobs``)."""

    resource_pressure: str = "none"
    priorities: dict[str, str] = field(default_factory=dict)
    throttle_next: int = 0
    retry_after_seconds: int = 5
    window_seconds: float = 300.0
    max_requests_per_window: int = 6000
    max_execution_seconds_per_window: float = 1200.0
    max_concurrent_requests: int = 52
    latency_ms: float = 0.0
    _buckets: dict[str, _Bucket] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def knobs(self) -> dict[str, Any]:
        """The public knobs as a dict."""
        return {k: v for k, v in vars(self).items() if not k.startswith("_")}

    def configure(self, **changes: Any) -> None:
        """Change knobs by name (`ValueError` for unknown names or values)."""
        known = self.knobs()
        for name, value in changes.items():
            if name not in known:
                raise ValueError(f"Unknown F&O knob {name!r}; known: {', '.join(sorted(known))}.")
            if name == "resource_pressure" and str(value).lower() not in _LEVELS:
                raise ValueError("resource_pressure is one of none, low, medium, high.")
            if name == "priorities" and not all(
                str(p).lower() in _PRIORITIES for p in dict(value).values()
            ):
                raise ValueError("priorities map callers to Low, Medium or High.")
        with self._lock:
            for name, value in changes.items():
                setattr(self, name, type(known[name])(value))

    def reset(self) -> None:
        """Clear the counters."""
        with self._lock:
            self._buckets.clear()

    def _priority(self, caller_key: str) -> int:
        for key, value in self.priorities.items():
            if key.lower() == caller_key.lower():
                return _PRIORITIES[value.lower()]
        return _PRIORITIES["medium"]

    def admit(self, caller_key: str) -> None:
        """Count a request in, or raise the 429 it gets."""
        now = time.monotonic()
        with self._lock:
            if (
                self.throttle_next > 0
                or self._priority(caller_key) <= _LEVELS[self.resource_pressure.lower()]
            ):
                self.throttle_next = max(0, self.throttle_next - 1)
                raise _too_many(_RESOURCE, self.retry_after_seconds)
            bucket = self._buckets.setdefault(caller_key, _Bucket())
            horizon = now - self.window_seconds
            while bucket.starts and bucket.starts[0] <= horizon:
                bucket.starts.popleft()
            while bucket.runs and bucket.runs[0][0] <= horizon:
                bucket.runs.popleft()
            if bucket.in_flight >= self.max_concurrent_requests:
                raise _too_many(
                    "Number of concurrent requests exceeded the limit of "
                    f"{self.max_concurrent_requests}.",
                    1,
                )
            if len(bucket.starts) >= self.max_requests_per_window:
                wait = bucket.starts[0] + self.window_seconds - now
                raise _too_many(
                    f"Number of requests exeeded the limit of {self.max_requests_per_window} "
                    f"over the time window of {self.window_seconds:g} seconds.",
                    wait,
                )
            if sum(d for _, d in bucket.runs) >= self.max_execution_seconds_per_window:
                wait = bucket.runs[0][0] + self.window_seconds - now
                raise _too_many(
                    "Combined execution time of incoming requests exceeded limit of "
                    f"{self.max_execution_seconds_per_window:g} seconds over time window of "
                    f"{self.window_seconds:g} seconds. Decrease number of concurrent requests "
                    "or reduce the duration of requests and try again later.",
                    wait,
                )
            bucket.starts.append(now)
            bucket.in_flight += 1

    def done(self, caller_key: str, started: float) -> None:
        """Count an admitted request out (`started`: its `time.monotonic()`)."""
        now = time.monotonic()
        with self._lock:
            bucket = self._buckets.setdefault(caller_key, _Bucket())
            bucket.in_flight = max(0, bucket.in_flight - 1)
            bucket.runs.append((now, now - started))


def _too_many(message: str, retry_after: float) -> FnoError:
    seconds = max(0, math.ceil(retry_after))
    return FnoError(429, message, headers={"Retry-After": str(seconds)})
