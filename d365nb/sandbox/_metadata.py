"""Metadata: `EntityDefinitions` (entities, attributes, option sets, keys) and `$metadata` CSDL."""

from __future__ import annotations

import re
from typing import Any
from xml.sax.saxutils import quoteattr

from odata_query import ast
from odata_query.grammar import ODataLexer, ODataParser

from ._errors import ApiError, syntax_error
from ._exchange import Call, Reply
from ._model import CURRENT_CATALOG, ManyToMany
from ._schema import (
    Attribute,
    Relationship,
    Table,
    all_relationships,
    all_tables,
    metadata_id,
    nav_properties,
    table_by_logical,
)
from ._tracking import tracked

__all__ = ["Metadata", "csdl"]

_LANG = 1033
_ENUM = re.compile(r"Microsoft\.Dynamics\.CRM\.[A-Za-z]+'([A-Za-z]+)'")
_CAST = "Microsoft.Dynamics.CRM."


def label(text: str, *parts: str) -> dict[str, Any]:
    """A `Label` complex value (`LocalizedLabels` + `UserLocalizedLabel`)."""
    loc = {
        "Label": text,
        "LanguageCode": _LANG,
        "IsManaged": True,
        "MetadataId": metadata_id("label", *parts),
        "HasChanged": None,
    }
    return {"LocalizedLabels": [loc], "UserLocalizedLabel": loc}


def entity_json(table: Table) -> dict[str, Any]:
    """`EntityMetadata` for one table."""
    owned = table.attribute("ownerid") is not None
    return {
        "MetadataId": table.metadata_id,
        "LogicalName": table.logical,
        "SchemaName": table.display.replace(" ", "")
        if table.logical != "systemuser"
        else "SystemUser",
        "EntitySetName": table.entity_set,
        "LogicalCollectionName": table.entity_set,
        "CollectionSchemaName": table.display_plural.replace(" ", ""),
        "PrimaryIdAttribute": table.primary_id,
        "PrimaryNameAttribute": table.primary_name,
        "ObjectTypeCode": table.object_type_code,
        "DisplayName": label(table.display, table.logical, "display"),
        "DisplayCollectionName": label(table.display_plural, table.logical, "plural"),
        "Description": label("", table.logical, "description"),
        "IsCustomEntity": False,
        "IsPrivate": False,
        "IsActivity": False,
        "IsValidForAdvancedFind": True,
        "ChangeTrackingEnabled": tracked(table),
        "IsOptimisticConcurrencyEnabled": True,
        "OwnershipType": "UserOwned" if owned else "BusinessOwned",
        "HasNotes": False,
        "HasActivities": False,
    }


def _option(attr: Attribute, value: int, text: str, table: Table) -> dict[str, Any]:
    out: dict[str, Any] = {
        "Value": value,
        "Color": None,
        "IsManaged": True,
        "ExternalValue": None,
        "ParentValues": [],
        "Tag": None,
        "IsHidden": False,
        "MetadataId": None,
        "HasChanged": None,
        "Label": label(text, table.logical, attr.name, str(value)),
        "Description": label("", table.logical, attr.name, str(value), "d"),
    }
    if attr.kind == "Status":
        out["State"] = dict(attr.status_states).get(value)
    if attr.kind == "State":
        out["DefaultStatus"] = next(
            (v for v, s in (table.attribute("statuscode") or attr).status_states if s == value),
            None,
        )
    return out


def option_set(table: Table, attr: Attribute) -> dict[str, Any]:
    """The attribute's `OptionSet` (`BooleanOptionSetMetadata` for yes/no columns)."""
    kind = {"Virtual": "Picklist", "Boolean": "Boolean"}.get(attr.kind, attr.kind)
    base: dict[str, Any] = {
        "MetadataId": metadata_id(table.logical, attr.name, "optionset"),
        "Name": f"{table.logical}_{attr.name}",
        "IsGlobal": False,
        "IsCustomOptionSet": attr.name.startswith("cr_"),
        "OptionSetType": kind,
        "DisplayName": label(attr.label, table.logical, attr.name, "os"),
    }
    # [UNVERIFIED] BooleanOptionSetMetadata with TrueOption/FalseOption.
    if attr.kind == "Boolean":
        opts = dict(attr.options)
        base["TrueOption"] = _option(attr, 1, opts.get(1, "Yes"), table)
        base["FalseOption"] = _option(attr, 0, opts.get(0, "No"), table)
    else:
        base["Options"] = [_option(attr, v, t, table) for v, t in attr.options]
    return base


def attribute_json(table: Table, attr: Attribute) -> dict[str, Any]:
    """`AttributeMetadata` (with the derived type's properties) for one column."""
    required = (
        "SystemRequired"
        if attr.name == table.primary_id
        else ("ApplicationRequired" if attr.required else "None")
    )
    out: dict[str, Any] = {
        "@odata.type": f"#Microsoft.Dynamics.CRM.{attr.metadata_type}",
        "MetadataId": metadata_id(table.logical, attr.name),
        "LogicalName": attr.name,
        "SchemaName": attr.name,
        "EntityLogicalName": table.logical,
        "AttributeType": attr.kind,
        "AttributeTypeName": {"Value": attr.type_name},
        "DisplayName": label(attr.label, table.logical, attr.name),
        "Description": label("", table.logical, attr.name, "d"),
        "IsPrimaryId": attr.name == table.primary_id,
        "IsPrimaryName": attr.name == table.primary_name,
        "IsValidForCreate": attr.creatable,
        "IsValidForUpdate": attr.updatable,
        "IsValidForRead": True,
        "IsCustomAttribute": attr.name.startswith("cr_"),
        "IsLogical": False,
        "AttributeOf": None,
        "RequiredLevel": {
            "Value": required,
            "CanBeChanged": True,
            "ManagedPropertyLogicalName": "canmodifyrequirementlevelsettings",
        },
    }
    if attr.kind in ("String", "Memo"):
        out["MaxLength"] = attr.max_length
        out["Format"] = (
            "Email"
            if "email" in attr.name
            else (
                "Phone"
                if "phone" in attr.name
                else "Url"
                if "url" in attr.name
                else "TextArea"
                if attr.kind == "Memo"
                else "Text"
            )
        )
        out["DatabaseLength"] = (attr.max_length or 0) * 2
    elif attr.kind == "DateTime":
        out["Format"] = "DateOnly" if attr.date_only else "DateAndTime"
        out["DateTimeBehavior"] = {"Value": "DateOnly" if attr.date_only else "UserLocal"}
        out["CanChangeDateTimeBehavior"] = {"Value": False}
    elif attr.kind in ("Integer", "BigInt"):
        out["MinValue"] = -2147483648 if attr.kind == "Integer" else -9223372036854775808
        out["MaxValue"] = 2147483647 if attr.kind == "Integer" else 9223372036854775807
        out["Format"] = "None"
    elif attr.kind in ("Money", "Decimal", "Double"):
        out["Precision"] = {"Money": 2, "Decimal": 10, "Double": 5}[attr.kind]
        out["MinValue"] = -100000000000000.0 if attr.kind != "Double" else -1000000000.0
        out["MaxValue"] = 100000000000000.0 if attr.kind != "Double" else 1000000000.0
    elif attr.is_lookup:
        out["Targets"] = list(attr.targets)
        out["Format"] = "None"
    elif attr.kind in ("Picklist", "Virtual", "State", "Status", "Boolean"):
        out["DefaultFormValue"] = -1 if attr.kind != "Boolean" else None
    return out


def keys_json(table: Table) -> list[dict[str, Any]]:
    """`EntityKeyMetadata` for the table's alternate keys."""
    return [
        {
            "MetadataId": metadata_id(table.logical, "key", name),
            "LogicalName": name.lower(),
            "SchemaName": name,
            "EntityLogicalName": table.logical,
            "KeyAttributes": list(attrs),
            "EntityKeyIndexStatus": "Active",
            "DisplayName": label(name, table.logical, "key", name),
        }
        for name, attrs in table.keys
    ]


def relationship_json(rel: Relationship) -> dict[str, Any]:
    """`OneToManyRelationshipMetadata`."""
    ref = table_by_logical(rel.referenced)
    return {
        "@odata.type": "#Microsoft.Dynamics.CRM.OneToManyRelationshipMetadata",
        "MetadataId": metadata_id("rel", rel.schema_name),
        "SchemaName": rel.schema_name,
        "RelationshipType": "OneToManyRelationship",
        "ReferencedEntity": rel.referenced,
        "ReferencedAttribute": ref.primary_id if ref else "",
        "ReferencingEntity": rel.referencing,
        "ReferencingAttribute": rel.attribute,
        "ReferencedEntityNavigationPropertyName": rel.referenced_nav,
        "ReferencingEntityNavigationPropertyName": rel.referencing_nav,
        "IsCustomRelationship": False,
    }


def many_to_many_json(rel: ManyToMany) -> dict[str, Any]:
    """`ManyToManyRelationshipMetadata`."""
    return {
        "@odata.type": "#Microsoft.Dynamics.CRM.ManyToManyRelationshipMetadata",
        "MetadataId": metadata_id("rel", rel.schema_name),
        "SchemaName": rel.schema_name,
        "RelationshipType": "ManyToManyRelationship",
        "Entity1LogicalName": rel.entity1,
        "Entity2LogicalName": rel.entity2,
        "IntersectEntityName": rel.intersect,
        "Entity1IntersectAttribute": rel.column1,
        "Entity2IntersectAttribute": rel.column2,
        "Entity1NavigationPropertyName": rel.nav1,
        "Entity2NavigationPropertyName": rel.nav2,
        "IsCustomRelationship": True,
    }


def _evaluate(node: Any, item: dict[str, Any]) -> Any:
    if isinstance(node, ast.BoolOp):
        left = _evaluate(node.left, item)
        if isinstance(node.op, ast.And):
            return left and _evaluate(node.right, item)
        return left or _evaluate(node.right, item)
    if isinstance(node, ast.UnaryOp):
        return not _evaluate(node.operand, item)
    if isinstance(node, ast.Compare):
        left, right = _evaluate(node.left, item), _evaluate(node.right, item)
        if isinstance(left, str) and isinstance(right, str):
            left, right = left.lower(), right.lower()
        if isinstance(node.comparator, ast.Eq):
            return left == right
        if isinstance(node.comparator, ast.NotEq):
            return left != right
        raise syntax_error("Only eq and ne are supported when filtering metadata.")
    if isinstance(node, ast.Identifier):
        return item.get(node.name)
    if isinstance(node, ast.Attribute):
        owner = _evaluate(node.owner, item)
        return owner.get(node.attr) if isinstance(owner, dict) else None
    if isinstance(node, ast.Boolean):
        return node.val.lower() == "true"
    if isinstance(node, ast.Null):
        return None
    if isinstance(node, (ast.String, ast.GUID)):
        return node.val
    if isinstance(node, ast.Integer):
        return int(node.val)
    raise syntax_error("Unsupported expression in metadata $filter.")


def _filter(items: list[dict[str, Any]], text: str | None) -> list[dict[str, Any]]:
    if not text:
        return items
    try:
        tree = ODataParser().parse(ODataLexer().tokenize(_ENUM.sub(r"'\1'", text)))
    except Exception:
        raise syntax_error(f"Syntax error in '$filter={text}'.") from None
    return [item for item in items if _evaluate(tree, item)]


def _select(item: dict[str, Any], text: str | None) -> dict[str, Any]:
    if not text:
        return item
    names = {n.strip() for n in text.split(",")}
    return {k: v for k, v in item.items() if k in names or k in ("MetadataId", "@odata.type")}


def _options(text: str) -> dict[str, str]:
    out = {}
    for part in text.split(";"):
        k, _, v = part.partition("=")
        out[k.strip()] = v
    return out


class Metadata:
    """Answers `EntityDefinitions...` and `RelationshipDefinitions` requests."""

    def entity_definitions(self, call: Call, rest: str) -> Reply:
        """`rest` is the path after `EntityDefinitions`."""
        params = call.params
        m = re.match(r"^\((?:LogicalName='([^']+)'|([0-9a-fA-F-]{36}))\)(.*)$", rest)
        if not rest:
            items = [entity_json(t) for t in all_tables()]
            items = _filter(items, params.get("$filter"))
            out = []
            for item in items:
                table = table_by_logical(item["LogicalName"])
                assert table is not None
                out.append(self._expand(table, _select(item, params.get("$select")), params))
            ctx = f"{call.root}$metadata#EntityDefinitions"
            if "$select" in params:
                ctx += f"({params['$select']})"
            return Reply.json(200, {"@odata.context": ctx, "value": out})
        if m is None:
            raise ApiError(
                404, "0x8006088a", f"Resource not found for the segment 'EntityDefinitions{rest}'."
            )
        logical, mid, sub = m.group(1), m.group(2), m.group(3)
        table = (
            table_by_logical(logical)
            if logical
            else next((t for t in all_tables() if t.metadata_id == (mid or "").lower()), None)
        )
        if table is None:
            raise ApiError(
                404, "0x80040217", f"Could not find entity with name '{logical or mid}'."
            )
        base = f"{call.root}$metadata#EntityDefinitions({table.metadata_id})"
        if not sub:
            # [UNVERIFIED] the single-entity (`/$entity`) shape, not a `value` array.
            body = {"@odata.context": f"{call.root}$metadata#EntityDefinitions/$entity"}
            body.update(
                self._expand(table, _select(entity_json(table), params.get("$select")), params)
            )
            return Reply.json(200, body)
        if sub == "/Keys":
            return Reply.json(200, {"@odata.context": f"{base}/Keys", "value": keys_json(table)})
        if sub == "/ManyToManyRelationships":
            catalog = CURRENT_CATALOG.get()
            pairs = [
                many_to_many_json(r)
                for r in (catalog.many_to_many if catalog else ())
                if table.logical in (r.entity1, r.entity2)
            ]
            return Reply.json(200, {"@odata.context": base + sub, "value": pairs})
        if sub in ("/OneToManyRelationships", "/ManyToOneRelationships"):
            rels = [
                relationship_json(r)
                for r in all_relationships()
                if (r.referenced if sub[1] == "O" else r.referencing) == table.logical
            ]
            return Reply.json(200, {"@odata.context": base + sub, "value": rels})
        am = re.match(
            r"^/Attributes(?:\(LogicalName='([^']+)'\)|\(([0-9a-fA-F-]{36})\))?"
            r"(?:/Microsoft\.Dynamics\.CRM\.([A-Za-z]+))?$",
            sub,
        )
        if am is None:
            raise ApiError(404, "0x8006088a", f"Resource not found for the segment '{sub[1:]}'.")
        name, aid, cast = am.group(1), am.group(2), am.group(3)
        attrs = list(table.attributes)
        if cast:
            if cast == "EnumAttributeMetadata" or not cast.endswith("AttributeMetadata"):
                raise ApiError(
                    400, "0x80060888", f"The type '{_CAST}{cast}' cannot be used as a cast segment."
                )
            attrs = [a for a in attrs if a.metadata_type == cast]
        if name or aid:
            found = [
                a
                for a in attrs
                if a.name == name or metadata_id(table.logical, a.name) == (aid or "").lower()
            ]
            if not found:
                raise ApiError(404, "0x80040217", f"Could not find attribute '{name or aid}'.")
            body = {"@odata.context": f"{base}/Attributes/$entity"}
            body.update(self._attr(table, found[0], params))
            return Reply.json(200, body)
        items = _filter([attribute_json(table, a) for a in attrs], params.get("$filter"))
        keep = {i["LogicalName"] for i in items}
        values = [self._attr(table, a, params) for a in attrs if a.name in keep]
        return Reply.json(200, {"@odata.context": f"{base}/Attributes", "value": values})

    def _attr(self, table: Table, attr: Attribute, params: dict[str, str]) -> dict[str, Any]:
        item = _select(attribute_json(table, attr), params.get("$select"))
        expand = params.get("$expand", "")
        if attr.options and re.search(r"(^|,)\s*OptionSet\b", expand):
            item["OptionSet"] = option_set(table, attr)
        if attr.options and re.search(r"(^|,)\s*GlobalOptionSet\b", expand):
            item["GlobalOptionSet"] = None
        return item

    def _expand(self, table: Table, item: dict[str, Any], params: dict[str, str]) -> dict[str, Any]:
        expand = params.get("$expand", "")
        for part in re.findall(r"(Attributes|Keys)(?:\(([^)]*)\))?", expand):
            what, opts = part
            o = _options(opts) if opts else {}
            if what == "Keys":
                item["Keys"] = keys_json(table)
            else:
                attrs = _filter(
                    [attribute_json(table, a) for a in table.attributes], o.get("$filter")
                )
                item["Attributes"] = [_select(a, o.get("$select")) for a in attrs]
        return item

    def relationship_definitions(self, call: Call) -> Reply:
        everything = [relationship_json(r) for r in all_relationships()]
        catalog = CURRENT_CATALOG.get()
        everything += [many_to_many_json(r) for r in (catalog.many_to_many if catalog else ())]
        items = _filter(everything, call.params.get("$filter"))
        items = [_select(i, call.params.get("$select")) for i in items]
        return Reply.json(
            200, {"@odata.context": f"{call.root}$metadata#RelationshipDefinitions", "value": items}
        )


def csdl(*, annotations: bool = False) -> str:
    """The `$metadata` CSDL document for the seeded tables."""
    out = [
        '<?xml version="1.0" encoding="utf-8"?>',
        '<edmx:Edmx Version="4.0" xmlns:edmx="http://docs.oasis-open.org/odata/ns/edmx">',
        "<edmx:DataServices>",
        '<Schema Namespace="Microsoft.Dynamics.CRM" Alias="mscrm" '
        'xmlns="http://docs.oasis-open.org/odata/ns/edm">',
        '<EntityType Name="crmbaseentity" Abstract="true"/>',
    ]
    for table in all_tables():
        out.append(f'<EntityType Name="{table.logical}" BaseType="mscrm.crmbaseentity">')
        out.append(f'<Key><PropertyRef Name="{table.primary_id}"/></Key>')
        for attr in table.attributes:
            out.append(
                f'<Property Name="{attr.column}" Type="{attr.edm}"/>'
                if not annotations or attr.updatable
                else f'<Property Name="{attr.column}" Type="{attr.edm}"><Annotation '
                'Term="Org.OData.Core.V1.Computed" Bool="true"/></Property>'
            )
        for nav in nav_properties(table).values():
            target = nav.target
            if nav.collection:
                out.append(
                    f'<NavigationProperty Name="{nav.name}" Type="Collection(mscrm.'
                    f'{target})" Partner="{nav.relationship.referencing_nav}"/>'
                )
            else:
                t = table_by_logical(target)
                out.append(
                    f'<NavigationProperty Name="{nav.name}" Type="mscrm.{target}" '
                    f'Nullable="false" Partner="{nav.relationship.referenced_nav}">'
                    f'<ReferentialConstraint Property="_{nav.relationship.attribute}'
                    f'_value" ReferencedProperty="{t.primary_id if t else ""}"/>'
                    "</NavigationProperty>"
                )
        out.append("</EntityType>")
    out.append(
        '<ComplexType Name="WhoAmIResponse">'
        + "".join(
            f'<Property Name="{n}" Type="Edm.Guid" Nullable="false"/>'
            for n in ("BusinessUnitId", "UserId", "OrganizationId")
        )
        + "</ComplexType>"
    )
    out.append(
        '<ComplexType Name="CreateMultipleResponse"><Property Name="Ids" '
        'Type="Collection(Edm.Guid)" Nullable="false"/></ComplexType>'
    )
    out.append(
        '<Function Name="WhoAmI"><ReturnType Type="mscrm.WhoAmIResponse" '
        'Nullable="false"/></Function>'
    )
    for action in ("CreateMultiple", "UpdateMultiple", "UpsertMultiple"):
        ret = (
            '<ReturnType Type="mscrm.CreateMultipleResponse" Nullable="false"/>'
            if action == "CreateMultiple"
            else ""
        )
        out.append(
            f'<Action Name="{action}" IsBound="true"><Parameter Name="entityset" '
            'Type="Collection(mscrm.crmbaseentity)" Nullable="false"/>'
            '<Parameter Name="Targets" Type="Collection(mscrm.crmbaseentity)" '
            f'Nullable="false"/>{ret}</Action>'
        )
    out.append('<EntityContainer Name="System">')
    for table in all_tables():
        out.append(
            f'<EntitySet Name="{table.entity_set}" '
            f'EntityType="Microsoft.Dynamics.CRM.{table.logical}">'
        )
        for nav in nav_properties(table).values():
            t = table_by_logical(nav.target)
            out.append(
                f"<NavigationPropertyBinding Path={quoteattr(nav.name)} "
                f'Target="{t.entity_set if t else ""}"/>'
            )
        if annotations and tracked(table):
            out.append(
                '<Annotation Term="Org.OData.Capabilities.V1.ChangeTracking"><Record>'
                '<PropertyValue Property="Supported" Bool="true"/></Record></Annotation>'
            )
        out.append("</EntitySet>")
    out.append(
        '<FunctionImport Name="WhoAmI" Function="Microsoft.Dynamics.CRM.WhoAmI" '
        'IncludeInServiceDocument="false"/>'
    )
    out.append("</EntityContainer></Schema></edmx:DataServices></edmx:Edmx>")
    return "\n".join(out)
