"""The sandbox's metadata model: tables, columns, choices, keys and relationships.

One definition drives everything else: the SQLite DDL, the seed, `$metadata`,
`EntityDefinitions`, query validation and value conversion on writes.  Column names in
SQLite are the Web API property names (`name`, `_parentaccountid_value`), so a `$filter`
translates to SQL without renaming.  Polymorphic lookups keep their target table in a
hidden `_<name>_type` column.
"""

from __future__ import annotations

from ._activities import ACTIVITY_RELATIONSHIPS, PHONECALL, TASK
from ._model import (
    ACTIVE_STATE as _ACTIVE_STATE,
    CURRENT_CATALOG,
    Attribute,
    NavProperty,
    Relationship,
    Table,
    choices as _opts,
    common_columns as _common,
    metadata_id,
    state_columns as _state,
)

__all__ = [
    "INDUSTRIES",
    "RELATIONSHIPS",
    "TABLES",
    "all_relationships",
    "all_tables",
    "custom_table",
    "Attribute",
    "NavProperty",
    "Relationship",
    "Table",
    "metadata_id",
    "nav_properties",
    "table_by_logical",
    "table_by_set",
]


INDUSTRIES = _opts(
    "Accounting",
    "Agriculture and Non-petrol Natural Resource Extraction",
    "Broadcasting Printing and Publishing",
    "Brokers",
    "Building Supply Retail",
    "Business Services",
    "Consulting",
    "Consumer Services",
    "Design, Direction and Creative Management",
    "Distributors, Dispatchers and Processors",
    "Doctor's Offices and Clinics",
    "Durable Manufacturing",
    "Eating and Drinking Places",
    "Entertainment Retail",
    "Equipment Rental and Leasing",
    "Financial",
    "Food and Tobacco Processing",
    "Inbound Capital Intensive Processing",
    "Inbound Repair and Services",
    "Insurance",
    "Legal Services",
    "Non-Durable Merchandise Retail",
    "Outbound Consumer Service",
    "Petrochemical Extraction and Distribution",
    "Service Retail",
    "SIG Affiliations",
    "Social Services",
    "Special Outbound Trade Contractors",
    "Specialty Realty",
    "Transportation",
    "Utility Creation and Distribution",
    "Vehicle Retail",
    "Wholesale",
)

ACCOUNT = Table(
    logical="account",
    entity_set="accounts",
    display="Account",
    display_plural="Accounts",
    primary_id="accountid",
    primary_name="name",
    object_type_code=1,
    keys=(("cr_accountnumber_key", ("accountnumber",)),),
    attributes=(
        Attribute("accountid", "Uniqueidentifier", "Account", updatable=False),
        Attribute("name", "String", "Account Name", max_length=160, required=True),
        Attribute("accountnumber", "String", "Account Number", max_length=20),
        Attribute("originatingleadid", "Lookup", "Originating Lead", targets=("lead",)),
        Attribute("telephone1", "String", "Main Phone", max_length=50),
        Attribute("emailaddress1", "String", "Email", max_length=100),
        Attribute("websiteurl", "String", "Website", max_length=200),
        Attribute("address1_line1", "String", "Address 1: Street 1", max_length=250),
        Attribute("address1_city", "String", "Address 1: City", max_length=80),
        Attribute("address1_postalcode", "String", "Address 1: ZIP/Postal Code", max_length=20),
        Attribute("address1_country", "String", "Address 1: Country/Region", max_length=80),
        Attribute("address1_latitude", "Double", "Address 1: Latitude"),
        Attribute("address1_longitude", "Double", "Address 1: Longitude"),
        Attribute("description", "Memo", "Description", max_length=2000),
        Attribute("numberofemployees", "Integer", "Number of Employees"),
        Attribute("revenue", "Money", "Annual Revenue"),
        Attribute("creditlimit", "Money", "Credit Limit"),
        Attribute("exchangerate", "Decimal", "Exchange Rate", creatable=False, updatable=False),
        Attribute("transactioncurrencyid", "Lookup", "Currency", targets=("transactioncurrency",)),
        Attribute("industrycode", "Picklist", "Industry", options=INDUSTRIES),
        Attribute(
            "customertypecode",
            "Picklist",
            "Relationship Type",
            options=_opts(
                "Competitor",
                "Consultant",
                "Customer",
                "Investor",
                "Partner",
                "Influencer",
                "Press",
                "Prospect",
                "Reseller",
                "Supplier",
                "Vendor",
                "Other",
            ),
        ),
        Attribute(
            "accountcategorycode",
            "Picklist",
            "Category",
            options=_opts("Preferred Customer", "Standard"),
        ),
        Attribute(
            "cr_productinterests",
            "Virtual",
            "Product Interests",
            options=_opts(
                "Software", "Hardware", "Services", "Training", "Support", start=100000000
            ),
        ),
        Attribute("creditonhold", "Boolean", "Credit Hold", options=((0, "No"), (1, "Yes"))),
        Attribute(
            "donotemail",
            "Boolean",
            "Do not allow Emails",
            options=((0, "Allow"), (1, "Do Not Allow")),
        ),
        Attribute("cr_foundedon", "DateTime", "Founded On", date_only=True),
        Attribute("lastonholdtime", "DateTime", "Last On Hold Time"),
        Attribute("parentaccountid", "Lookup", "Parent Account", targets=("account",)),
        Attribute("primarycontactid", "Lookup", "Primary Contact", targets=("contact",)),
        *_ACTIVE_STATE,
        *_common(),
    ),
)

CONTACT = Table(
    logical="contact",
    entity_set="contacts",
    display="Contact",
    display_plural="Contacts",
    primary_id="contactid",
    primary_name="fullname",
    object_type_code=2,
    keys=(("cr_contact_name_email_key", ("firstname", "emailaddress1")),),
    attributes=(
        Attribute("contactid", "Uniqueidentifier", "Contact", updatable=False),
        Attribute("firstname", "String", "First Name", max_length=50),
        Attribute("lastname", "String", "Last Name", max_length=50, required=True),
        Attribute(
            "fullname", "String", "Full Name", max_length=160, creatable=False, updatable=False
        ),
        Attribute("emailaddress1", "String", "Email", max_length=100),
        Attribute("telephone1", "String", "Business Phone", max_length=50),
        Attribute("mobilephone", "String", "Mobile Phone", max_length=50),
        Attribute("jobtitle", "String", "Job Title", max_length=100),
        Attribute("address1_city", "String", "Address 1: City", max_length=80),
        Attribute("description", "Memo", "Description", max_length=2000),
        Attribute("birthdate", "DateTime", "Birthday", date_only=True),
        Attribute("gendercode", "Picklist", "Gender", options=_opts("Male", "Female")),
        Attribute(
            "familystatuscode",
            "Picklist",
            "Marital Status",
            options=_opts("Single", "Married", "Divorced", "Widowed"),
        ),
        Attribute("annualincome", "Money", "Annual Income"),
        Attribute("transactioncurrencyid", "Lookup", "Currency", targets=("transactioncurrency",)),
        Attribute("exchangerate", "Decimal", "Exchange Rate", creatable=False, updatable=False),
        Attribute(
            "donotphone",
            "Boolean",
            "Do not allow Phone Calls",
            options=((0, "Allow"), (1, "Do Not Allow")),
        ),
        Attribute("parentcustomerid", "Customer", "Company Name", targets=("account", "contact")),
        *_ACTIVE_STATE,
        *_common(),
    ),
)

OPPORTUNITY = Table(
    logical="opportunity",
    entity_set="opportunities",
    display="Opportunity",
    display_plural="Opportunities",
    primary_id="opportunityid",
    primary_name="name",
    object_type_code=3,
    attributes=(
        Attribute("opportunityid", "Uniqueidentifier", "Opportunity", updatable=False),
        Attribute("name", "String", "Topic", max_length=300, required=True),
        Attribute("description", "Memo", "Description", max_length=2000),
        Attribute("estimatedvalue", "Money", "Est. Revenue"),
        Attribute("actualvalue", "Money", "Actual Revenue"),
        Attribute("transactioncurrencyid", "Lookup", "Currency", targets=("transactioncurrency",)),
        Attribute("exchangerate", "Decimal", "Exchange Rate", creatable=False, updatable=False),
        Attribute("closeprobability", "Integer", "Probability"),
        Attribute("estimatedclosedate", "DateTime", "Est. Close Date", date_only=True),
        Attribute("actualclosedate", "DateTime", "Actual Close Date", date_only=True),
        Attribute(
            "opportunityratingcode", "Picklist", "Rating", options=_opts("Hot", "Warm", "Cold")
        ),
        Attribute(
            "salesstage",
            "Picklist",
            "Sales Stage",
            options=_opts("Qualify", "Develop", "Propose", "Close", start=0),
        ),
        Attribute("stepname", "String", "Pipeline Phase", max_length=200),
        Attribute("customerid", "Customer", "Potential Customer", targets=("account", "contact")),
        Attribute("parentaccountid", "Lookup", "Account", targets=("account",)),
        Attribute("parentcontactid", "Lookup", "Contact", targets=("contact",)),
        *_state(
            ("Open", "Won", "Lost"),
            (
                (1, "In Progress", 0),
                (2, "On Hold", 0),
                (3, "Won", 1),
                (4, "Canceled", 2),
                (5, "Out-Sold", 2),
            ),
        ),
        *_common(),
    ),
)

LEAD = Table(
    logical="lead",
    entity_set="leads",
    display="Lead",
    display_plural="Leads",
    primary_id="leadid",
    primary_name="fullname",
    object_type_code=4,
    attributes=(
        Attribute("leadid", "Uniqueidentifier", "Lead", updatable=False),
        Attribute("subject", "String", "Topic", max_length=300),
        Attribute("firstname", "String", "First Name", max_length=50),
        Attribute("lastname", "String", "Last Name", max_length=50, required=True),
        Attribute("fullname", "String", "Name", max_length=160, creatable=False, updatable=False),
        Attribute("companyname", "String", "Company Name", max_length=100),
        Attribute("emailaddress1", "String", "Email", max_length=100),
        Attribute("telephone1", "String", "Business Phone", max_length=50),
        Attribute("revenue", "Money", "Annual Revenue"),
        Attribute("transactioncurrencyid", "Lookup", "Currency", targets=("transactioncurrency",)),
        Attribute("exchangerate", "Decimal", "Exchange Rate", creatable=False, updatable=False),
        Attribute("numberofemployees", "Integer", "No. of Employees"),
        Attribute("industrycode", "Picklist", "Industry", options=INDUSTRIES),
        Attribute(
            "leadsourcecode",
            "Picklist",
            "Lead Source",
            options=_opts(
                "Advertisement",
                "Employee Referral",
                "External Referral",
                "Partner",
                "Public Relations",
                "Seminar",
                "Trade Show",
                "Web",
                "Word of Mouth",
                "Other",
            ),
        ),
        Attribute("leadqualitycode", "Picklist", "Rating", options=_opts("Hot", "Warm", "Cold")),
        *_state(
            ("Open", "Qualified", "Disqualified"),
            (
                (1, "New", 0),
                (2, "Contacted", 0),
                (3, "Qualified", 1),
                (4, "Lost", 2),
                (5, "Cannot Contact", 2),
                (6, "No Longer Interested", 2),
                (7, "Canceled", 2),
            ),
        ),
        *_common(),
    ),
)

SYSTEMUSER = Table(
    logical="systemuser",
    entity_set="systemusers",
    display="User",
    display_plural="Users",
    primary_id="systemuserid",
    primary_name="fullname",
    object_type_code=8,
    attributes=(
        Attribute("systemuserid", "Uniqueidentifier", "User", updatable=False),
        Attribute("fullname", "String", "Full Name", max_length=200),
        Attribute("firstname", "String", "First Name", max_length=64),
        Attribute("lastname", "String", "Last Name", max_length=64),
        Attribute("domainname", "String", "User Name", max_length=1024),
        Attribute("internalemailaddress", "String", "Primary Email", max_length=100),
        Attribute("azureactivedirectoryobjectid", "Uniqueidentifier", "Azure AD Object ID"),
        Attribute("applicationid", "Uniqueidentifier", "Application ID"),
        Attribute(
            "accessmode",
            "Picklist",
            "Access Mode",
            options=(
                (0, "Read-Write"),
                (1, "Administrative"),
                (2, "Read"),
                (3, "Support User"),
                (4, "Non-interactive"),
                (5, "Delegated Admin"),
            ),
        ),
        Attribute("isdisabled", "Boolean", "Status", options=((0, "Enabled"), (1, "Disabled"))),
        Attribute("businessunitid", "Lookup", "Business Unit", targets=("businessunit",)),
        *_common(owner=False),
    ),
)

BUSINESSUNIT = Table(
    logical="businessunit",
    entity_set="businessunits",
    display="Business Unit",
    display_plural="Business Units",
    primary_id="businessunitid",
    primary_name="name",
    object_type_code=10,
    attributes=(
        Attribute("businessunitid", "Uniqueidentifier", "Business Unit", updatable=False),
        Attribute("name", "String", "Name", max_length=160, required=True),
        Attribute("parentbusinessunitid", "Lookup", "Parent Business", targets=("businessunit",)),
        *_common(owner=False),
    ),
)

TRANSACTIONCURRENCY = Table(
    logical="transactioncurrency",
    entity_set="transactioncurrencies",
    display="Currency",
    display_plural="Currencies",
    primary_id="transactioncurrencyid",
    primary_name="currencyname",
    object_type_code=9105,
    keys=(("isocurrencycode_key", ("isocurrencycode",)),),
    attributes=(
        Attribute("transactioncurrencyid", "Uniqueidentifier", "Currency", updatable=False),
        Attribute("currencyname", "String", "Currency Name", max_length=100, required=True),
        Attribute("isocurrencycode", "String", "Currency Code", max_length=5, required=True),
        Attribute("currencysymbol", "String", "Currency Symbol", max_length=13),
        Attribute("exchangerate", "Decimal", "Exchange Rate"),
        *_common(owner=False),
    ),
)

TABLES: tuple[Table, ...] = (
    ACCOUNT,
    CONTACT,
    OPPORTUNITY,
    LEAD,
    SYSTEMUSER,
    BUSINESSUNIT,
    TRANSACTIONCURRENCY,
    TASK,
    PHONECALL,
)

RELATIONSHIPS: tuple[Relationship, ...] = (
    *ACTIVITY_RELATIONSHIPS,
    Relationship(
        "account_originating_lead",
        "lead",
        "account",
        "originatingleadid",
        "originatingleadid",
        "account_originating_lead",
    ),
    Relationship(
        "account_parent_account",
        "account",
        "account",
        "parentaccountid",
        "parentaccountid",
        "account_parent_account",
    ),
    Relationship(
        "account_primary_contact",
        "contact",
        "account",
        "primarycontactid",
        "primarycontactid",
        "account_primary_contact",
    ),
    Relationship(
        "contact_customer_accounts",
        "account",
        "contact",
        "parentcustomerid",
        "parentcustomerid_account",
        "contact_customer_accounts",
    ),
    Relationship(
        "contact_customer_contacts",
        "contact",
        "contact",
        "parentcustomerid",
        "parentcustomerid_contact",
        "contact_customer_contacts",
    ),
    Relationship(
        "opportunity_customer_accounts",
        "account",
        "opportunity",
        "customerid",
        "customerid_account",
        "opportunity_customer_accounts",
    ),
    Relationship(
        "opportunity_customer_contacts",
        "contact",
        "opportunity",
        "customerid",
        "customerid_contact",
        "opportunity_customer_contacts",
    ),
    Relationship(
        "opportunity_parent_account",
        "account",
        "opportunity",
        "parentaccountid",
        "parentaccountid",
        "opportunity_parent_account",
    ),
    Relationship(
        "opportunity_parent_contact",
        "contact",
        "opportunity",
        "parentcontactid",
        "parentcontactid",
        "opportunity_parent_contact",
    ),
    Relationship(
        "business_unit_system_users",
        "businessunit",
        "systemuser",
        "businessunitid",
        "businessunitid",
        "business_unit_system_users",
    ),
    Relationship(
        "business_unit_parent_business_unit",
        "businessunit",
        "businessunit",
        "parentbusinessunitid",
        "parentbusinessunitid",
        "business_unit_parent_business_unit",
    ),
    *(
        Relationship(f"{t.logical}_{a}", "systemuser", t.logical, a, a, f"lk_{t.logical}_{a}")
        for t in (
            ACCOUNT,
            CONTACT,
            OPPORTUNITY,
            LEAD,
            SYSTEMUSER,
            BUSINESSUNIT,
            TRANSACTIONCURRENCY,
            TASK,
            PHONECALL,
        )
        for a in ("createdby", "modifiedby")
    ),
    *(
        Relationship(
            f"{t.logical}_owner",
            "systemuser",
            t.logical,
            "ownerid",
            "ownerid",
            f"user_{t.entity_set}",
        )
        for t in (ACCOUNT, CONTACT, OPPORTUNITY, LEAD, TASK, PHONECALL)
    ),
    *(
        Relationship(
            f"TransactionCurrency_{t.display}",
            "transactioncurrency",
            t.logical,
            "transactioncurrencyid",
            "transactioncurrencyid",
            f"transactioncurrency_{t.logical}",
        )
        for t in (ACCOUNT, CONTACT, OPPORTUNITY, LEAD)
    ),
)

_BY_LOGICAL = {t.logical: t for t in TABLES}
_BY_SET = {t.entity_set: t for t in TABLES}


def all_tables() -> tuple[Table, ...]:
    """The seeded tables, then those created at run time (this request's sandbox)."""
    catalog = CURRENT_CATALOG.get()
    return TABLES + tuple(catalog.tables.values()) if catalog else TABLES


def all_relationships() -> tuple[Relationship, ...]:
    """The seeded relationships, then those created at run time."""
    catalog = CURRENT_CATALOG.get()
    return RELATIONSHIPS + tuple(catalog.relationships) if catalog else RELATIONSHIPS


def table_by_logical(logical: str) -> Table | None:
    """The table with this logical name."""
    found = _BY_LOGICAL.get(logical)
    catalog = CURRENT_CATALOG.get()
    if found is None and catalog is not None:
        found = catalog.tables.get(logical)
    return found


def table_by_set(entity_set: str) -> Table | None:
    """The table with this entity set name (case-sensitive, like the service)."""
    found = _BY_SET.get(entity_set)
    catalog = CURRENT_CATALOG.get()
    if found is None and catalog is not None:
        found = next((t for t in catalog.tables.values() if t.entity_set == entity_set), None)
    return found


def custom_table(
    *,
    logical: str,
    entity_set: str,
    display: str,
    display_plural: str,
    primary_name: Attribute,
    columns: tuple[Attribute, ...],
    object_type_code: int,
    keys: tuple[tuple[str, tuple[str, ...]], ...] = (),
) -> Table:
    """A table created through the metadata API: its id, primary name and `columns`, plus
    the columns every user-owned table has (created/modified on and by, owner, status)."""
    primary_id = f"{logical}id"
    return Table(
        logical=logical,
        entity_set=entity_set,
        display=display,
        display_plural=display_plural,
        primary_id=primary_id,
        primary_name=primary_name.name,
        object_type_code=object_type_code,
        keys=keys,
        attributes=(
            Attribute(primary_id, "Uniqueidentifier", display, updatable=False),
            primary_name,
            *columns,
            *_common(),
            *_ACTIVE_STATE,
        ),
    )


def nav_properties(table: Table) -> dict[str, NavProperty]:
    """Every navigation property of `table`, by name."""
    navs: dict[str, NavProperty] = {}
    for rel in all_relationships():
        if rel.referencing == table.logical:
            navs[rel.referencing_nav] = NavProperty(rel.referencing_nav, rel, False)
        if rel.referenced == table.logical:
            navs[rel.referenced_nav] = NavProperty(rel.referenced_nav, rel, True)
    return navs
