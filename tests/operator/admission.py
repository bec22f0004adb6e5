"""What `kubectl apply` of a FineTuneJob meets at the API server, in the order it is checked:
strict field validation (kubectl's default: an unknown field is an error, not a silent drop),
object metadata, the CRD's OpenAPI schema, then its CEL rules. kmock checks none of them.

`admit(obj)` returns the API server's refusals (empty: admitted). Pruning and defaulting are
the server's too: unknown fields under a preserve-unknown-fields node are kept.
"""

from __future__ import annotations

from typing import Any

import jsonschema
from celrules import Validator
from fielderrors import is_dns1123_subdomain

from kubetune_operator.crd import build_crd

Schema = dict[str, Any]


def _schema() -> Schema:
    schema: Schema = build_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema


def unknown_fields(value: Any, schema: Schema, path: str) -> list[str]:
    """Fields the schema does not declare (where it does not preserve unknown fields)."""
    found: list[str] = []
    if isinstance(value, dict):
        props = schema.get("properties") or {}
        extra = schema.get("additionalProperties")
        for name, item in value.items():
            where = f"{path}.{name}" if path else name
            if name in props:
                found += unknown_fields(item, props[name], where)
            elif isinstance(extra, dict):
                found += unknown_fields(item, extra, where)
            elif not schema.get("x-kubernetes-preserve-unknown-fields") and path:  # metadata etc. at the root
                found.append(where)
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for position, item in enumerate(value):
            found += unknown_fields(item, schema["items"], f"{path}[{position}]")
    return found


def admit(obj: dict[str, Any]) -> list[str]:
    schema = _schema()
    unknown = unknown_fields(obj.get("spec"), schema["properties"]["spec"], "spec")
    if unknown:
        return [f'strict decoding error: unknown field "{field}"' for field in unknown]
    name = (obj.get("metadata") or {}).get("name", "")
    problems = [f"metadata.name: Invalid value: {name!r}: {p}" for p in is_dns1123_subdomain(name)]
    if problems:
        return problems
    errors = sorted(jsonschema.Draft4Validator(schema).iter_errors(obj), key=lambda e: list(e.path))
    if errors:
        return [f"{'.'.join(str(p) for p in e.path)}: {e.message}" for e in errors]
    return [f"{v.path}: {v.message}" for v in Validator(schema).violations(obj)]
