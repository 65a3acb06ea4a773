"""Deterministic demo data for the sandbox's finance and operations environment.

Three Contoso-style companies (reference/finance-operations-protocol.md §8.1): ``usmf``
(half of the rows), ``usrt`` and ``demf``.  `generate(rows=..., seed=...)` yields each
entity's rows as wire values (enum member names, dates at ``T12:00:00Z``); the same
arguments always give the same rows.  `rows` is the number of customers across the
companies; vendors, products and sales orders scale with it (100,000 customers make
about 330,000 rows in all).
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import date, timedelta
from typing import Any

from ._fno_schema import EMPTY_DATE

__all__ = ["COMPANIES", "COMPANY_SHORT", "generate", "sequence_value"]

# (id, name, country, city, language, accounting currency, share of the rows)
COMPANIES: tuple[tuple[str, str, str, str, str, str, float], ...] = (
    ("usmf", "Contoso Entertainment System USA", "USA", "Seattle", "en-us", "USD", 0.5),
    ("usrt", "Contoso Retail USA", "USA", "New York", "en-us", "USD", 0.3),
    ("demf", "Contoso Entertainment System Germany", "DEU", "Frankfurt", "de", "EUR", 0.2),
)
COMPANY_SHORT = {"usmf": "US", "usrt": "RT", "demf": "DE"}

_CURRENCIES = (
    ("USD", "US Dollar", "$"),
    ("EUR", "Euro", "€"),
    ("GBP", "Pound sterling", "£"),
    ("CAD", "Canadian Dollar", "$"),
    ("JPY", "Japanese yen", "¥"),
    ("DKK", "Danish krone", "kr"),
    ("MXN", "Mexican peso", "$"),
)
_GROUPS = (
    ("10", "Wholesale customers"),
    ("20", "Major customers"),
    ("30", "Retail customers"),
    ("40", "Intercompany customers"),
    ("90", "Other customers"),
)
_WORDS = (
    "Adatum Alpine Blue Coho Contoso Fabrikam Fourth Litware Lucerne Margie Northwind "
    "Proseware Southridge Tailspin Trey Wide World Wingtip Woodgrove Humongous Graphic"
).split()
_SUFFIX = ("Inc.", "Corp.", "Ltd.", "Group", "Partners", "Supply", "Retail", "Systems")
_FIRST = "Ana Ben Chloe Dan Eva Finn Gita Hugo Ines Jon Kai Lena Max Nora Omar Pia".split()
_LAST = "Berg Costa Diaz Ek Fox Gray Holm Ito Jung Khan Lund Moss Nagy Ortiz Park Quinn".split()
_CITIES = {
    "USA": (("Seattle", "WA", "98101"), ("Chicago", "IL", "60601"), ("Austin", "TX", "73301")),
    "DEU": (("Berlin", "", "10115"), ("Hamburg", "", "20095"), ("Munich", "", "80331")),
}
_PRODUCTS = (
    ("Speaker", "ea", 250.0),
    ("Amplifier", "ea", 780.0),
    ("Cable", "m", 3.5),
    ("Headphones", "ea", 120.0),
    ("Receiver", "ea", 410.0),
    ("Subwoofer", "ea", 560.0),
    ("Installation", "hr", 95.0),
)


def sequence_value(company: str, prefix: str, number: int) -> str:
    """A number-sequence value: ``US-000042`` (customers), ``US-SO000042`` (orders)."""
    short = COMPANY_SHORT.get(company.lower(), company.upper()[:2])
    return f"{short}-{prefix}{number:06d}"


def _date(day: date) -> str:
    return f"{day.isoformat()}T12:00:00Z"


def _split(total: int) -> list[tuple[str, int]]:
    counts = [max(1, int(total * c[6])) for c in COMPANIES] if total else [0] * len(COMPANIES)
    counts[0] += max(0, total - sum(counts))
    return [(c[0], n) for c, n in zip(COMPANIES, counts, strict=True)]


def generate(*, rows: int, seed: int) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """(entity set, rows as {field: wire value}) for every seeded entity.

    **Parameters:**

    * **rows** - customers across all companies (vendors, products and orders scale).
    * **seed** - the random seed; the same pair always gives the same data.
    """
    rng = random.Random(seed)
    base = date(2024, 1, 1)
    modified = "2025-06-30T08:15:00Z"
    yield (
        "LegalEntities",
        [
            {
                "LegalEntityId": c[0],
                "Name": c[1],
                "PartyNumber": f"{i + 1:09d}",
                "AddressCountryRegionId": c[2],
                "AddressCity": c[3],
                "LanguageId": c[4],
                "AccountingCurrency": c[5],
            }
            for i, c in enumerate(COMPANIES)
        ],
    )
    yield (
        "Currencies",
        [
            {
                "CurrencyCode": code,
                "Name": name,
                "Symbol": symbol,
                "RoundingMethodPrices": "Ordinary",
                "RoundingRulePrices": 1.0 if code == "JPY" else 0.01,
                "GeneralRoundingRule": 1.0 if code == "JPY" else 0.01,
                "ReferenceCurrencyForTriangulation": "Yes" if code == "EUR" else "No",
                "DecimalsCount_MX": 0 if code == "JPY" else 2,
            }
            for code, name, symbol in _CURRENCIES
        ],
    )
    yield (
        "CustomerGroups",
        [
            {
                "dataAreaId": c[0],
                "CustomerGroupId": gid,
                "Description": text,
                "PaymentTermId": "Net30" if gid != "30" else "COD",
                "IsSalesTaxIncludedInPrice": "Yes" if gid == "30" else "No",
                "TaxGroupId": "RETAIL" if gid == "30" else "",
            }
            for c in COMPANIES
            for gid, text in _GROUPS
        ],
    )
    customers: list[dict[str, Any]] = []
    vendors: list[dict[str, Any]] = []
    products: list[dict[str, Any]] = []
    headers: list[dict[str, Any]] = []
    lines: list[dict[str, Any]] = []
    for company, count in _split(rows):
        country, currency = next((c[2], c[5]) for c in COMPANIES if c[0] == company)
        accounts = []
        for n in range(1, count + 1):
            person = rng.random() < 0.2
            city, state, zip_code = rng.choice(_CITIES[country])
            first, last = rng.choice(_FIRST), rng.choice(_LAST)
            org = "" if person else f"{rng.choice(_WORDS)} {rng.choice(_SUFFIX)}"
            account = sequence_value(company, "", n)
            accounts.append(account)
            customers.append(
                {
                    "dataAreaId": company,
                    "CustomerAccount": account,
                    "PartyType": "Person" if person else "Organization",
                    "OrganizationName": f"{first} {last}" if person else org,
                    "NameAlias": (last if person else org.split()[0]).upper()[:20],
                    "CustomerGroupId": "30" if person else rng.choice(("10", "20", "10", "90")),
                    "SalesCurrencyCode": currency,
                    "PaymentTerms": "COD" if person else rng.choice(("Net30", "Net45", "Net10")),
                    "InvoiceAccount": "",
                    "SalesTaxGroup": rng.choice(("CA", "WA", "NY", "")),
                    "CreditLimit": 0.0 if person else float(rng.randrange(0, 500) * 1000),
                    "CreditLimitIsMandatory": "No" if person else rng.choice(("Yes", "No")),
                    "AddressCity": city,
                    "AddressCountryRegionId": country,
                    "AddressState": state,
                    "AddressZipCode": zip_code,
                    "PersonFirstName": first if person else "",
                    "PersonLastName": last if person else "",
                    "PersonGender": rng.choice(("Male", "Female", "Unknown"))
                    if person
                    else "Unknown",
                    "PrimaryContactEmail": f"{first}.{last}{n}@example.com".lower(),
                    "PrimaryContactPhone": f"+1 555 {rng.randrange(1000000):07d}",
                    "ModifiedDateTime": modified,
                }
            )
        for n in range(1, max(2, count // 10) + 1):
            city, _, zip_code = rng.choice(_CITIES[country])
            vendors.append(
                {
                    "dataAreaId": company,
                    "VendorAccountNumber": sequence_value(company, "V", n),
                    "VendorOrganizationName": f"{rng.choice(_WORDS)} {rng.choice(_SUFFIX)}",
                    "VendorPartyType": "Organization",
                    "VendorGroupId": rng.choice(("10", "20", "30")),
                    "CurrencyCode": currency,
                    "PaymentTermsName": rng.choice(("Net30", "Net45")),
                    "SalesTaxGroupCode": "",
                    "AddressCity": city,
                    "AddressCountryRegionId": country,
                    "AddressZipCode": zip_code,
                    "PrimaryEmailAddress": f"orders{n}@vendor.example.com",
                    "PrimaryPhoneNumber": f"+1 555 {rng.randrange(1000000):07d}",
                    "OnHoldStatus": "All" if rng.random() < 0.05 else "No",
                    "ModifiedDateTime": modified,
                }
            )
        items = []
        for n in range(1, max(len(_PRODUCTS), count // 10) + 1):
            name, unit, price = _PRODUCTS[(n - 1) % len(_PRODUCTS)]
            item = f"A{n:05d}"
            items.append((item, unit, round(price * (0.8 + 0.4 * rng.random()), 2)))
            service = unit == "hr"
            products.append(
                {
                    "dataAreaId": company,
                    "ItemNumber": item,
                    "ProductNumber": item,
                    "ProductName": f"{name} {n}",
                    "SearchName": f"{name.upper()}{n}"[:20],
                    "ProductType": "Service" if service else "Item",
                    "ItemModelGroupId": "FIFO",
                    "ProductGroupId": "Services" if service else "Audio",
                    "InventoryUnitSymbol": unit,
                    "SalesUnitSymbol": unit,
                    "PurchaseUnitSymbol": unit,
                    "SalesPrice": items[-1][2],
                    "SalesPriceQuantity": 1.0,
                    "PurchasePrice": round(items[-1][2] * 0.6, 2),
                    "NetProductWeight": 0.0 if service else round(rng.uniform(0.1, 30), 2),
                    "SellStartDate": EMPTY_DATE
                    if rng.random() < 0.2
                    else _date(base + timedelta(days=rng.randrange(400))),
                    "ModifiedDateTime": modified,
                }
            )
        lot = 0
        for n in range(1, max(1, count // 2) + 1):
            order = sequence_value(company, "SO", n)
            customer = rng.choice(accounts)
            status = rng.choice(("Backorder", "Backorder", "Delivered", "Invoiced", "Canceled"))
            ship = base + timedelta(days=rng.randrange(540))
            headers.append(
                {
                    "dataAreaId": company,
                    "SalesOrderNumber": order,
                    "OrderingCustomerAccountNumber": customer,
                    "InvoiceCustomerAccountNumber": customer,
                    "SalesOrderName": "",
                    "SalesOrderStatus": status,
                    "CurrencyCode": currency,
                    "RequestedShippingDate": _date(ship),
                    "RequestedReceiptDate": _date(ship + timedelta(days=3)),
                    "CustomerRequisitionNumber": "",
                    "CustomersOrderReference": f"PO-{rng.randrange(100000):05d}",
                    "DefaultShippingSiteId": "1",
                    "DefaultShippingWarehouseId": rng.choice(("11", "12", "13")),
                    "DeliveryModeCode": rng.choice(("10", "20", "30")),
                    "PaymentTermsName": "Net30",
                    "DeliveryAddressCountryRegionId": country,
                    "ModifiedDateTime": modified,
                }
            )
            for line in range(1, rng.randint(1, 4) + 1):
                lot += 1
                item, unit, price = rng.choice(items)
                qty = float(rng.randint(1, 20))
                lines.append(
                    {
                        "dataAreaId": company,
                        "InventoryLotId": sequence_value(company, "LOT", lot),
                        "SalesOrderNumber": order,
                        "LineNumber": float(line),
                        "ItemNumber": item,
                        "LineDescription": "",
                        "OrderedSalesQuantity": qty,
                        "SalesUnitSymbol": unit,
                        "SalesPrice": price,
                        "LineDiscountAmount": 0.0,
                        "LineAmount": round(qty * price, 2),
                        "SalesOrderLineStatus": status,
                        "RequestedShippingDate": _date(ship),
                        "CurrencyCode": currency,
                        "ShippingSiteId": "1",
                        "ShippingWarehouseId": "11",
                    }
                )
    yield "CustomersV3", customers
    yield "VendorsV2", vendors
    yield "ReleasedProductsV2", products
    yield "SalesOrderHeadersV2", headers
    yield "SalesOrderLines", lines
