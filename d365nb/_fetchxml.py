"""FetchXML: the table a query reads, and its paging attributes and cookies.

Pure code, no I/O.  The reader (`_reader.read_fetchxml`) sends each page's FetchXML as the
`fetchXml=` query option and follows the paging cookie the service returns.
"""

from __future__ import annotations

import urllib.parse
import xml.etree.ElementTree as ET

from ._exceptions import ConfigError, TransportError

__all__ = ["fetchxml_entity", "fetchxml_with_page", "paging_cookie_from_annotation"]

_FETCH_PAGING_ATTRIBUTES = ("page", "count", "paging-cookie")


def _parse_fetch(xml: str) -> ET.Element:
    """The `<fetch>` element of a FetchXML document, or `ConfigError` saying what is wrong."""
    try:
        # The FetchXML is the user's own text (no external entities are resolved by expat).
        root = ET.fromstring(xml)
    except ET.ParseError as exc:
        raise ConfigError(
            f"The FetchXML is not well-formed XML: {exc}.",
            field="fetchxml",
            hint="Check quotes and closing tags; test it in the FetchXML Builder first.",
        ) from exc
    if root.tag != "fetch":
        raise ConfigError(
            f"The FetchXML root element is <{root.tag}>, not <fetch>.",
            field="fetchxml",
            hint="Start the query with <fetch>.",
        )
    return root


def fetchxml_entity(xml: str) -> tuple[str, bool]:
    """The table a FetchXML query reads (`<entity name=...>`) and whether it sets `top`.

    **Parameters:**

    * **xml** - a FetchXML document whose root element is `<fetch>`.
    """
    root = _parse_fetch(xml)
    entity = root.find("entity")
    if entity is None or not entity.get("name"):
        raise ConfigError(
            "The FetchXML needs an <entity name='...'> inside <fetch>.",
            field="fetchxml",
            hint="Start from <fetch><entity name='account'>...</entity></fetch>.",
        )
    return str(entity.get("name")), root.get("top") is not None


def fetchxml_with_page(xml: str, *, page: int, count: int, paging_cookie: str | None) -> str:
    """Return `xml` with `page`, `count` and `paging-cookie` set on its `<fetch>` element.

    The cookie is the decoded `<cookie page="1">...</cookie>` text from
    `paging_cookie_from_annotation()`; ElementTree escapes it as an attribute value.

    **Parameters:**

    * **xml** - a FetchXML document whose root element is `<fetch>`, without `top`.
    * **page** - the 1-based page number to ask for.
    * **count** - rows per page (1 to 5,000).
    * **paging_cookie** - the previous page's cookie, or `None` (first page or simple paging).
    """
    root = _parse_fetch(xml)
    if root.get("top") is not None:
        raise ConfigError(
            "A FetchXML query with top cannot be paged.",
            field="fetchxml",
            hint="Remove top= from <fetch> (d365nb pages through every row), or use count.",
        )
    if not (isinstance(page, int) and page >= 1 and isinstance(count, int) and count >= 1):
        raise ConfigError(
            f"page and count must be positive whole numbers, got {page!r} and {count!r}.",
            field="fetchxml",
        )
    if count > 5000:
        raise ConfigError(
            f"count={count} is above the service's 5,000 rows per page.",
            field="fetchxml",
            hint="Use count=5000 or less.",
        )
    root.set("page", str(page))
    root.set("count", str(count))
    if paging_cookie is None:
        root.attrib.pop("paging-cookie", None)
    else:
        root.set("paging-cookie", paging_cookie)
    return ET.tostring(root, encoding="unicode")


def paging_cookie_from_annotation(value: str) -> str:
    """Decode the `@Microsoft.Dynamics.CRM.fetchxmlpagingcookie` annotation into a cookie.

    The annotation is `<cookie pagenumber="2" pagingcookie="%253ccookie..." ... />`; its
    `pagingcookie` attribute is URL-encoded twice.  The result is the plain
    `<cookie page="1">...</cookie>` text that `fetchxml_with_page()` expects.

    **Parameters:**

    * **value** - the annotation's value as found in the response body.
    """
    hint = "Read the query with OData paging instead of FetchXML, or report the response."
    try:
        element = ET.fromstring(value)
    except ET.ParseError as exc:
        raise TransportError(
            f"The service sent a paging cookie that is not XML: {exc}.", hint=hint
        ) from exc
    encoded = element.get("pagingcookie")
    if encoded is None:
        raise TransportError("The service sent a paging cookie without pagingcookie.", hint=hint)
    return urllib.parse.unquote(urllib.parse.unquote(encoded))
