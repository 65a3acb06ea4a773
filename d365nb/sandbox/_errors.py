"""The Web API's error: a status, a Dataverse code (`0x...`) and a message, as JSON."""

from __future__ import annotations

__all__ = [
    "MAX_BATCH_URL",
    "MAX_URL",
    "ApiError",
    "no_property",
    "not_found",
    "syntax_error",
    "too_large",
    "url_too_long",
]

#: The longest URL the Web API reads, and the longest of a GET inside `$batch`.
#: [MS] WA/query/overview ("URL length limitations").
MAX_URL = 32_768
MAX_BATCH_URL = 65_536


class ApiError(Exception):
    """Raised anywhere in the sandbox Web API; answered as `{"error":{"code","message"}}`."""

    def __init__(
        self, status: int, code: str, message: str, *, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}

    def body(self) -> dict[str, dict[str, str]]:
        """The JSON error document."""
        return {"error": {"code": self.code, "message": self.message}}


def not_found(logical: str, key: str) -> ApiError:
    """404 for a missing row (`0x80040217`)."""
    return ApiError(404, "0x80040217", f"Entity '{logical}' With Id = {key} Does Not Exist")


def no_property(name: str, logical: str) -> ApiError:
    """400 for an unknown property in a query option."""
    return ApiError(
        400,
        "0x0",
        f"Could not find a property named '{name}' on type 'Microsoft.Dynamics.CRM.{logical}'.",
    )


def syntax_error(message: str) -> ApiError:
    """400 for a malformed query option (`0x80060888`)."""
    return ApiError(400, "0x80060888", message)


def url_too_long(length: int, limit: int = MAX_URL) -> ApiError:
    """414 for a URL over the documented limit.

    [UNVERIFIED] the status and code: the limit is documented, the service's answer past it
    is not; the sandbox answers 414 with the Web API's JSON error shape and an empty code.
    """
    batch = (
        ""
        if limit > MAX_URL
        else (" Send a long query as a GET inside $batch (up to 64 KB) or as FetchXML in $batch.")
    )
    return ApiError(
        414,
        "",
        f"The request URL is {length:,} characters long; the limit is {limit:,}.{batch}",
    )


def too_large(size: int, limit: int) -> ApiError:
    """413 for a request body over the sandbox's `max_request_bytes`.

    [UNVERIFIED] the code and message: 413 is the documented status family ("payload too
    large"); the service's body for it is not documented.
    """
    return ApiError(
        413,
        "",
        f"The request body is {size:,} bytes; the limit is {limit:,}. Send fewer rows per "
        "request (a smaller $batch, or CreateMultiple in chunks).",
    )
