"""What the F&O environment says about itself: service document, `$metadata`, REST metadata.

* `/data/` - the OData service document (every public entity set).
* `/data/$metadata` - CSDL 4.0 in namespace ``Microsoft.Dynamics.DataEntities``:
  `EntityType`s with `Key`s (``dataAreaId`` first on company entities), `EnumType`s,
  navigation properties, the package API's bound actions and an `EntityContainer`
  mapping entity sets to types (§1.2, §6).
* `/metadata/PublicEntities`, `/metadata/PublicEnumerations` (+ ``('<Name>')``) and
  `/metadata/Labels(Id='…',Language='…')` - the lighter REST metadata service (§1.3),
  with `$filter` on `eq`, `tolower`, `contains`, `startswith`, `and`, `or`.  Field sets
  follow the public cmdlets that read them ([OBS]); the rest is [UNVERIFIED].
"""

from __future__ import annotations

import re
from typing import Any
from xml.sax.saxutils import quoteattr

from odata_query import ast, exceptions as odata_exceptions
from odata_query.grammar import ODataLexer, ODataParser

from ._fno_errors import bad_query, not_found
from ._fno_schema import ENTITIES, ENUMS, NAMESPACE, Entity, EnumType

__all__ = ["ACTIONS", "csdl", "label_of", "public_entities", "public_enums", "service_document"]

# The package API's actions, bound to the DataManagementDefinitionGroups collection (§5.4).
ACTIONS: dict[str, tuple[str, ...]] = {
    "ExportToPackage": (
        "definitionGroupId",
        "packageName",
        "executionId",
        "reExecute",
        "legalEntityId",
    ),
    "ImportFromPackage": (
        "packageUrl",
        "definitionGroupId",
        "executionId",
        "execute",
        "overwrite",
        "legalEntityId",
    ),
    "GetExecutionSummaryStatus": ("executionId",),
    "GetExportedPackageUrl": ("executionId",),
    "GetAzureWriteUrl": ("uniqueFileName",),
    "GetExecutionErrors": ("executionId",),
}
_BOOL_PARAMS = ("reExecute", "execute", "overwrite")


def service_document(root: str) -> dict[str, Any]:
    """The `/data/` service document."""
    return {
        "@odata.context": f"{root}/data/$metadata",
        "value": [
            {"name": e.entity_set, "kind": "EntitySet", "url": e.entity_set} for e in ENTITIES
        ],
    }


def _entity_type(entity: Entity) -> list[str]:
    out = [f"<EntityType Name={quoteattr(entity.name)}>", "<Key>"]
    out += [f"<PropertyRef Name={quoteattr(k)}/>" for k in entity.keys]
    out.append("</Key>")
    for prop in entity.props:
        facets = ' Nullable="false"'
        if prop.max_length:
            facets += f' MaxLength="{prop.max_length}"'
        if prop.kind == "Decimal":
            # [UNVERIFIED] which facets F&O emits (§6).
            facets += ' Precision="32" Scale="6"'
        out.append(f"<Property Name={quoteattr(prop.name)} Type={quoteattr(prop.edm)}{facets}>")
        if prop.label:
            out.append(f'<Annotation Term="Core.Description" String={quoteattr(prop.label)}/>')
        out.append("</Property>")
    for nav in entity.navs:
        target = next(e for e in ENTITIES if e.entity_set == nav.target)
        type_name = f"{NAMESPACE}.{target.name}"
        if nav.collection:
            type_name = f"Collection({type_name})"
        out.append(f"<NavigationProperty Name={quoteattr(nav.name)} Type={quoteattr(type_name)}>")
        for mine, theirs in nav.pairs:
            out.append(
                f"<ReferentialConstraint Property={quoteattr(mine)} "
                f"ReferencedProperty={quoteattr(theirs)}/>"
            )
        out.append("</NavigationProperty>")
    out.append("</EntityType>")
    return out


def _enum_type(enum: EnumType) -> list[str]:
    out = [f"<EnumType Name={quoteattr(enum.name)}>"]
    out += [f'<Member Name={quoteattr(n)} Value="{v}"/>' for n, v in enum.members]
    out.append("</EnumType>")
    return out


def csdl() -> bytes:
    """The `$metadata` document (CSDL XML)."""
    out = [
        '<?xml version="1.0" encoding="utf-8"?>',
        '<edmx:Edmx Version="4.0" xmlns:edmx="http://docs.oasis-open.org/odata/ns/edmx">',
        "<edmx:DataServices>",
        f'<Schema Namespace="{NAMESPACE}" xmlns="http://docs.oasis-open.org/odata/ns/edm">',
    ]
    for entity in ENTITIES:
        out += _entity_type(entity)
    for enum in ENUMS.values():
        out += _enum_type(enum)
    binding = f"Collection({NAMESPACE}.DataManagementDefinitionGroup)"
    for action, params in ACTIONS.items():
        out.append(f'<Action Name="{action}" IsBound="true">')
        out.append(f'<Parameter Name="_bindingParameter" Type="{binding}"/>')
        for name in params:
            kind = "Edm.Boolean" if name in _BOOL_PARAMS else "Edm.String"
            out.append(f'<Parameter Name="{name}" Type="{kind}"/>')
        out.append('<ReturnType Type="Edm.String"/>')
        out.append("</Action>")
    out.append('<EntityContainer Name="Resources">')
    for entity in ENTITIES:
        out.append(
            f"<EntitySet Name={quoteattr(entity.entity_set)} "
            f"EntityType={quoteattr(f'{NAMESPACE}.{entity.name}')}>"
        )
        for nav in entity.navs:
            out.append(f'<NavigationPropertyBinding Path="{nav.name}" Target="{nav.target}"/>')
        out.append("</EntitySet>")
    out += ["</EntityContainer>", "</Schema>", "</edmx:DataServices>", "</edmx:Edmx>"]
    return "\n".join(out).encode("utf-8")


# -- REST metadata service


def _label_id(owner: str, name: str = "") -> str:
    return f"@FNO:{owner}{'_' + name if name else ''}"


_LABELS: dict[str, str] = {}
for _e in ENTITIES:
    _LABELS[_label_id(_e.name)] = _e.label
    for _p in _e.props:
        _LABELS[_label_id(_e.name, _p.name)] = _p.label or _p.name
for _n in ENUMS.values():
    _LABELS[_label_id(_n.name)] = _n.label
    for _m, _ in _n.members:
        _LABELS[_label_id(_n.name, _m)] = re.sub(r"(?<=[a-z])(?=[A-Z])", " ", _m)


def label_of(label_id: str, language: str) -> dict[str, Any]:
    """`/metadata/Labels(Id=…,Language=…)`: one label's text (English for every language)."""
    if label_id not in _LABELS:
        raise not_found("Labels")
    return {"Id": label_id, "Language": language, "Value": _LABELS[label_id]}


def _entity_item(entity: Entity) -> dict[str, Any]:
    return {
        "Name": entity.name,
        "EntitySetName": entity.entity_set,
        "LabelId": _label_id(entity.name),
        "IsReadOnly": entity.read_only,
        "ConfigurationEnabled": True,
        "Properties": [
            {
                "Name": p.name,
                "TypeName": p.enum if p.kind == "Enum" else p.edm,
                "DataType": p.data_type,
                "LabelId": _label_id(entity.name, p.name),
                "IsKey": p.name in entity.keys,
                "IsMandatory": p.mandatory,
                "ConfigurationEnabled": True,
                "AllowEdit": not p.read_only and p.name not in entity.keys,
                "AllowEditOnCreate": not p.read_only,
                "IsDimension": False,
            }
            for p in entity.props
        ],
        "NavigationProperties": [
            {"Name": n.name, "RelatedEntity": n.target, "IsCollection": n.collection}
            for n in entity.navs
        ],
        "PropertyGroups": [],
        "Actions": [],
    }


def _enum_item(enum: EnumType) -> dict[str, Any]:
    return {
        "Name": enum.name,
        "LabelId": _label_id(enum.name),
        "Members": [
            {
                "Name": n,
                "Value": v,
                "LabelId": _label_id(enum.name, n),
                "ConfigurationEnabled": True,
            }
            for n, v in enum.members
        ],
    }


def _matches(node: Any, item: dict[str, Any]) -> Any:
    if isinstance(node, ast.BoolOp):
        left = _matches(node.left, item)
        return (
            (left and _matches(node.right, item))
            if isinstance(node.op, ast.And)
            else (left or _matches(node.right, item))
        )
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
        return not _matches(node.operand, item)
    if isinstance(node, ast.Compare) and isinstance(node.comparator, (ast.Eq, ast.NotEq)):
        equal = _matches(node.left, item) == _matches(node.right, item)
        return equal if isinstance(node.comparator, ast.Eq) else not equal
    if isinstance(node, ast.Identifier) and not node.namespace:
        if node.name not in item:
            raise bad_query(f"Could not find a property named '{node.name}'.")
        return item[node.name]
    if isinstance(node, (ast.String, ast.Integer)):
        return node.val
    if isinstance(node, ast.Boolean):
        return node.val.lower() == "true"
    if isinstance(node, ast.Call) and not node.func.namespace:
        args = [_matches(a, item) for a in node.args]
        name = node.func.name
        if name in ("tolower", "toupper") and len(args) == 1:
            return str(args[0]).lower() if name == "tolower" else str(args[0]).upper()
        if name in ("contains", "startswith", "endswith") and len(args) == 2:
            text, part = str(args[0]), str(args[1])
            return {"contains": part in text, "startswith": text.startswith(part)}.get(
                name, text.endswith(part)
            )
    raise bad_query(f"The expression '{type(node).__name__}' is not supported here.")


def _listing(
    kind: str, items: list[dict[str, Any]], root: str, key: str | None, params: dict[str, str]
) -> dict[str, Any]:
    context = f"{root}/metadata/$metadata#{kind}"
    if key is not None:
        for item in items:
            if item["Name"] == key:
                return {"@odata.context": f"{context}/$entity", **item}
        raise not_found(f"{kind}('{key}')")
    text = params.get("$filter", "").strip()
    if text:
        try:
            tree = ODataParser().parse(ODataLexer().tokenize(text))
        except odata_exceptions.ODataException:
            raise bad_query(f"Syntax error in '{text}'.") from None
        items = [i for i in items if _matches(tree, i)]
    if "$select" in params:
        names = [n.strip() for n in params["$select"].split(",")]
        items = [{n: i[n] for n in names if n in i} for i in items]
    return {"@odata.context": context, "value": items}


def public_entities(root: str, key: str | None, params: dict[str, str]) -> dict[str, Any]:
    """`/metadata/PublicEntities` (or one item by `key`, its singular `Name`)."""
    return _listing("PublicEntities", [_entity_item(e) for e in ENTITIES], root, key, params)


def public_enums(root: str, key: str | None, params: dict[str, str]) -> dict[str, Any]:
    """`/metadata/PublicEnumerations` (or one item by `key`)."""
    return _listing(
        "PublicEnumerations", [_enum_item(e) for e in ENUMS.values()], root, key, params
    )
