"""Pending device-code sign-ins and the polling state machine (RFC 8628, as Entra runs it).

Pure bookkeeping, no I/O: the identity app asks `DeviceCodes.poll()` what a poll should
answer, and the sign-in page and the sandbox-only approve endpoint call `approve()` /
`decline()`.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from ._directory import App, User

__all__ = ["DeviceCode", "DeviceCodes", "PollOutcome", "normalize_user_code"]

# Entra's user codes are 9 characters of upper-case letters and digits; leave out the
# ones people misread (0/O, 1/I/L, 5/S, 2/Z, 8/B).
_USER_CODE_ALPHABET = "ACDEFGHJKMNPQRTUVWXY34679"
_USER_CODE_LENGTH = 9
# Polls this much earlier than `interval` after the previous one still count as on time
# (network jitter); earlier polls get `slow_down`.
_POLL_TOLERANCE = 0.25
# Expired or finished entries are kept this long to answer `expired_token` rather than
# `bad_verification_code`.
_KEEP_AFTER_EXPIRY = 3600.0

PollOutcome = Literal["approved", "pending", "slow_down", "expired", "declined", "unknown"]


def normalize_user_code(text: str) -> str:
    """`text` as a user code: upper case, without spaces or dashes."""
    return "".join(ch for ch in text.upper() if ch.isalnum())


@dataclass
class DeviceCode:
    """One device-code sign-in: who asked, for what, and what the person decided."""

    device_code: str
    user_code: str
    app: App
    # The scope or resource request, kept opaque here (the identity app's `Grant`).
    grant: object
    version: str
    expires_at: float
    interval: int
    state: Literal["pending", "approved", "declined"] = "pending"
    user: User | None = None
    last_poll: float | None = field(default=None)


class DeviceCodes:
    """The device codes handed out and not yet redeemed.

    **Parameters:**

    * **lifetime** - seconds a code stays valid (Entra: 900).
    * **interval** - the polling interval announced to clients (Entra: 5).
    """

    def __init__(
        self, *, lifetime: int, interval: int, clock: Callable[[], float] = time.time
    ) -> None:
        self.lifetime = lifetime
        self.interval = interval
        self.clock = clock
        self._by_device: dict[str, DeviceCode] = {}
        self._by_user: dict[str, DeviceCode] = {}

    def __len__(self) -> int:
        return len(self._by_device)

    def create(self, *, app: App, grant: object, version: str) -> DeviceCode:
        """A new pending device code for `app`."""
        self._purge()
        while True:
            user_code = "".join(
                secrets.choice(_USER_CODE_ALPHABET) for _ in range(_USER_CODE_LENGTH)
            )
            if user_code not in self._by_user:
                break
        entry = DeviceCode(
            device_code=secrets.token_urlsafe(48),
            user_code=user_code,
            app=app,
            grant=grant,
            version=version,
            expires_at=self.clock() + self.lifetime,
            interval=self.interval,
        )
        self._by_device[entry.device_code] = entry
        self._by_user[user_code] = entry
        return entry

    def lookup(self, user_code: str, *, now: float | None = None) -> DeviceCode | None:
        """The pending, unexpired code a person typed, or None."""
        entry = self._by_user.get(normalize_user_code(user_code))
        now = self.clock() if now is None else now
        if entry is None or entry.state != "pending" or now >= entry.expires_at:
            return None
        return entry

    def approve(self, user_code: str, user: User) -> DeviceCode | None:
        """Approve a pending code as `user`; None when no such pending code exists."""
        entry = self.lookup(user_code)
        if entry is not None:
            entry.state = "approved"
            entry.user = user
        return entry

    def decline(self, user_code: str) -> DeviceCode | None:
        """Decline a pending code; None when no such pending code exists."""
        entry = self.lookup(user_code)
        if entry is not None:
            entry.state = "declined"
        return entry

    def poll(
        self, device_code: str, *, now: float | None = None
    ) -> tuple[PollOutcome, DeviceCode | None]:
        """What a token request with `device_code` gets now.

        An approved code is handed out once and then forgotten (a second redemption is
        ``unknown``).  A poll sooner than `interval` after the previous one answers
        ``slow_down`` and, as RFC 8628 asks, adds 5 seconds to the interval.
        """
        now = self.clock() if now is None else now
        entry = self._by_device.get(device_code)
        if entry is None:
            return "unknown", None
        if entry.state == "approved":
            self._forget(entry)
            return "approved", entry
        if now >= entry.expires_at:
            return "expired", entry
        if entry.state == "declined":
            return "declined", entry
        previous, entry.last_poll = entry.last_poll, now
        if previous is not None and now - previous < entry.interval - _POLL_TOLERANCE:
            entry.interval += 5
            return "slow_down", entry
        return "pending", entry

    def _forget(self, entry: DeviceCode) -> None:
        self._by_device.pop(entry.device_code, None)
        self._by_user.pop(entry.user_code, None)

    def _purge(self) -> None:
        now = self.clock()
        for entry in list(self._by_device.values()):
            if now >= entry.expires_at + _KEEP_AFTER_EXPIRY:
                self._forget(entry)
