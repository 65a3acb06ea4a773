"""FetchXML: the table a query reads, its paging attributes and cookies, its joined tables.

Pure code, no I/O.  The reader (`_reader.read_fetchxml`) sends each page's FetchXML as the
`fetchXml=` query option and follows the paging cookie the service returns.  Columns of a
`link-entity` come back as `alias.column`; `LinkedColumns` types them from the linked
table's metadata, exactly as a `read()` of that table would (a lookup `alias.x` with
`alias.x_name` and `alias.x_table`, a choice as labels, dates in UTC).
"""

from __future__ import annotations

import urllib.parse
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from ._exceptions import ConfigError, TransportError
from ._frames import FrameBuilder
from ._metadata import Table
from ._odata import encode_query
from ._urls import MAX_BATCH_GET_URL, MAX_GET_URL

__all__ = [
    "Link",
    "LinkedColumns",
    "check_fetchxml_length",
    "fetchxml_entity",
    "fetchxml_links",
    "fetchxml_with_page",
    "paging_cookie_from_annotation",
]

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


@dataclass(frozen=True)
class Link:
    """One `link-entity`: the name its columns carry, its table, the columns it returns
    (None: `all-attributes`)."""

    alias: str
    table: str
    columns: tuple[str, ...] | None


def fetchxml_links(xml: str) -> list[Link]:
    """Every `link-entity` of a FetchXML query, nested ones too, in document order.

    A link without `alias` is named `<table><n>`, n counting the links before it plus one
    ([UNVERIFIED] the service's generated alias; the sandbox names them so).
    """
    links: list[Link] = []

    def visit(element: ET.Element) -> None:
        for el in element.findall("link-entity"):
            name = el.get("name") or ""
            alias = el.get("alias") or f"{name}{len(links) + 1}"
            columns = None
            if el.find("all-attributes") is None:
                columns = tuple(a.get("name") or "" for a in el.findall("attribute"))
            links.append(Link(alias, name, columns))
            visit(el)

    entity = _parse_fetch(xml).find("entity")
    if entity is not None:
        visit(entity)
    return links


@dataclass
class LinkedColumns:
    """The `alias.column` values of a FetchXML result, typed by their own tables.

    `take()` moves them out of each page's rows (before the base table's builder sees
    them); `join()` builds one frame per link and puts its columns, named `alias.column`,
    next to the base table's.

    **Parameters:**

    * **links** - the query's links with each one's table metadata.
    * **dtypes** - per-column overrides named `alias.column` (the others are the base
      table's).
    * **formatted** - add `_label` columns, as `read(formatted=True)`.
    """

    links: list[tuple[Link, Table]]
    dtypes: Mapping[str, Any] = field(default_factory=dict)
    formatted: bool = False
    rows: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    def take(self, rows: list[dict[str, Any]]) -> None:
        """Move each row's linked properties (and their annotations) aside."""
        if not self.links:
            return
        for alias, _ in self._aliases():
            self.rows.setdefault(alias, [])
        for row in rows:
            moved: dict[str, dict[str, Any]] = {alias: {} for alias in self.rows}
            for key in [k for k in row if "." in k or "_x002e_" in k]:
                alias, _, rest = key.replace("_x002e_", ".", 1).partition(".")
                if alias in moved:
                    moved[alias][rest] = row.pop(key)
            for alias, values in moved.items():
                self.rows[alias].append(values)

    def _aliases(self) -> list[tuple[str, Table]]:
        return [(link.alias, table) for link, table in self.links]

    def join(self, frame: pd.DataFrame) -> pd.DataFrame:
        """`frame` with every link's columns added (`alias.column`), the etag kept last."""
        if not self.links:
            return frame
        parts = [frame]
        for link, table in self.links:
            parts.append(self._frame(link, table, self.rows.get(link.alias, [])))
        joined: pd.DataFrame = pd.concat(
            [p.set_axis(frame.index) if len(p) == len(frame) else p for p in parts], axis=1
        )
        if "_etag" in joined.columns:
            joined = joined[[c for c in joined.columns if c != "_etag"] + ["_etag"]]
        joined.attrs = frame.attrs
        return joined

    def _frame(self, link: Link, table: Table, rows: list[dict[str, Any]]) -> pd.DataFrame:
        names = link.columns
        if names is None:  # all-attributes: the columns the rows hold
            seen = dict.fromkeys(k.partition("@")[0] for row in rows for k in row)
            names = tuple(seen)
        attributes = [table.resolve_column(name) for name in names]
        prefix = link.alias + "."
        dtypes = {k[len(prefix) :]: v for k, v in self.dtypes.items() if k.startswith(prefix)}
        builder = FrameBuilder(
            table,
            select=[a.logical_name for a in attributes],
            formatted=self.formatted,
            dtypes=dtypes,
            etag=False,
        )
        wire = {a.logical_name: a.property_name for a in attributes}
        builder.add_page([_renamed(row, wire) for row in rows])
        part = builder.finish()
        if table.primary_id not in wire:  # the builder adds the key; the link did not ask
            part = part.drop(columns=[table.primary_id], errors="ignore")
        prefixed: pd.DataFrame = part.add_prefix(prefix)
        return prefixed


def _renamed(row: Mapping[str, Any], wire: Mapping[str, str]) -> dict[str, Any]:
    """A linked row's keys (`parentcustomerid@...`) as the table's own (`_..._value@...`)."""
    out: dict[str, Any] = {}
    for key, value in row.items():
        name, at, annotation = key.partition("@")
        out[wire.get(name, name) + at + annotation] = value
    return out


def check_fetchxml_length(base: str, xml: str, page_size: int) -> None:
    """A FetchXML goes in the GET's URL: refuse one the service cannot take, naming the
    limit (rather than an `httpx.InvalidURL` or a 414 after the first pages).  The session
    sends a GET over `MAX_GET_URL` inside `$batch`, where `MAX_BATCH_GET_URL` holds."""
    first = fetchxml_with_page(xml, page=1, count=page_size, paging_cookie=None)
    length = len(base) + 1 + len(encode_query({"fetchXml": first}))
    if length > MAX_BATCH_GET_URL - 2_000:  # room for the paging cookies of later pages
        raise ConfigError(
            f"This FetchXML is too long for a URL: {length:,} characters once encoded, and "
            f"the service takes at most {MAX_GET_URL:,} in a GET and {MAX_BATCH_GET_URL:,} in "
            "a GET inside $batch (less paging cookies).",
            field="xml",
            hint="Split it into several queries (e.g. a long 'in' list in chunks of a few "
            "hundred values), or read with conn.read(filter=...).",
        )
