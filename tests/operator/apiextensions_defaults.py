"""Default values: they must be pruned, validate against their schema, and pass the CEL rules.

Sources (kubernetes/kubernetes, staging/src/k8s.io/apiextensions-apiserver/pkg/apiserver/schema/):
    defaulting/validation.go   ValidateDefaults / validate             -> validate_defaults / _defaults_walk
    pruning/algorithm.go       Prune / prune / skipPrune               -> prune / _prune_node / _skip_prune
    cel/validation.go          (a default through cel.Validator; fieldErrorForReason) -> _cel_default_errors
kube-openapi/pkg/validation/validate (the schema check of a default)   -> validate_value

Approximated: validate_value words its errors like kube-openapi, not always identically, and
skips formats other than date-time; the CEL rules run through celrules.Validator, which also
fills nested defaults into the default; ObjectMeta coercion inside embedded resources is left out.
"""

from __future__ import annotations

import copy
import json
import math
import re
from typing import Any

from apiextensions_structural import META_FIELDS, valid_field_path
from cel_expr_python import cel
from celrules import RuleCompileError, Validator
from fielderrors import (
    FieldError,
    child,
    duplicate,
    forbidden,
    index,
    invalid,
    json_kind,
    key,
    not_supported,
    required,
    too_many,
)

Schema = dict[str, Any]

# --- defaults (schema/defaulting/validation.go, pruning/algorithm.go) ------------------------------


def prune(value: Any, s: Schema | None, root: bool = False) -> None:
    """pruning.Prune: drop object fields the schema does not specify (in place)."""
    if root:
        s = {**(s or {}), "x-kubernetes-embedded-resource": True}
    _prune_node(value, s)


def _prune_node(value: Any, s: Schema | None) -> None:
    if s is not None and s.get("x-kubernetes-preserve-unknown-fields"):
        _skip_prune(value, s)
        return
    if isinstance(value, dict):
        for name in list(value):
            if s is None:
                del value[name]
            elif s.get("x-kubernetes-embedded-resource") and name in META_FIELDS:
                continue
            elif name in (s.get("properties") or {}):
                _prune_node(value[name], s["properties"][name])
            elif s.get("additionalProperties") is not None:
                extra = s["additionalProperties"]
                _prune_node(value[name], extra if isinstance(extra, dict) else None)
            else:
                del value[name]
    elif isinstance(value, list):
        for item in value:
            _prune_node(item, s.get("items") if s is not None else None)


def _skip_prune(value: Any, s: Schema) -> None:
    if isinstance(value, dict):
        for name, item in value.items():
            if s.get("x-kubernetes-embedded-resource") and name in META_FIELDS:
                continue
            if name in (s.get("properties") or {}):
                _prune_node(item, s["properties"][name])
            elif s.get("additionalProperties") is not None:
                extra = s["additionalProperties"]
                _prune_node(item, extra if isinstance(extra, dict) else None)
    elif isinstance(value, list) and isinstance(s.get("items"), dict):
        for item in value:
            _skip_prune(item, s["items"])


def validate_defaults(path: str, schema: Schema, require_pruned: bool) -> list[FieldError]:
    """ValidateDefaults(isResourceRoot=true): defaults must validate, and (requirePrunedDefaults) be pruned."""
    root = {**schema, "x-kubernetes-embedded-resource": True}
    errs: list[FieldError] = []
    _defaults_walk(path, root, False, require_pruned, errs)
    return errs


def _defaults_walk(path: str, s: Schema, inside_meta: bool, require_pruned: bool, errs: list[FieldError]) -> None:
    if s.get("x-kubernetes-embedded-resource"):
        inside_meta = False
    if s.get("default") is not None:
        where = child(path, "default")
        default = s["default"]
        if not inside_meta and require_pruned:
            pruned = copy.deepcopy(default)
            prune(pruned, s, bool(s.get("x-kubernetes-embedded-resource")))
            if pruned != default:
                errs.append(invalid(where, default, "must not have unknown fields"))
        if found := validate_value(default, s, where):
            errs.extend(found)
        else:
            errs.extend(_cel_default_errors(s, default, where))
    # additionalProperties is not followed: defaults are forbidden there
    if isinstance(s.get("items"), dict):
        _defaults_walk(child(path, "items"), s["items"], inside_meta, require_pruned, errs)
    for name, prop in (s.get("properties") or {}).items():
        meta = inside_meta or (bool(s.get("x-kubernetes-embedded-resource")) and name in META_FIELDS)
        _defaults_walk(key(child(path, "properties"), name), prop, meta, require_pruned, errs)


def _cel_default_errors(s: Schema, default: Any, where: str) -> list[FieldError]:
    """The node's CEL rules (and those below it) on the default, old and new alike, as cel.Validator does."""
    try:
        validator = Validator(s)
    except RuleCompileError:
        return []  # the rule itself is reported by the compile check
    field_paths = {(r.path, r.rule): r.field_path for r in validator.rules}
    nodes = {(r.path, r.rule): r.node for r in validator.rules}
    errs = []
    for violation in validator.violations(default, copy.deepcopy(default)):
        sub = f".{violation.path}" if violation.path and not violation.path.startswith("[") else violation.path
        rule_key = (_schema_path_of(violation.path), violation.rule)
        error_path = where + sub
        node = nodes.get(rule_key, s)
        field_path = field_paths.get(rule_key)
        if field_path:  # the error names the rule's fieldPath (cel/validation.go NormalizedRuleFieldPath)
            normalized, _found = valid_field_path(field_path, node)
            error_path += normalized if normalized.startswith("[") else f".{normalized}"
        reason = _rule_reason(node, violation.rule)
        errs.append(_error_for_reason(error_path, node.get("type", ""), violation.message, reason))
    return errs


def _schema_path_of(value_path: str) -> str:
    """celrules names a value spec.env[2]; its rule sits at spec.env[]."""
    return re.sub(r"\[\d+\]", "[]", re.sub(r"\['[^']*'\]", "{}", value_path))


def _rule_reason(node: Schema, text: str) -> str | None:
    return next((r.get("reason") for r in node.get("x-kubernetes-validations", []) if r.get("rule") == text), None)


def _error_for_reason(path: str, value: Any, detail: str, reason: str | None) -> FieldError:
    """cel/validation.go fieldErrorForReason: a rule's reason picks the error type."""
    if reason == "FieldValueForbidden":
        return forbidden(path, detail)
    if reason == "FieldValueRequired":
        return required(path, detail)
    if reason == "FieldValueDuplicate":
        return duplicate(path, value)
    return invalid(path, value, detail)


# --- value validation (kube-openapi validate, for default values) --------------------------------

_JSON_TYPES = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "boolean": lambda v: isinstance(v, bool),
    "integer": lambda v: (isinstance(v, int) and not isinstance(v, bool)) or (isinstance(v, float) and v.is_integer()),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
}
_DATE_TIME = re.compile(r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})")


def validate_value(value: Any, s: Schema, path: str) -> list[FieldError]:
    """A default value against its schema, in the spirit of kube-openapi's validator."""
    if value is None:
        return [] if s.get("nullable") else [invalid(path, None, "in body must be of type " + s.get("type", "object"))]
    kind = s.get("type")
    if s.get("x-kubernetes-int-or-string"):
        if not (_JSON_TYPES["integer"](value) or isinstance(value, str)):
            return [invalid(path, value, "in body must be of type integer or string")]
    elif kind and not _JSON_TYPES.get(kind, lambda v: True)(value):
        return [invalid(path, value, f"in body must be of type {kind}: {json.dumps(json_kind(value))}")]
    errs = _validate_scalar(value, s, path)
    errs.extend(_validate_container(value, s, path))
    for sub in s.get("allOf") or []:
        if isinstance(sub, dict):
            errs.extend(validate_value(value, sub, path))
    for name in ("anyOf", "oneOf"):
        options = [sub for sub in s.get(name) or [] if isinstance(sub, dict)]
        if options:
            passing = sum(1 for sub in options if not validate_value(value, sub, path))
            if (name == "anyOf" and passing == 0) or (name == "oneOf" and passing != 1):
                errs.append(
                    invalid(
                        path,
                        value,
                        f"in body must validate {'one and only one' if name == 'oneOf' else 'at least one'} "
                        f"schema ({name})",
                    )
                )
    if isinstance(s.get("not"), dict) and not validate_value(value, s["not"], path):
        errs.append(invalid(path, value, "in body must not validate the schema (not)"))
    return errs


def _validate_scalar(value: Any, s: Schema, path: str) -> list[FieldError]:
    errs: list[FieldError] = []
    if "enum" in s and value not in s["enum"]:
        errs.append(not_supported(path, value, [json.dumps(e) if not isinstance(e, str) else e for e in s["enum"]]))
    if isinstance(value, str):
        length = len(value)
        if s.get("maxLength") is not None and length > s["maxLength"]:
            errs.append(FieldError(path, "Too long", f"may not be more than {s['maxLength']} bytes"))
        if s.get("minLength") is not None and length < s["minLength"]:
            errs.append(invalid(path, value, f"in body should be at least {s['minLength']} chars long"))
        if s.get("pattern") and not re2_match(s["pattern"], value):
            errs.append(invalid(path, value, f"in body should match '{s['pattern']}'"))
        if s.get("format") == "date-time" and not _DATE_TIME.fullmatch(value):
            errs.append(invalid(path, value, "in body must be of type date-time"))
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        errs.extend(_validate_number(value, s, path))
    return errs


def _validate_number(value: float, s: Schema, path: str) -> list[FieldError]:
    errs: list[FieldError] = []
    if s.get("maximum") is not None:
        top = s["maximum"]
        if value > top or (s.get("exclusiveMaximum") and value == top):
            word = "less than" if s.get("exclusiveMaximum") else "less than or equal to"
            errs.append(invalid(path, value, f"in body should be {word} {top}"))
    if s.get("minimum") is not None:
        low = s["minimum"]
        if value < low or (s.get("exclusiveMinimum") and value == low):
            word = "greater than" if s.get("exclusiveMinimum") else "greater than or equal to"
            errs.append(invalid(path, value, f"in body should be {word} {low}"))
    if s.get("multipleOf"):
        quotient = value / s["multipleOf"]
        if not math.isclose(quotient, round(quotient)):
            errs.append(invalid(path, value, f"in body should be a multiple of {s['multipleOf']}"))
    return errs


def _validate_container(value: Any, s: Schema, path: str) -> list[FieldError]:
    errs: list[FieldError] = []
    if isinstance(value, list):
        if s.get("maxItems") is not None and len(value) > s["maxItems"]:
            errs.append(too_many(path, len(value), s["maxItems"]))
        if s.get("minItems") is not None and len(value) < s["minItems"]:
            errs.append(invalid(path, len(value), f"in body should have at least {s['minItems']} items"))
        if isinstance(s.get("items"), dict):
            for i, item in enumerate(value):
                errs.extend(validate_value(item, s["items"], index(path, i)))
    if isinstance(value, dict):
        if s.get("maxProperties") is not None and len(value) > s["maxProperties"]:
            errs.append(too_many(path, len(value), s["maxProperties"]))
        if s.get("minProperties") is not None and len(value) < s["minProperties"]:
            errs.append(invalid(path, len(value), f"in body should have at least {s['minProperties']} properties"))
        errs.extend(required(child(path, name), "") for name in s.get("required") or [] if name not in value)
        props = s.get("properties") or {}
        extra = s.get("additionalProperties")
        for name, item in value.items():
            if name in props:
                errs.extend(validate_value(item, props[name], child(path, name)))
            elif isinstance(extra, dict):
                errs.extend(validate_value(item, extra, child(path, name)))
    return errs


_RE2_MATCH = cel.NewEnv(variables={"pattern": cel.Type.STRING, "value": cel.Type.STRING}).compile(
    "value.matches(pattern)"
)


def re2_match(pattern: str, value: str) -> bool:
    result = _RE2_MATCH.eval(data={"pattern": pattern, "value": value})
    return result.type() == cel.Type.BOOL and bool(result.value())
