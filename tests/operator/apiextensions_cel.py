"""The x-kubernetes-validations checks of a CRD: the rule fields, the CEL compile, and the cost limits.

Sources (kubernetes/kubernetes, staging/src/k8s.io/apiextensions-apiserver/pkg/):
    apis/apiextensions/validation/validation.go
        (ValidateCustomResourceDefinitionOpenAPISchema's rule-field checks)  -> validate_rule_fields
        getExpressionCost, multiplyWithOverflowGuard                        -> expression_cost
        getCostErrorMessage                                                 -> cost_error_message
        StaticEstimatedCostLimit, StaticEstimatedCRDCostLimit               -> the constants below
    apis/apiextensions/validation/cel_validation.go
        CELSchemaContext (MaxCardinality, TotalCost)                        -> CelContext, TotalCost
        extractMaxElements                                                  -> _extract_max_elements
    apiserver/schema/cel/compilation.go maxCardinality                      -> expression_cost (unbounded case)
    apiserver/pkg/cel/environment/base.go: cel.ValidateRegexLiterals, cel.HomogeneousAggregateLiterals,
        which CEL C++ does not apply by itself                              -> literal_errors
The compile and the per-call cost estimate are celtyped.py and celcost.py.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from apiextensions_structural import new_structural_error, path_valid, re2_error
from celcost import MAX_UINT64
from celtyped import MAX_REQUEST_SIZE_BYTES, DeclType, schema_decl_type
from fielderrors import FieldError, child, index, invalid, not_supported, required

Schema = dict[str, Any]

STATIC_ESTIMATED_COST_LIMIT = 10_000_000
STATIC_ESTIMATED_CRD_COST_LIMIT = 100_000_000
# k8s.io/apiserver/pkg/apis/cel/config.go: the runtime limit of one evaluation (not an admission check)
PER_CALL_LIMIT = 1_000_000
SUPPORTED_VALIDATION_REASONS = ("FieldValueDuplicate", "FieldValueForbidden", "FieldValueInvalid", "FieldValueRequired")


@dataclass
class TotalCost:
    """cel_validation.go TotalCost."""

    total: int = 0
    most_expensive: list[tuple[str, int]] = field(default_factory=list)

    def observe(self, path: str, cost: int) -> None:
        self.total = min(MAX_UINT64, self.total + cost)
        if cost < STATIC_ESTIMATED_CRD_COST_LIMIT // 100:  # under 1% of the limit: not worth naming
            return
        self.most_expensive = sorted([*self.most_expensive, (path, cost)], key=lambda pc: -pc[1])[:4]


@dataclass
class CelContext:
    """cel_validation.go CELSchemaContext: the schema's CEL type and how often a value can occur."""

    schema: Schema
    is_root: bool
    max_cardinality: int | None  # None: unbounded by the parents' maxItems/maxProperties
    total: TotalCost
    parent: CelContext | None = None

    def child(self, schema: Schema | None) -> CelContext | None:
        if schema is None:
            return None
        cardinality = None
        factor = _extract_max_elements(self.schema)
        if self.max_cardinality is not None and factor is not None:
            cardinality = min(MAX_UINT64, self.max_cardinality * factor)
        return CelContext(schema, False, cardinality, self.total, self)

    def decl_type(self) -> DeclType | None:
        return schema_decl_type(self.schema, self.is_root or bool(self.schema.get("x-kubernetes-embedded-resource")))


def _extract_max_elements(schema: Schema) -> int | None:
    """extractMaxElements: by how much a schema multiplies its children's occurrences."""
    kind = schema.get("type")
    if kind == "object":
        if schema.get("additionalProperties") is not None:
            return max(0, schema["maxProperties"]) if schema.get("maxProperties") is not None else None
        return 1
    if kind == "array":
        return max(0, schema["maxItems"]) if schema.get("maxItems") is not None else None
    return 1


def literal_errors(checked: Any) -> str | None:
    """Checks Kubernetes adds to its CEL environment (base.go) that CEL C++ does not make by default:
    cel.ValidateRegexLiterals (a constant matches() pattern must be valid RE2) and
    cel.HomogeneousAggregateLiterals (a list or map literal's elements must share one type)."""
    stack = [checked.expr]
    while stack:
        e = stack.pop()
        if e.kind == "call" and e.name == "matches":
            pattern = e.args[-1] if e.args else None
            constant = pattern is not None and pattern.kind == "literal" and pattern.literal[0] == "string"
            if constant and (error := re2_error(pattern.literal[1])):  # type: ignore[union-attr]
                return f"ERROR: <input>: invalid matches argument: {error}"
        if e.kind in ("list", "map"):
            for part in (0, 1):
                kinds = {
                    _type_key(checked.types.get(item.id)) for pair in e.entries if (item := pair[part]) is not None
                }
                if len(kinds) > 1:
                    joined = " and ".join(sorted(kinds))
                    return f"ERROR: <input>: expected type of {joined} to be the same in an aggregate literal"
        stack.extend(
            x for x in (e.operand, e.target, e.iter_range, e.accu_init, e.loop_condition, e.loop_step, e.result) if x
        )
        stack.extend(e.args)
        stack.extend(x for pair in e.entries for x in pair if x is not None)
    return None


def _type_key(t: Any) -> str:
    if t is None:
        return "dyn"
    return t.kind + (f"({t.name})" if t.name else "") + "".join(f"[{_type_key(p)}]" for p in t.params)


def expression_cost(per_call: int, ctx: CelContext, decl: DeclType) -> int:
    """getExpressionCost: the per-call cost times how often the rule can run."""
    if ctx.max_cardinality is not None:
        cardinality = ctx.max_cardinality
    else:
        cardinality = MAX_REQUEST_SIZE_BYTES // (decl.min_serialized_size + 1)  # compilation.go maxCardinality
    if per_call == 0:
        return 0
    return MAX_UINT64 if MAX_UINT64 // per_call < cardinality else per_call * cardinality


def cost_error_message(name: str, cost: int, limit: int) -> str:
    factor = cost / limit
    if factor > 100.0:
        shown = "more than 100x"
    elif factor < 1.5:
        shown = f"{factor:f}x"
    else:
        shown = f"{factor:.1f}x"
    return (
        f"{name} exceeds budget by factor of {shown} (try simplifying the rule, or adding maxItems, maxProperties, "
        "and maxLength where arrays, maps, and strings are declared)"
    )


def _has_newlines(text: str) -> bool:
    return bool(re.search(r"[\n\r]+", text))


def validate_rule_fields(s: Schema, rules: list[dict[str, Any]], path: str) -> list[FieldError]:
    """The x-kubernetes-validations checks that need no CEL."""
    structural = new_structural_error(s) is None  # once per node, not per fieldPath
    errs: list[FieldError] = []
    for i, rule in enumerate(rules):
        where = index(child(path, "x-kubernetes-validations"), i)
        text = str(rule.get("rule", "")).strip()
        message = str(rule.get("message", ""))
        trimmed = message.strip()
        if not text:
            errs.append(required(child(where, "rule"), "rule is not specified"))
        elif message and not trimmed:
            errs.append(invalid(child(where, "message"), message, "must be non-empty if specified"))
        elif _has_newlines(trimmed):
            errs.append(invalid(child(where, "message"), message, "must not contain line breaks"))
        elif _has_newlines(text) and not trimmed:
            errs.append(required(child(where, "message"), "message must be specified if rule contains line breaks"))
        expression = str(rule.get("messageExpression", ""))
        if expression and not expression.strip():
            errs.append(required(child(where, "messageExpression"), "messageExpression must be non-empty if specified"))
        if rule.get("reason") is not None and rule["reason"] not in SUPPORTED_VALIDATION_REASONS:
            errs.append(not_supported(child(where, "reason"), rule["reason"], SUPPORTED_VALIDATION_REASONS))
        field_path = str(rule.get("fieldPath", ""))
        if field_path and not field_path.strip():
            errs.append(invalid(child(where, "fieldPath"), field_path, "must be non-empty if specified"))
        if _has_newlines(field_path):
            errs.append(invalid(child(where, "fieldPath"), field_path, "must not contain line breaks"))
        if field_path and not path_valid(s, field_path, structural):
            errs.append(invalid(child(where, "fieldPath"), field_path, "must be a valid path"))
    return errs
