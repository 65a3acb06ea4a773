"""The Web API's error: a status, a Dataverse code (`0x...`) and a message, as JSON."""

from __future__ import annotations

__all__ = ["ApiError", "no_property", "not_found", "syntax_error"]


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
