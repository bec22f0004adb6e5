"""Strict decoding of a CRD: fields the apiextensions.k8s.io/v1 types do not have, and JSON type errors.

kubectl validates strictly by default (--validate=strict), and so does server-side apply: a
keyword the v1 JSONSchemaProps lacks (`const`, `title` is fine, `examples` is not) refuses the
whole object before any rule below runs. Field names follow
staging/src/k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1/types.go and
types_jsonschema.go; the error wording follows sigs.k8s.io/json's strict decoder (the JSON
type errors loosely).
"""

from __future__ import annotations

from typing import Any

from fielderrors import STRICT, FieldError, child, index, json_kind

# fmt: off
_JSON_SCHEMA_PROPS = {
    "id": str, "$schema": str, "$ref": str, "description": str, "type": str, "format": str, "title": str,
    "default": object, "maximum": float, "exclusiveMaximum": bool, "minimum": float, "exclusiveMinimum": bool,
    "maxLength": int, "minLength": int, "pattern": str, "maxItems": int, "minItems": int, "uniqueItems": bool,
    "multipleOf": float, "enum": list, "maxProperties": int, "minProperties": int, "required": list, "items": object,
    "allOf": list, "oneOf": list, "anyOf": list, "not": dict, "properties": dict, "additionalProperties": object,
    "patternProperties": dict, "dependencies": dict, "additionalItems": object, "definitions": dict,
    "externalDocs": dict, "example": object, "nullable": bool, "x-kubernetes-preserve-unknown-fields": bool,
    "x-kubernetes-embedded-resource": bool, "x-kubernetes-int-or-string": bool, "x-kubernetes-list-map-keys": list,
    "x-kubernetes-list-type": str, "x-kubernetes-map-type": str, "x-kubernetes-validations": list,
}
_VALIDATION_RULE = {
    "rule": str, "message": str, "messageExpression": str, "reason": str, "fieldPath": str, "optionalOldSelf": bool,
}
_OBJECT_META = {
    "name": str, "generateName": str, "namespace": str, "selfLink": str, "uid": str, "resourceVersion": str,
    "generation": int, "creationTimestamp": object, "deletionTimestamp": object, "deletionGracePeriodSeconds": int,
    "labels": dict, "annotations": dict, "ownerReferences": list, "finalizers": list, "managedFields": list,
}
# fmt: on
_CRD_FIELDS: dict[str, dict[str, Any]] = {
    "crd": {"apiVersion": str, "kind": str, "metadata": dict, "spec": dict, "status": dict},
    "spec": {
        "group": str,
        "names": dict,
        "scope": str,
        "versions": list,
        "conversion": dict,
        "preserveUnknownFields": bool,
    },
    "names": {"plural": str, "singular": str, "shortNames": list, "kind": str, "listKind": str, "categories": list},
    "version": {
        "name": str,
        "served": bool,
        "storage": bool,
        "deprecated": bool,
        "deprecationWarning": str,
        "schema": dict,
        "subresources": dict,
        "additionalPrinterColumns": list,
        "selectableFields": list,
    },
    "subresources": {"status": dict, "scale": dict},
    "status": {},
    "scale": {"specReplicasPath": str, "statusReplicasPath": str, "labelSelectorPath": str},
    "column": {"name": str, "type": str, "format": str, "description": str, "priority": int, "jsonPath": str},
    "selectableField": {"jsonPath": str},
    "conversion": {"strategy": str, "webhook": dict},
    "webhook": {"clientConfig": dict, "conversionReviewVersions": list},
    "clientConfig": {"url": str, "service": dict, "caBundle": str},
    "service": {"namespace": str, "name": str, "path": str, "port": int},
    "validation": {"openAPIV3Schema": dict},
    "externalDocs": {"description": str, "url": str},
}


_GO_TYPES = {str: "string", bool: "bool", int: "int64", float: "float64", list: "array", dict: "object"}


def _type_ok(value: Any, expected: Any) -> bool:
    if value is None or expected is object:
        return True  # null decodes to the zero value of any field
    if expected is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if expected is int:
        return (isinstance(value, int) and not isinstance(value, bool)) or (
            isinstance(value, float) and value.is_integer()
        )
    return isinstance(value, expected)


def _check_fields(obj: Any, known: dict[str, Any], path: str, out: list[FieldError]) -> None:
    if not isinstance(obj, dict):
        return
    for name, value in obj.items():
        where = child(path, name)
        if name not in known:
            out.append(FieldError(where, STRICT, f'strict decoding error: unknown field "{where}"'))
        elif not _type_ok(value, known[name]):
            kind = _GO_TYPES.get(known[name], "value")
            out.append(
                FieldError(
                    where, STRICT, f"json: cannot unmarshal {json_kind(value)} into Go value of type {kind} ({where})"
                )
            )


def _check_schema_fields(schema: Any, path: str, out: list[FieldError]) -> None:
    if not isinstance(schema, dict):
        return
    _check_fields(schema, _JSON_SCHEMA_PROPS, path, out)
    for name in ("properties", "patternProperties", "definitions"):
        for prop, sub in (schema.get(name) or {}).items() if isinstance(schema.get(name), dict) else []:
            _check_schema_fields(sub, child(path, name, prop), out)
    for name in ("allOf", "oneOf", "anyOf"):
        for i, sub in enumerate(schema.get(name) or []) if isinstance(schema.get(name), list) else []:
            _check_schema_fields(sub, index(child(path, name), i), out)
    for name in ("not", "additionalProperties", "additionalItems"):
        _check_schema_fields(schema.get(name), child(path, name), out)
    items = schema.get("items")
    if isinstance(items, list):
        for i, sub in enumerate(items):
            _check_schema_fields(sub, index(child(path, "items"), i), out)
    else:
        _check_schema_fields(items, child(path, "items"), out)
    for dep, sub in (schema.get("dependencies") or {}).items() if isinstance(schema.get("dependencies"), dict) else []:
        _check_schema_fields(sub, child(path, "dependencies", dep), out)
    _check_fields(schema.get("externalDocs"), _CRD_FIELDS["externalDocs"], child(path, "externalDocs"), out)
    rules = schema.get("x-kubernetes-validations")
    for i, rule in enumerate(rules) if isinstance(rules, list) else []:
        _check_fields(rule, _VALIDATION_RULE, index(child(path, "x-kubernetes-validations"), i), out)


def strict_decoding(crd: dict[str, Any]) -> list[FieldError]:
    """Fields the v1 types do not have, and values of the wrong JSON type (kubectl's --validate=strict)."""
    out: list[FieldError] = []
    _check_fields(crd, _CRD_FIELDS["crd"], "", out)
    _check_fields(crd.get("metadata"), _OBJECT_META, "metadata", out)
    spec = crd.get("spec") or {}
    _check_fields(spec, _CRD_FIELDS["spec"], "spec", out)
    _check_fields(spec.get("names"), _CRD_FIELDS["names"], "spec.names", out)
    conversion = spec.get("conversion") or {}
    _check_fields(conversion, _CRD_FIELDS["conversion"], "spec.conversion", out)
    webhook = conversion.get("webhook") or {}
    _check_fields(webhook, _CRD_FIELDS["webhook"], "spec.conversion.webhook", out)
    client_config = webhook.get("clientConfig") or {}
    _check_fields(client_config, _CRD_FIELDS["clientConfig"], "spec.conversion.webhook.clientConfig", out)
    _check_fields(
        client_config.get("service"), _CRD_FIELDS["service"], "spec.conversion.webhook.clientConfig.service", out
    )
    for i, version in enumerate(spec.get("versions") or []):
        where = index("spec.versions", i)
        _check_fields(version, _CRD_FIELDS["version"], where, out)
        if not isinstance(version, dict):
            continue
        subresources = version.get("subresources") or {}
        _check_fields(subresources, _CRD_FIELDS["subresources"], child(where, "subresources"), out)
        _check_fields(subresources.get("status"), _CRD_FIELDS["status"], child(where, "subresources", "status"), out)
        _check_fields(subresources.get("scale"), _CRD_FIELDS["scale"], child(where, "subresources", "scale"), out)
        for j, column in enumerate(version.get("additionalPrinterColumns") or []):
            _check_fields(column, _CRD_FIELDS["column"], index(child(where, "additionalPrinterColumns"), j), out)
        for j, selectable in enumerate(version.get("selectableFields") or []):
            _check_fields(selectable, _CRD_FIELDS["selectableField"], index(child(where, "selectableFields"), j), out)
        schema = version.get("schema") or {}
        _check_fields(schema, _CRD_FIELDS["validation"], child(where, "schema"), out)
        _check_schema_fields(schema.get("openAPIV3Schema"), child(where, "schema", "openAPIV3Schema"), out)
    return out
