"""The finance and operations dialect: F&O's rules on the wire, pure (no I/O).

reference/finance-operations-protocol.md, rule by rule:

* companies (§3.2): reads see only the caller's default company unless
  ``cross-company=true``; a ``dataAreaId`` filter without it silently returns nothing,
  so `company_query()` always pairs the two, and `rewrite_filter()` reports a filter
  that names ``dataAreaId`` so the reader can add ``cross-company=true``;
* literals (§3.3): enums compare with qualified literals
  (``Microsoft.Dynamics.DataEntities.NoYes'Yes'``), only with ``eq``/``ne``;
  "contains" is a ``*`` wildcard inside ``eq`` (§3.1), so `contains()`, `startswith()`
  and `endswith()` are rewritten to it;
* keys (§4.1): every key field named, ``dataAreaId`` included
  (``CustomersV3(dataAreaId='usmf',CustomerAccount='US-001')``);
* dates (§3.3): ``1900-01-01T12:00:00Z`` (empty date), ``1900-01-01T00:00:00Z``
  (empty utcdatetime, [UNVERIFIED]) and ``2154-12-31T23:59:59Z`` ("never") are
  sentinels, read as `NaT`;
* errors (§4.7): ``error.code`` is empty, ``error.message`` generic; the real text is
  ``innererror.message`` ("Write failed for table row of type '…'. Infolog: …").  A 500
  on a write is a business rule, not a transient fault: shown as one sentence, never
  retried;
* paging (§3.4): server-driven, at most 10,000 rows a page, `@odata.nextLink` opaque.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from .._exceptions import ConfigError, ODataError
from .._odata import literal

if TYPE_CHECKING:
    import httpx

    from .._metadata import Attribute, Table

__all__ = [
    "COMPANY",
    "DATE_SENTINELS",
    "ENUM_TYPE",
    "FNO",
    "FnoDialect",
    "NAMESPACE",
    "business_rule_sentence",
    "fno_error_from_response",
]

NAMESPACE = "Microsoft.Dynamics.DataEntities"
COMPANY = "dataAreaId"
#: `Attribute.attribute_type` of F&O enum fields (`Attribute.format`: the enum's name).
ENUM_TYPE = "Enum"
#: Wire values that mean "no date" (read as NaT).
DATE_SENTINELS = frozenset(
    {"1900-01-01T12:00:00Z", "1900-01-01T00:00:00Z", "2154-12-31T23:59:59Z", "1900-01-01"}
)
_FUNCTION = re.compile(
    r"\b(contains|startswith|endswith)\(\s*([A-Za-z_]\w*)\s*,\s*'((?:[^']|'')*)'\s*\)"
)
_COMPANY_REF = re.compile(r"\bdataAreaId\b")
_INFOLOG = re.compile(r"^Write failed for table row of type '[^']*'\.\s*Infolog:\s*", re.S)


def business_rule_sentence(message: str) -> str:
    """The infolog of an `AxODataWriteException` as one sentence a user can act on.

    Drops the "Write failed for table row of type '…'. Infolog:" prefix, the
    ``Warning: validateField failed on field …`` echo lines and the ``Error:`` labels.
    """
    text = _INFOLOG.sub("", message.strip())
    lines = [part.strip() for part in re.split(r";\s*|\n+", text) if part.strip()]
    kept = [
        re.sub(r"^(Error|Warning|Info):\s*", "", line)
        for line in lines
        if not re.match(r"^Warning:\s*validate\w* failed", line, re.I)
    ]
    sentence = " ".join(kept or lines or [text]).strip()
    return sentence or message


def fno_error_from_response(response: httpx.Response) -> ODataError:
    """F&O's error body as an `ODataError`: `innererror.message` first (§4.7)."""
    status = response.status_code
    message = inner_type = None
    try:
        body = response.json()
        error = body.get("error", {}) if isinstance(body, dict) else {}
        inner = error.get("innererror") if isinstance(error, dict) else None
        if isinstance(inner, dict) and inner.get("message"):
            message = business_rule_sentence(str(inner["message"]))
            inner_type = str(inner.get("type") or "")
        else:
            message = error.get("message")
    except ValueError:
        message = response.text[:300] or response.reason_phrase
    hint = {
        401: "The environment refused the token: register the app's client id in F&O under "
        "System administration > Setup > Microsoft Entra ID applications (mapped to a user).",
        403: "The F&O user mapped to you lacks a security role for this entity.",
        404: "Check the entity set's spelling (F&O names are case-sensitive, e.g. CustomersV3) "
        "and every key field, dataAreaId included.",
        412: "The row changed on the service since it was read: read it again before writing.",
        429: "F&O throttling (priority-based or user limits): wait and retry, or lower parallel=.",
    }.get(status)
    if status == 500 and inner_type and "WriteException" in inner_type:
        hint = "A business rule of the service refused the row (not retried): fix the row."
    return ODataError(
        message or response.reason_phrase or "error",
        status=status,
        code=None,
        request_id=response.headers.get("x-ms-request-id") or response.headers.get("request-id"),
        hint=hint,
    )


@dataclass(frozen=True)
class FnoDialect:
    """Finance and operations `/data/` rules."""

    name: str = "fno"
    title: str = "finance and operations"
    max_page_size: int = 10_000
    has_change_tracking: bool = False
    has_companies: bool = True

    # -- literals -------------------------------------------------------------------------

    def literal(self, value: Any, attribute: Attribute | None = None) -> str:
        """A `$filter`/key literal for `value`, as F&O reads it for `attribute`.

        Enum fields take `Microsoft.Dynamics.DataEntities.<Enum>'<Member>'`; datetimes
        are ISO-8601 with `Z`; dates mean noon UTC (how X++ dates travel).
        """
        if attribute is not None and attribute.attribute_type == ENUM_TYPE:
            member = str(value)
            if isinstance(value, int) and not isinstance(value, bool):
                member = dict(attribute.options).get(value, member)
            known = list(attribute.options.values())
            if known and member not in known:
                raise ConfigError(
                    f"{member!r} is not a member of the enum {attribute.format} "
                    f"of {attribute.logical_name}.",
                    field="filter",
                    hint=f"Use one of: {', '.join(known)}.",
                )
            return f"{NAMESPACE}.{attribute.format}'{member.replace(chr(39), chr(39) * 2)}'"
        if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
            return f"{value.isoformat()}T12:00:00Z"
        return literal(value)

    def key_segment(self, table: Table, values: Mapping[str, Any]) -> str:
        """`(dataAreaId='usmf',CustomerAccount='US-001')`: every key field named (§4.1)."""
        keys = self.key_fields(table)
        missing = [k for k in keys if values.get(k) is None or values.get(k) == ""]
        if missing:
            raise ConfigError(
                f"{table.entity_set_name} rows are found by {', '.join(keys)}; "
                f"{', '.join(missing)} is missing.",
                field="key",
                hint="F&O needs every key field, dataAreaId included.",
            )
        parts = []
        for name in keys:
            text = self.literal(values[name], table.attributes.get(name))
            parts.append(f"{name}={quote(text, safe=chr(39) + '=,.-_~*:@')}")
        return "(" + ",".join(parts) + ")"

    def key_fields(self, table: Table) -> tuple[str, ...]:
        """The entity's key fields, in CSDL order (`dataAreaId` first on company entities)."""
        for key in table.keys:
            if key.name == "key":
                return key.key_attributes
        return (table.primary_id,)

    def is_company_entity(self, table: Table) -> bool:
        """True for company-specific entities (they carry `dataAreaId`)."""
        return COMPANY in table.attributes

    # -- filters and companies ------------------------------------------------------------

    def rewrite_filter(self, expression: str | None, table: Table) -> str | None:
        """A `$filter` in F&O's dialect: wildcards for contains/startswith/endswith, and
        enum members compared as qualified literals (`PartyType eq 'Person'` becomes
        `PartyType eq Microsoft.Dynamics.DataEntities.DirPartyBaseType'Person'`)."""
        if not expression:
            return expression

        def wildcard(match: re.Match[str]) -> str:
            function, name, text = match.groups()
            pattern = {"contains": "*{}*", "startswith": "{}*", "endswith": "*{}"}[function]
            return f"{name} eq '{pattern.format(text)}'"

        out = _FUNCTION.sub(wildcard, expression)
        for attribute in table.attributes.values():
            if attribute.attribute_type != ENUM_TYPE:
                continue
            qualified = f"{NAMESPACE}.{attribute.format}"
            pattern = rf"\b({re.escape(attribute.logical_name)})\s+(eq|ne)\s+'((?:[^']|'')*)'"
            out = re.sub(pattern, rf"\1 \2 {qualified}'\3'", out)
        return out

    def names_company(self, expression: str | None) -> bool:
        """True when a filter compares `dataAreaId` (it needs `cross-company=true`)."""
        return bool(expression and _COMPANY_REF.search(expression))

    def company_query(
        self,
        table: Table,
        *,
        company: str | None,
        cross_company: bool,
        filter: str | None,  # noqa: A002 - the OData name
    ) -> tuple[dict[str, str], str | None]:
        """The custom query options and the filter for a company scope (§3.2).

        `company="usrt"` becomes `cross-company=true` + `dataAreaId eq 'usrt'` (a filter
        without the switch returns nothing); a filter naming `dataAreaId` adds the switch.
        Shared entities (no `dataAreaId`) refuse `company=`.
        """
        params: dict[str, str] = {}
        if company is not None:
            if not self.is_company_entity(table):
                raise ConfigError(
                    f"{table.entity_set_name} is shared between companies (no dataAreaId), "
                    f"so company={company!r} cannot apply.",
                    field="company",
                    hint="Leave company out for shared entities such as Currencies.",
                )
            condition = f"{COMPANY} eq {literal(company.lower())}"
            filter = f"({filter}) and {condition}" if filter else condition  # noqa: A001
            cross_company = True
        if cross_company or self.names_company(filter):
            params["cross-company"] = "true"
        return params, filter


FNO = FnoDialect()
