"""The d365nb error tree: every error d365nb raises is a `D365Error`.

```
D365Error
├── ConfigError        a setting is missing, malformed or contradicts another (also a ValueError)
│   └── InvalidFrameError  a frame cannot be written: every `Problem` found, nothing sent
├── AuthError          sign-in failed: carries the service's code (AADSTS...) and a hint
├── TransportError     the service could not be reached or did not answer usably
│   └── ThrottledError service-protection limits (HTTP 429) outlasted the retry budget
├── ODataError         the Web API answered with an error: status, code (0x...), message
├── BatchFormatError   a `$batch` body could not be built or read (also a ValueError)
├── PartialReadError   a read stopped part-way: carries the rows so far and `resume()`
└── PushError          a push was asked to raise on failure; carries the push report
```

Warnings: `D365Warning` (root) → `InsecureTransportWarning`, `ColumnTypeWarning`.

No event-loop code lives here: `PartialReadError.resume()` is handed its runner.

Every message says what to do next.  No message ever holds a secret or a token:
callers pass values through `redact()` before formatting them into text.
"""

from __future__ import annotations

import html
from collections.abc import Awaitable, Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "AuthError",
    "BatchFormatError",
    "ColumnTypeWarning",
    "ConfigError",
    "D365Error",
    "D365Warning",
    "InsecureTransportWarning",
    "InvalidFrameError",
    "ODataError",
    "PartialReadError",
    "Problem",
    "PushError",
    "ThrottledError",
    "TransportError",
]


class D365Error(Exception):
    """Base class of every error raised by d365nb.

    `hint` is one sentence that tells the user what to do next; it is appended to the
    message so that it also shows in a plain traceback.
    """

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        self.message = message
        self.hint = hint
        super().__init__(message if not hint else f"{message} {hint}")

    def _repr_html_(self) -> str:
        hint = f"<br><i>{html.escape(self.hint)}</i>" if self.hint else ""
        return (
            f"<div class='d365nb-error'><b>{type(self).__name__}</b>: "
            f"{html.escape(self.message)}{hint}</div>"
        )


class ConfigError(D365Error, ValueError):
    """A connection setting is missing, malformed or contradicts another.

    `field` names the setting (as the user knows it, e.g. ``service_url``).
    """

    def __init__(self, message: str, *, field: str | None = None, hint: str | None = None):
        self.field = field
        super().__init__(message, hint=hint)


@dataclass(frozen=True)
class Problem:
    """One reason a frame cannot be written: a column, the rows (index labels), and a fix."""

    column: str
    message: str
    hint: str = ""
    rows: tuple[Hashable, ...] = ()
    row_count: int = 0

    def __str__(self) -> str:
        where = f"column {self.column!r}"
        if self.rows:
            shown = ", ".join(repr(r) for r in self.rows)
            more = self.row_count - len(self.rows)
            where += f", row{'s' if self.row_count > 1 else ''} {shown}"
            if more > 0:
                where += f" (and {more} more)"
        text = f"{where}: {self.message}"
        return f"{text} {self.hint}" if self.hint else text


class InvalidFrameError(ConfigError):
    """The frame cannot be written as it is; `problems` lists every reason found."""

    def __init__(self, problems: Sequence[Problem], *, limit: int = 20) -> None:
        self.problems = tuple(problems)
        lines = [f"  - {p}" for p in self.problems[:limit]]
        if len(self.problems) > limit:
            lines.append(f"  ... and {len(self.problems) - limit} more (see .problems)")
        count = len(self.problems)
        super().__init__(
            f"The frame cannot be written: {count} problem{'s' if count > 1 else ''}, "
            "nothing was sent.\n" + "\n".join(lines),
            field="df",
            hint="Fix the columns named above and push again.",
        )


class AuthError(D365Error):
    """Signing in or refreshing a token failed.

    `code` is the service's error code (``AADSTS7000215``) when it sent one; `error` the
    OAuth error (``invalid_client``); `correlation_id` what Microsoft support asks for.
    """

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        error: str | None = None,
        hint: str | None = None,
        correlation_id: str | None = None,
    ) -> None:
        self.code = code
        self.error = error
        self.correlation_id = correlation_id
        super().__init__(message, hint=hint)


class TransportError(D365Error):
    """The service could not be reached, or the connection broke, after all retries."""


class ThrottledError(TransportError):
    """Service-protection limits (HTTP 429) lasted longer than the retry budget.

    `retry_after` is the service's last `Retry-After`, in seconds.
    """

    def __init__(self, message: str, *, retry_after: float | None = None, hint: str | None = None):
        self.retry_after = retry_after
        super().__init__(message, hint=hint)


class ODataError(D365Error):
    """The Web API answered with an error.

    `status` is the HTTP status, `code` the Dataverse code (``0x80040217``), `message` the
    service's text and `request_id` the `REQ_ID`/`x-ms-service-request-id` to quote to support.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int,
        code: str | None = None,
        request_id: str | None = None,
        hint: str | None = None,
    ) -> None:
        self.status = status
        self.code = code
        self.request_id = request_id
        text = f"HTTP {status}" + (f" {code}" if code else "") + f": {message}"
        if request_id:
            text += f" (request id {request_id})"
        super().__init__(text, hint=hint)
        self.service_message = message


class BatchFormatError(D365Error, ValueError):
    """A `$batch` body could not be built or read.

    `status`, `code` and `message` are what the Web API answers for such a body, so
    the sandbox can send them back as `{"error": {"code": ..., "message": ...}}`.
    """

    def __init__(self, message: str, *, code: str = "0x0", status: int = 400) -> None:
        self.status = status
        self.code = code
        super().__init__(message)

    def to_json(self) -> dict[str, Any]:
        """The Dataverse error body for this error."""
        return {"error": {"code": self.code, "message": self.message}}


class PartialReadError(D365Error):
    """A read stopped before its last page (retries exhausted, interrupted, service error).

    `partial` is a DataFrame of the rows fetched so far (its `attrs["d365nb"]["partial"]`
    is True); `resume()` (or `await aresume()`) fetches only what is missing and returns
    the whole result.  `__cause__` is the error that stopped it.

    `run` is how `resume()` runs `aresume()` from sync code (the reader passes
    `_sync.run_sync`; errors hold no event-loop code of their own).
    """

    def __init__(
        self,
        message: str,
        *,
        partial: Any,
        resume: Callable[[], Awaitable[Any]],
        run: Callable[[Awaitable[Any]], Any],
        hint: str | None = None,
    ) -> None:
        self.partial = partial
        self._resume = resume
        self._run = run
        super().__init__(message, hint=hint)

    async def aresume(self) -> Any:
        """Async twin of `resume`."""
        return await self._resume()

    def resume(self) -> Any:
        """Fetch the rest and return the complete DataFrame."""
        return self._run(self._resume())


class PushError(D365Error):
    """A push with ``on_error="raise"`` had failed rows; `report` holds every row's outcome."""

    def __init__(self, message: str, *, report: Any = None, hint: str | None = None):
        self.report = report
        super().__init__(message, hint=hint)


class D365Warning(UserWarning):
    """Base class of d365nb's warnings."""


class InsecureTransportWarning(D365Warning):
    """TLS certificate verification was turned off; tokens can be stolen in transit."""


class ColumnTypeWarning(D365Warning):
    """A column did not get its metadata dtype and was inferred from its values.

    Either the column is not in the table's metadata (refresh the metadata), or its values
    did not fit the dtype.  Silence with
    `warnings.simplefilter("ignore", d365nb.ColumnTypeWarning)`.
    """
