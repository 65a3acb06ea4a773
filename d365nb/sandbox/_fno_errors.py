"""Errors of the sandbox's finance and operations environment, in F&O's shape (§4.7).

F&O answers with an OData error whose `code` is empty; query and payload problems are
400 with the parser's text in `message`, while business-rule failures on writes are
**500** with the generic "An error has occurred." and the X++ infolog in `innererror`.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "WRITE_EXCEPTION",
    "FnoError",
    "bad_query",
    "no_property",
    "not_found",
    "write_failed",
]

WRITE_EXCEPTION = "Microsoft.Dynamics.Platform.Integration.Services.OData.AxODataWriteException"
_STACK = "   at Microsoft.Dynamics.Platform.Integration.Services.OData.Update.UpdateProcessor"


class FnoError(Exception):
    """Raised anywhere in the F&O environment; `body()` is the JSON error document.

    **Parameters:**

    * **status** - the HTTP status.
    * **message** - `error.message`.
    * **inner** - `innererror.message`, when the error carries one.
    * **inner_type** - `innererror.type`.
    * **headers** - extra response headers (``Retry-After``).
    """

    def __init__(
        self,
        status: int,
        message: str,
        *,
        inner: str | None = None,
        inner_type: str = "",
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(inner or message)
        self.status = status
        self.message = message
        self.inner = inner
        self.inner_type = inner_type
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        """``{"error": {"code": "", "message": ..., "innererror": {...}}}``."""
        error: dict[str, Any] = {"code": "", "message": self.message}
        if self.inner is not None:
            error["innererror"] = {
                "message": self.inner,
                "type": self.inner_type,
                "stacktrace": _STACK if self.inner_type == WRITE_EXCEPTION else "",
            }
        return {"error": error}


def write_failed(aot: str, *lines: str) -> FnoError:
    """500 with "Write failed for table row of type '<aot>'. Infolog: <lines>" (§4.7)."""
    infolog = "; ".join(lines)
    return FnoError(
        500,
        "An error has occurred.",
        inner=f"Write failed for table row of type '{aot}'. Infolog: {infolog}",
        inner_type=WRITE_EXCEPTION,
    )


def bad_query(text: str) -> FnoError:
    """400 for a query option the service cannot use ([UNVERIFIED] ODL's wording)."""
    return FnoError(400, f"The query specified in the URI is not valid. {text}")


def no_property(name: str, type_name: str) -> FnoError:
    """400 for an unknown (or wrongly cased) property in a query option."""
    return bad_query(
        f"Could not find a property named '{name}' on type 'Microsoft.Dynamics.DataEntities."
        f"{type_name}'."
    )


def not_found(segment: str) -> FnoError:
    """404 for an unknown entity set or a key that matches no row ([UNVERIFIED] text)."""
    return FnoError(404, f"Resource not found for the segment '{segment}'.")
