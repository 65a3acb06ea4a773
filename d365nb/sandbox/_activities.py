"""Activity and service tables: `task` and `phonecall` (seeded tables, empty at start), and
the optional Customer Service `incident` (Case) table.

Activities point at the row they are about through the polymorphic `regardingobjectid`
lookup; each target has its own relationship and navigation properties, named as in
Dataverse (`Account_Tasks`, `regardingobjectid_account_task`).  `incident` is not in
`_schema.TABLES`: a sandbox started with `customer_service=True` puts it in its catalog.
"""

from __future__ import annotations

from ._model import Attribute, Relationship, Table, choices, common_columns, state_columns

__all__ = ["ACTIVITY_RELATIONSHIPS", "INCIDENT", "OPTIONAL_RELATIONSHIPS", "PHONECALL", "TASK"]

# What an activity can be about (the regardingobjectid targets), as (logical, display).
_REGARDING = (
    ("account", "Account"),
    ("contact", "Contact"),
    ("opportunity", "Opportunity"),
    ("lead", "Lead"),
)


def _activity(
    logical: str,
    entity_set: str,
    display: str,
    object_type_code: int,
    columns: tuple[Attribute, ...],
    statuses: tuple[tuple[int, str, int], ...],
) -> Table:
    return Table(
        logical=logical,
        entity_set=entity_set,
        display=display,
        display_plural=display + "s",
        primary_id="activityid",
        primary_name="subject",
        object_type_code=object_type_code,
        attributes=(
            Attribute("activityid", "Uniqueidentifier", display, updatable=False),
            Attribute("subject", "String", "Subject", max_length=200, required=True),
            Attribute("description", "Memo", "Description", max_length=2000),
            Attribute("scheduledend", "DateTime", "Due"),
            Attribute("actualdurationminutes", "Integer", "Duration"),
            Attribute(
                "regardingobjectid",
                "Lookup",
                "Regarding",
                targets=tuple(t for t, _ in _REGARDING),
            ),
            *columns,
            *common_columns(),
            *state_columns(("Open", "Completed", "Canceled"), statuses),
        ),
    )


TASK = _activity(
    "task",
    "tasks",
    "Task",
    4212,
    (
        Attribute(
            "prioritycode",
            "Picklist",
            "Priority",
            options=choices("Low", "Normal", "High", start=0),
        ),
        Attribute("percentcomplete", "Integer", "Percent Complete"),
    ),
    (
        (2, "Not Started", 0),
        (3, "In Progress", 0),
        (4, "Waiting on someone else", 0),
        (7, "Deferred", 0),
        (5, "Completed", 1),
        (6, "Canceled", 2),
    ),
)

PHONECALL = _activity(
    "phonecall",
    "phonecalls",
    "Phone Call",
    4210,
    (
        Attribute("phonenumber", "String", "Phone Number", max_length=200),
        Attribute(
            "directioncode", "Boolean", "Direction", options=((0, "Incoming"), (1, "Outgoing"))
        ),
    ),
    ((1, "Open", 0), (2, "Made", 1), (4, "Received", 1), (3, "Canceled", 2)),
)

#: `Account_Tasks` ... `Lead_Phonecalls`: each activity table to each regarding target.
ACTIVITY_RELATIONSHIPS: tuple[Relationship, ...] = tuple(
    Relationship(
        f"{display}_{plural}",
        target,
        table.logical,
        "regardingobjectid",
        f"regardingobjectid_{target}_{table.logical}",
        f"{display}_{plural}",
    )
    for table, plural in ((TASK, "Tasks"), (PHONECALL, "Phonecalls"))
    for target, display in _REGARDING
)

INCIDENT = Table(
    logical="incident",
    entity_set="incidents",
    display="Case",
    display_plural="Cases",
    primary_id="incidentid",
    primary_name="title",
    object_type_code=112,
    attributes=(
        Attribute("incidentid", "Uniqueidentifier", "Case", updatable=False),
        Attribute("title", "String", "Case Title", max_length=200, required=True),
        Attribute("ticketnumber", "String", "Case Number", max_length=100),
        Attribute("description", "Memo", "Description", max_length=2000),
        Attribute(
            "customerid", "Customer", "Customer", targets=("account", "contact"), required=True
        ),
        Attribute("prioritycode", "Picklist", "Priority", options=choices("High", "Normal", "Low")),
        Attribute("severitycode", "Picklist", "Severity", options=choices("Default Value")),
        Attribute(
            "caseorigincode",
            "Picklist",
            "Origin",
            options=choices("Phone", "Email", "Web", start=1) + ((2483, "Facebook"),),
        ),
        *common_columns(),
        *state_columns(
            ("Active", "Resolved", "Cancelled"),
            (
                (1, "In Progress", 0),
                (2, "On Hold", 0),
                (3, "Waiting for Details", 0),
                (4, "Researching", 0),
                (5, "Problem Solved", 1),
                (6, "Cancelled", 2),
            ),
        ),
    ),
)

#: The relationships of the optional tables, by table.
OPTIONAL_RELATIONSHIPS: dict[str, tuple[Relationship, ...]] = {
    "incident": (
        Relationship(
            "incident_customer_accounts",
            "account",
            "incident",
            "customerid",
            "customerid_account",
            "incident_customer_accounts",
        ),
        Relationship(
            "incident_customer_contacts",
            "contact",
            "incident",
            "customerid",
            "customerid_contact",
            "incident_customer_contacts",
        ),
    ),
}
