"""The Dataverse dialect: the rules the engines were written for, named in one place.

The Dataverse engines (`_catalog`, `_reader`, `_write`) carry these rules themselves;
this module names them so that code choosing between services (`dialect_for()`) sees
both dialects side by side.  Pure: no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .._odata import key_segment, literal

if TYPE_CHECKING:
    import httpx

    from .._exceptions import ODataError

__all__ = ["DATAVERSE", "DataverseDialect"]


@dataclass(frozen=True)
class DataverseDialect:
    """Dataverse Web API rules (reference/dataverse-protocol.md)."""

    name: str = "dataverse"
    title: str = "Dataverse"
    max_page_size: int = 5000
    has_change_tracking: bool = True
    has_companies: bool = False

    def literal(self, value: Any) -> str:
        """A `$filter` literal for `value` (`_odata.literal`)."""
        return literal(value)

    def key_segment(self, pairs: list[tuple[str, str]]) -> str:
        """A key segment from quoted `(name, literal)` pairs (`_odata.key_segment`)."""
        return key_segment(pairs)

    def error_from_response(self, response: httpx.Response) -> ODataError:
        """The Web API's error body as an `ODataError` (`_session`)."""
        from .._session import odata_error_from_response

        return odata_error_from_response(response)


DATAVERSE = DataverseDialect()
