"""The sandbox's finance and operations data entities, enums and keys, as data.

reference/finance-operations-protocol.md §8.2 lists the entities and their columns; the
ones it marks [UNVERIFIED] are its best guesses, kept here.  Every property is non-null,
as on F&O: a blank string is ``""``, a blank number ``0``, a blank date the
`EMPTY_DATE` sentinel and a blank enum its first member.  Enum values travel as member
names; SQLite stores their integer values (so `$orderby` sorts by value, as SQL does).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "DATA_PROJECTS",
    "EMPTY_DATE",
    "EMPTY_DATETIME",
    "ENTITIES",
    "ENUMS",
    "MAX_DATE",
    "NAMESPACE",
    "DataProject",
    "Entity",
    "EnumType",
    "Nav",
    "Prop",
    "Relation",
    "entity_by_set",
]

NAMESPACE = "Microsoft.Dynamics.DataEntities"
# X++ `date` fields travel at noon UTC; the empty date is 1900-01-01 (§3.3).
EMPTY_DATE = "1900-01-01T12:00:00Z"
# [UNVERIFIED] the empty utcdatetime, best guess from §3.3.
EMPTY_DATETIME = "1900-01-01T00:00:00Z"
MAX_DATE = "2154-12-31T23:59:59Z"


@dataclass(frozen=True)
class EnumType:
    """An X++ enum exposed as an OData `EnumType` (members in value order)."""

    name: str
    label: str
    members: tuple[tuple[str, int], ...]

    def value(self, member: str) -> int | None:
        """The integer value of `member` (exact spelling), or None."""
        for name, value in self.members:
            if name == member:
                return value
        return None

    def member(self, value: int) -> str:
        """The member name of `value` (the first member for unknown values)."""
        for name, number in self.members:
            if number == value:
                return name
        return self.members[0][0]


@dataclass(frozen=True)
class Prop:
    """One entity field.  `kind`: String, Int32, Int64, Decimal, Date, DateTime or Enum."""

    name: str
    kind: str = "String"
    label: str = ""
    enum: str | None = None
    max_length: int | None = None
    mandatory: bool = False
    read_only: bool = False  # set by the service (ModifiedDateTime, computed amounts)
    default: Any = None  # a wire value; None: the blank of the kind

    @property
    def edm(self) -> str:
        """The CSDL type name."""
        if self.kind == "Enum":
            return f"{NAMESPACE}.{self.enum}"
        if self.kind in ("Date", "DateTime"):
            return "Edm.DateTimeOffset"
        return f"Edm.{self.kind}"

    @property
    def data_type(self) -> str:
        """The `DataType` that `/metadata/PublicEntities` shows (Date vs DateTime differ)."""
        return {"Int32": "Int", "Int64": "Int64", "Decimal": "Real"}.get(self.kind, self.kind)

    @property
    def blank(self) -> Any:
        """The wire value of an unset field."""
        if self.default is not None:
            return self.default
        if self.kind == "Enum":
            assert self.enum is not None
            return ENUMS[self.enum].members[0][0]
        return {
            "String": "",
            "Int32": 0,
            "Int64": 0,
            "Decimal": 0.0,
            "Date": EMPTY_DATE,
            "DateTime": EMPTY_DATETIME,
        }[self.kind]


@dataclass(frozen=True)
class Relation:
    """A foreign key the service validates on write (same company for company entities)."""

    field: str
    target: str  # entity set
    target_field: str
    label: str  # the related table's label in the infolog message


@dataclass(frozen=True)
class Nav:
    """A navigation property (first-level `$expand` only, §3.5)."""

    name: str
    target: str  # entity set
    pairs: tuple[tuple[str, str], ...]  # (this field, target field)
    collection: bool


@dataclass(frozen=True)
class Entity:
    """A public data entity: its names, key, fields and write rules."""

    name: str  # public entity name (singular): the EntityType
    entity_set: str  # public collection name: the URL segment
    aot: str  # AOT name, used in "Write failed for table row of type '...'"
    label: str  # DMF entity name, also the package file name
    table: str  # "Customers (CustTable)": how the infolog names the table
    keys: tuple[str, ...]
    props: tuple[Prop, ...]
    company: bool = True  # has dataAreaId
    number_sequence: tuple[str, str] | None = None  # (key field, prefix)
    relations: tuple[Relation, ...] = ()
    navs: tuple[Nav, ...] = ()
    read_only: bool = False

    def prop(self, name: str) -> Prop | None:
        """The property spelled exactly `name` (names are case-sensitive), or None."""
        return _PROPS[self.entity_set].get(name)


_COMPANY = Prop("dataAreaId", label="Company", max_length=4, mandatory=True)
_MODIFIED = Prop("ModifiedDateTime", "DateTime", "Modified date and time", read_only=True)

ENUMS: dict[str, EnumType] = {
    e.name: e
    for e in (
        EnumType("NoYes", "No/Yes", (("No", 0), ("Yes", 1))),
        EnumType("Gender", "Gender", (("Unknown", 0), ("Male", 1), ("Female", 2))),
        # [UNVERIFIED] the party-type enum's name and values (§8.2: Organization/Person).
        EnumType("DirPartyBaseType", "Party type", (("Organization", 1), ("Person", 2))),
        # [UNVERIFIED] members beyond No/All, from AX's CustVendorBlocked.
        EnumType(
            "CustVendorBlocked",
            "Hold",
            (("No", 0), ("Invoice", 1), ("All", 2), ("Payment", 3), ("Never", 5)),
        ),
        EnumType("EcoResProductType", "Product type", (("Item", 1), ("Service", 2))),
        EnumType(
            "SalesStatus",
            "Sales status",
            (("None", 0), ("Backorder", 1), ("Delivered", 2), ("Invoiced", 3), ("Canceled", 4)),
        ),
        # [UNVERIFIED] the rounding enum's name; "Ordinary" is seen in captures.
        EnumType(
            "RoundOffType", "Rounding form", (("Ordinary", 0), ("RoundDown", 1), ("RoundUp", 2))
        ),
        EnumType("DMFOperationType", "Operation type", (("Import", 0), ("Export", 1))),
    )
}

ENTITIES: tuple[Entity, ...] = (
    Entity(
        name="LegalEntity",
        entity_set="LegalEntities",
        aot="OMLegalEntity",
        label="Legal entities",
        table="Legal entities (CompanyInfo)",
        keys=("LegalEntityId",),
        company=False,
        props=(
            Prop("LegalEntityId", label="Company", max_length=4, mandatory=True),
            Prop("Name", label="Name", max_length=100, mandatory=True),
            Prop("PartyNumber", label="Party number", max_length=40),
            Prop("AddressCountryRegionId", label="Country/region", max_length=10),
            Prop("AddressCity", label="City", max_length=60),
            Prop("LanguageId", label="Language", max_length=7),
            Prop("AccountingCurrency", label="Accounting currency", max_length=3),
        ),
    ),
    Entity(
        name="Currency",
        entity_set="Currencies",
        aot="CurrencyEntity",
        label="Currencies",
        table="Currency (Currency)",
        keys=("CurrencyCode",),
        company=False,
        props=(
            Prop("CurrencyCode", label="Currency", max_length=3, mandatory=True),
            Prop("Name", label="Name", max_length=60),
            Prop("Symbol", label="Symbol", max_length=5),
            Prop("RoundingMethodPrices", "Enum", "Rounding method prices", enum="RoundOffType"),
            Prop("RoundingRulePrices", "Decimal", "Rounding rule prices", default=0.01),
            Prop("GeneralRoundingRule", "Decimal", "General rounding rule", default=0.01),
            Prop(
                "ReferenceCurrencyForTriangulation",
                "Enum",
                "Reference currency for triangulation",
                enum="NoYes",
            ),
            Prop("DecimalsCount_MX", "Int32", "Decimals"),
        ),
    ),
    Entity(
        name="CustomerGroup",
        entity_set="CustomerGroups",
        aot="CustCustomerGroupEntity",
        label="Customer groups",
        table="Customer groups (CustGroup)",
        keys=("dataAreaId", "CustomerGroupId"),
        props=(
            _COMPANY,
            Prop("CustomerGroupId", label="Customer group", max_length=10, mandatory=True),
            Prop("Description", label="Description", max_length=60),
            Prop("PaymentTermId", label="Terms of payment", max_length=10),
            Prop("IsSalesTaxIncludedInPrice", "Enum", "Prices include sales tax", enum="NoYes"),
            Prop("TaxGroupId", label="Sales tax group", max_length=10),
        ),
    ),
    Entity(
        name="CustomerV3",
        entity_set="CustomersV3",
        aot="CustCustomerV3Entity",
        label="Customers V3",
        table="Customers (CustTable)",
        keys=("dataAreaId", "CustomerAccount"),
        number_sequence=("CustomerAccount", ""),
        props=(
            _COMPANY,
            Prop("CustomerAccount", label="Customer account", max_length=20, mandatory=True),
            Prop("PartyType", "Enum", "Party type", enum="DirPartyBaseType"),
            Prop("OrganizationName", label="Organization name", max_length=100),
            Prop("NameAlias", label="Search name", max_length=20),
            Prop("CustomerGroupId", label="Customer group", max_length=10, mandatory=True),
            Prop("SalesCurrencyCode", label="Currency", max_length=3, mandatory=True),
            Prop("PaymentTerms", label="Terms of payment", max_length=10),
            Prop("InvoiceAccount", label="Invoice account", max_length=20),
            Prop("SalesTaxGroup", label="Sales tax group", max_length=10),
            Prop("CreditLimit", "Decimal", "Credit limit"),
            Prop("CreditLimitIsMandatory", "Enum", "Mandatory credit limit", enum="NoYes"),
            Prop("AddressCity", label="City", max_length=60),
            Prop("AddressCountryRegionId", label="Country/region", max_length=10),
            Prop("AddressState", label="State", max_length=10),
            Prop("AddressZipCode", label="ZIP/postal code", max_length=10),
            Prop("PersonFirstName", label="First name", max_length=25),
            Prop("PersonLastName", label="Last name", max_length=25),
            Prop("PersonGender", "Enum", "Gender", enum="Gender"),
            Prop("PrimaryContactEmail", label="Email", max_length=255),
            Prop("PrimaryContactPhone", label="Telephone", max_length=255),
            _MODIFIED,
        ),
        relations=(
            Relation("CustomerGroupId", "CustomerGroups", "CustomerGroupId", "Customer groups"),
            Relation("SalesCurrencyCode", "Currencies", "CurrencyCode", "Currency"),
        ),
    ),
    Entity(
        name="VendorV2",
        entity_set="VendorsV2",
        aot="VendVendorV2Entity",
        label="Vendors V2",
        table="Vendors (VendTable)",
        keys=("dataAreaId", "VendorAccountNumber"),
        number_sequence=("VendorAccountNumber", "V"),
        props=(
            _COMPANY,
            Prop("VendorAccountNumber", label="Vendor account", max_length=20, mandatory=True),
            Prop("VendorOrganizationName", label="Vendor name", max_length=100),
            Prop("VendorPartyType", "Enum", "Party type", enum="DirPartyBaseType"),
            Prop("VendorGroupId", label="Group", max_length=10, mandatory=True),
            Prop("CurrencyCode", label="Currency", max_length=3, mandatory=True),
            Prop("PaymentTermsName", label="Terms of payment", max_length=10),
            Prop("SalesTaxGroupCode", label="Sales tax group", max_length=10),
            Prop("AddressCity", label="City", max_length=60),
            Prop("AddressCountryRegionId", label="Country/region", max_length=10),
            Prop("AddressZipCode", label="ZIP/postal code", max_length=10),
            Prop("PrimaryEmailAddress", label="Email", max_length=255),
            Prop("PrimaryPhoneNumber", label="Telephone", max_length=255),
            Prop("OnHoldStatus", "Enum", "Hold", enum="CustVendorBlocked"),
            _MODIFIED,
        ),
        relations=(Relation("CurrencyCode", "Currencies", "CurrencyCode", "Currency"),),
    ),
    Entity(
        name="ReleasedProductV2",
        entity_set="ReleasedProductsV2",
        aot="EcoResReleasedProductV2Entity",
        label="Released products V2",
        table="Items (InventTable)",
        keys=("dataAreaId", "ItemNumber"),
        props=(
            _COMPANY,
            Prop("ItemNumber", label="Item number", max_length=20, mandatory=True),
            Prop("ProductNumber", label="Product number", max_length=20),
            Prop("ProductName", label="Product name", max_length=60),
            Prop("SearchName", label="Search name", max_length=20),
            Prop("ProductType", "Enum", "Product type", enum="EcoResProductType"),
            Prop("ItemModelGroupId", label="Item model group", max_length=10),
            Prop("ProductGroupId", label="Item group", max_length=10),
            Prop("InventoryUnitSymbol", label="Inventory unit", max_length=10),
            Prop("SalesUnitSymbol", label="Sales unit", max_length=10),
            Prop("PurchaseUnitSymbol", label="Purchase unit", max_length=10),
            Prop("SalesPrice", "Decimal", "Sales price"),
            Prop("SalesPriceQuantity", "Decimal", "Price quantity", default=1.0),
            Prop("PurchasePrice", "Decimal", "Purchase price"),
            Prop("NetProductWeight", "Decimal", "Net weight"),
            Prop("SellStartDate", "Date", "Sales start date"),
            _MODIFIED,
        ),
    ),
    Entity(
        name="SalesOrderHeaderV2",
        entity_set="SalesOrderHeadersV2",
        aot="SalesOrderHeaderV2Entity",
        label="Sales order headers V2",
        table="Sales orders (SalesTable)",
        keys=("dataAreaId", "SalesOrderNumber"),
        number_sequence=("SalesOrderNumber", "SO"),
        props=(
            _COMPANY,
            Prop("SalesOrderNumber", label="Sales order", max_length=20, mandatory=True),
            Prop(
                "OrderingCustomerAccountNumber",
                label="Customer account",
                max_length=20,
                mandatory=True,
            ),
            Prop("InvoiceCustomerAccountNumber", label="Invoice account", max_length=20),
            Prop("SalesOrderName", label="Name", max_length=100),
            Prop("SalesOrderStatus", "Enum", "Status", enum="SalesStatus", default="Backorder"),
            Prop("CurrencyCode", label="Currency", max_length=3, mandatory=True),
            Prop("RequestedShippingDate", "Date", "Requested ship date"),
            Prop("RequestedReceiptDate", "Date", "Requested receipt date"),
            Prop("CustomerRequisitionNumber", label="Customer requisition", max_length=20),
            Prop("CustomersOrderReference", label="Customer reference", max_length=60),
            Prop("DefaultShippingSiteId", label="Site", max_length=10),
            Prop("DefaultShippingWarehouseId", label="Warehouse", max_length=10),
            Prop("DeliveryModeCode", label="Mode of delivery", max_length=10),
            Prop("PaymentTermsName", label="Terms of payment", max_length=10),
            Prop("DeliveryAddressCountryRegionId", label="Country/region", max_length=10),
            _MODIFIED,
        ),
        relations=(
            Relation(
                "OrderingCustomerAccountNumber", "CustomersV3", "CustomerAccount", "Customers"
            ),
            Relation("CurrencyCode", "Currencies", "CurrencyCode", "Currency"),
        ),
        navs=(
            Nav(
                "SalesOrderLines",
                "SalesOrderLines",
                (("dataAreaId", "dataAreaId"), ("SalesOrderNumber", "SalesOrderNumber")),
                collection=True,
            ),
        ),
    ),
    Entity(
        name="SalesOrderLine",
        entity_set="SalesOrderLines",
        aot="SalesOrderLineV2Entity",
        label="Sales order lines V2",
        table="Order lines (SalesLine)",
        # [UNVERIFIED] key: the lot id, not order + line number (§8.2).
        keys=("dataAreaId", "InventoryLotId"),
        number_sequence=("InventoryLotId", "LOT"),
        props=(
            _COMPANY,
            Prop("InventoryLotId", label="Lot ID", max_length=20, mandatory=True),
            Prop("SalesOrderNumber", label="Sales order", max_length=20, mandatory=True),
            Prop("LineNumber", "Decimal", "Line number"),
            Prop("ItemNumber", label="Item number", max_length=20, mandatory=True),
            Prop("LineDescription", label="Text", max_length=1000),
            Prop("OrderedSalesQuantity", "Decimal", "Quantity", default=1.0),
            Prop("SalesUnitSymbol", label="Unit", max_length=10),
            Prop("SalesPrice", "Decimal", "Unit price"),
            Prop("LineDiscountAmount", "Decimal", "Discount"),
            Prop("LineAmount", "Decimal", "Net amount", read_only=True),
            Prop("SalesOrderLineStatus", "Enum", "Status", enum="SalesStatus", default="Backorder"),
            Prop("RequestedShippingDate", "Date", "Requested ship date"),
            Prop("CurrencyCode", label="Currency", max_length=3),
            Prop("ShippingSiteId", label="Site", max_length=10),
            Prop("ShippingWarehouseId", label="Warehouse", max_length=10),
        ),
        relations=(
            Relation("SalesOrderNumber", "SalesOrderHeadersV2", "SalesOrderNumber", "Sales orders"),
            Relation("ItemNumber", "ReleasedProductsV2", "ItemNumber", "Items"),
        ),
        navs=(
            Nav(
                "SalesOrderHeader",
                "SalesOrderHeadersV2",
                (("dataAreaId", "dataAreaId"), ("SalesOrderNumber", "SalesOrderNumber")),
                collection=False,
            ),
        ),
    ),
    Entity(
        name="DataManagementDefinitionGroup",
        entity_set="DataManagementDefinitionGroups",
        aot="DMFDefinitionGroupEntity",
        label="Data projects",
        table="Data projects (DMFDefinitionGroup)",
        keys=("DefinitionGroupId",),
        company=False,
        read_only=True,
        props=(
            Prop("DefinitionGroupId", label="Name", max_length=60, mandatory=True),
            Prop("Description", label="Description", max_length=60),
            Prop("OperationType", "Enum", "Operation", enum="DMFOperationType"),
            # [UNVERIFIED] the sandbox's own column: the project's entity sets, comma-separated.
            Prop("Entities", label="Entities", max_length=1000),
        ),
    ),
)

_BY_SET = {e.entity_set: e for e in ENTITIES}
_PROPS = {e.entity_set: {p.name: p for p in e.props} for e in ENTITIES}


def entity_by_set(name: str) -> Entity | None:
    """The entity whose collection name is exactly `name` (URLs are case-sensitive, §1.4)."""
    return _BY_SET.get(name)


@dataclass(frozen=True)
class DataProject:
    """A data management project (definition group) the package API runs."""

    name: str
    operation: str  # Import | Export
    entity_sets: tuple[str, ...] = field(default=())
    description: str = ""


def _projects() -> tuple[DataProject, ...]:
    """One export and one import project per data entity, plus a sales-orders pair.

    A real project is made in F&O's Data management workspace before the API can run it
    (§5.4); the sandbox ships these, named ``Export-<EntitySet>`` / ``Import-<EntitySet>``.
    """
    out: list[DataProject] = []
    for entity in ENTITIES:
        if entity.read_only:
            continue
        for op in ("Export", "Import"):
            out.append(
                DataProject(f"{op}-{entity.entity_set}", op, (entity.entity_set,), entity.label)
            )
    sales = ("SalesOrderHeadersV2", "SalesOrderLines")
    out.append(DataProject("Export-SalesOrders", "Export", sales, "Sales orders with lines"))
    out.append(DataProject("Import-SalesOrders", "Import", sales, "Sales orders with lines"))
    return tuple(out)


DATA_PROJECTS: dict[str, DataProject] = {p.name.lower(): p for p in _projects()}
