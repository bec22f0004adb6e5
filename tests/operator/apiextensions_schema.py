"""The openAPIV3Schema of a CRD: the recursive walk that ties the schema rules together.

Sources (kubernetes/kubernetes, staging/src/k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/
validation/validation.go):
    validateCustomResourceDefinitionValidation    -> validate_validation
    (root rules with the status subresource; allowedFieldsAtRootSchema) -> _validate_root_for_status
    ValidateCustomResourceDefinitionOpenAPISchema -> _SchemaWalk.walk / _children
    specStandardValidatorV3 (validate, withForbiddenDefaults, withInsideResourceMeta,
        withForbidOldSelfValidations)             -> _SchemaWalk._standard, _Standard
    (its CEL part: compile, cost, oldSelf, optionalOldSelf, messageExpression)
                                                  -> _SchemaWalk._cel / _cel_rule / _message_expression
    validationOptions (as set on create)          -> Options
The parts it calls: apiextensions_structural.py (NewStructural, ValidateStructural),
apiextensions_defaults.py (ValidateDefaults), apiextensions_lists.py (list and map types),
apiextensions_cel.py (rule fields, cost limits), celtyped.py and celcost.py (compile, cost).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from apiextensions_cel import (
    STATIC_ESTIMATED_COST_LIMIT,
    STATIC_ESTIMATED_CRD_COST_LIMIT,
    CelContext,
    TotalCost,
    cost_error_message,
    expression_cost,
    literal_errors,
    validate_rule_fields,
)
from apiextensions_defaults import validate_defaults
from apiextensions_lists import validate_extensions_and_lists, validate_map_list_keys_map_set
from apiextensions_structural import (
    GO_FIELD,
    META_FIELDS,
    ROOT_ALLOWED,
    is_set,
    new_structural_error,
    validate_structural,
)
from cel_expr_python import cel
from celcost import estimate_cost
from celtyped import CompileError, DeclType, TypedEnvironments, schema_decl_type
from fielderrors import (
    FieldError,
    child,
    forbidden,
    index,
    internal,
    invalid,
    key,
    not_supported,
)

Schema = dict[str, Any]

OPENAPI_V3_TYPES = ("array", "boolean", "integer", "number", "object", "string")


@dataclass(frozen=True)
class Options:
    """validation.go validationOptions, as ValidateCustomResourceDefinition sets them on create."""

    allow_defaults: bool = True
    require_valid_property_type: bool = True
    require_structural_schema: bool = True
    require_pruned_defaults: bool = True
    require_atomic_set_type: bool = True
    require_map_list_keys_map_set_validation: bool = True


@dataclass
class Report:
    """What validating one CRD found: the errors, and each rule's estimated cost (for reporting)."""

    errors: list[FieldError] = field(default_factory=list)
    rule_costs: dict[str, int] = field(default_factory=dict)  # rule path -> cost x cardinality
    per_call_costs: dict[str, int] = field(default_factory=dict)  # rule path -> cost of one evaluation
    total_cost: int = 0


# --- the schema walk (ValidateCustomResourceDefinitionOpenAPISchema) ------------------------------


@dataclass(frozen=True)
class _Standard:
    """specStandardValidatorV3 and the context it carries down the schema."""

    allow_defaults: bool = True
    disallow_defaults_reason: str = ""
    inside_resource_meta: bool = False
    require_valid_property_type: bool = True
    uncorrelatable_old_self_path: str | None = None

    def with_forbidden_defaults(self, reason: str) -> _Standard:
        return replace(self, allow_defaults=False, disallow_defaults_reason=reason)

    def with_inside_resource_meta(self) -> _Standard:
        return replace(self, inside_resource_meta=True)

    def with_forbid_old_self(self, path: str) -> _Standard:
        if self.uncorrelatable_old_self_path is not None:
            return self  # keep the highest path that makes oldSelf uncorrelatable
        return replace(self, uncorrelatable_old_self_path=path)


def _map_is_correlatable(map_type: str | None) -> bool:
    return map_type is None or map_type == "granular"


@dataclass
class _SchemaErrors:
    schema: list[FieldError] = field(default_factory=list)
    cel: list[FieldError] = field(default_factory=list)

    def extend(self, other: _SchemaErrors) -> None:
        self.schema.extend(other.schema)
        self.cel.extend(other.cel)


class _SchemaWalk:
    """ValidateCustomResourceDefinitionOpenAPISchema, recursive, with the CEL checks at each node."""

    def __init__(self, opts: Options, envs: TypedEnvironments | None, report: Report) -> None:
        self.opts = opts
        self.envs = envs
        self.report = report

    def walk(self, s: Any, path: str, ssv: _Standard, is_root: bool, ctx: CelContext | None) -> _SchemaErrors:
        errs = _SchemaErrors()
        if not isinstance(s, dict):
            return errs
        errs.schema.extend(self._standard(s, path, ssv))
        if s.get("uniqueItems") is True:
            errs.schema.append(
                forbidden(
                    child(path, "uniqueItems"),
                    "uniqueItems cannot be set to true since the runtime complexity becomes quadratic",
                )
            )
        self._children(s, path, ssv, is_root, ctx, errs)
        errs.schema.extend(validate_extensions_and_lists(s, path, self.opts.require_atomic_set_type))
        if self.opts.require_map_list_keys_map_set_validation:
            errs.schema.extend(validate_map_list_keys_map_set(s, path))
        rules = s.get("x-kubernetes-validations") or []
        if rules:
            errs.schema.extend(validate_rule_fields(s, rules, path))
            # CEL is only compiled where the schema at this level and below is valid.
            if not errs.schema and ctx is not None:
                errs.cel.extend(self._cel(s, rules, path, ssv, ctx))
        return errs

    def _children(
        self, s: Schema, path: str, ssv: _Standard, is_root: bool, ctx: CelContext | None, errs: _SchemaErrors
    ) -> None:
        extra = s.get("additionalProperties")
        if extra is not None:
            if s.get("properties") and (extra is False or isinstance(extra, dict)):
                errs.schema.append(
                    forbidden(
                        child(path, "additionalProperties"), "additionalProperties and properties are mutual exclusive"
                    )
                )
            sub_ssv = (
                ssv.with_forbidden_defaults("inside additionalProperties applying to object metadata")
                if ssv.inside_resource_meta
                else ssv
            )
            if isinstance(extra, dict):
                errs.extend(
                    self.walk(
                        extra, child(path, "additionalProperties"), sub_ssv, False, ctx.child(extra) if ctx else None
                    )
                )
        for name, prop in (s.get("properties") or {}).items():
            sub_ssv = ssv
            if not _map_is_correlatable(s.get("x-kubernetes-map-type")):
                sub_ssv = sub_ssv.with_forbid_old_self(path)
            if (is_root or s.get("x-kubernetes-embedded-resource")) and name in META_FIELDS:
                sub_ssv = sub_ssv.with_inside_resource_meta()
                if is_root:
                    sub_ssv = sub_ssv.with_forbidden_defaults(f"in top-level {name}")
            errs.extend(
                self.walk(prop, key(child(path, "properties"), name), sub_ssv, False, ctx.child(prop) if ctx else None)
            )
        if isinstance(s.get("not"), dict):
            errs.extend(self.walk(s["not"], child(path, "not"), ssv, False, None))
        for name in ("allOf", "oneOf", "anyOf"):
            for i, sub in enumerate(s.get(name) or []):
                errs.extend(self.walk(sub, index(child(path, name), i), ssv, False, None))
        for name, sub in (s.get("definitions") or {}).items():
            errs.extend(self.walk(sub, key(child(path, "definitions"), name), ssv, False, None))
        items = s.get("items")
        if items is not None:
            # Items correlate between old and new only in map lists (sets are not correlated for CEL).
            sub_ssv = ssv if s.get("x-kubernetes-list-type") == "map" else ssv.with_forbid_old_self(path)
            if isinstance(items, dict):
                errs.extend(self.walk(items, child(path, "items"), sub_ssv, False, ctx.child(items) if ctx else None))
            elif isinstance(items, list):
                for i, sub in enumerate(items):
                    errs.extend(
                        self.walk(sub, index(child(path, "items"), i), sub_ssv, False, ctx.child(sub) if ctx else None)
                    )
        for name, sub in (s.get("dependencies") or {}).items():
            if isinstance(sub, dict):
                errs.extend(self.walk(sub, key(child(path, "dependencies"), name), ssv, False, None))

    def _standard(self, s: Schema, path: str, ssv: _Standard) -> list[FieldError]:
        """specStandardValidatorV3.validate: the OpenAPI v3 subset a CRD may use."""
        errs: list[FieldError] = []
        kind = s.get("type", "")
        if ssv.require_valid_property_type and kind and kind not in OPENAPI_V3_TYPES:
            errs.append(not_supported(child(path, "type"), kind, OPENAPI_V3_TYPES))
        if s.get("default") is not None and not ssv.allow_defaults:
            detail = "must not be set" + (f" {ssv.disallow_defaults_reason}" if ssv.disallow_defaults_reason else "")
            errs.append(forbidden(child(path, "default"), detail))
        checks = (
            ("id", bool(s.get("id")), "id is not supported"),
            ("additionalItems", s.get("additionalItems") is not None, "additionalItems is not supported"),
            ("patternProperties", bool(s.get("patternProperties")), "patternProperties is not supported"),
            ("definitions", bool(s.get("definitions")), "definitions is not supported"),
            ("dependencies", s.get("dependencies") is not None, "dependencies is not supported"),
            ("$ref", s.get("$ref") is not None, "$ref is not supported"),
            ("type", kind == "null", "type cannot be set to null, use nullable as an alternative"),
            (
                "items",
                isinstance(s.get("items"), list) and bool(s["items"]),
                "items must be a schema object and not an array",
            ),
            (
                "x-kubernetes-embedded-resource",
                ssv.inside_resource_meta and bool(s.get("x-kubernetes-embedded-resource")),
                "must not be used inside of resource meta",
            ),
        )
        errs.extend(forbidden(child(path, name), detail) for name, broken, detail in checks if broken)
        return errs

    def _cel(
        self, s: Schema, rules: list[dict[str, Any]], path: str, ssv: _Standard, ctx: CelContext
    ) -> list[FieldError]:
        where = child(path, "x-kubernetes-validations")
        decl = ctx.decl_type()
        if decl is None or self.envs is None or path not in self.envs.paths:
            detail = (
                "internal error: failed to construct type information for x-kubernetes-validations rules: "
                "unable to convert structural schema to CEL declarations"
            )
            return [internal(where, detail)]
        errs: list[FieldError] = []
        for i, rule in enumerate(rules):
            errs.extend(self._cel_rule(s, rule, index(where, i), decl, ssv, ctx, path))
        return errs

    def _cel_rule(
        self,
        s: Schema,
        rule: dict[str, Any],
        where: str,
        decl: DeclType,
        ssv: _Standard,
        ctx: CelContext,
        node_path: str,
    ) -> list[FieldError]:
        """compileRule and the checks around it in ValidateCustomResourceDefinitionOpenAPISchema."""
        text = rule.get("rule", "")
        if not text.strip():
            return []  # reported as "rule is not specified"
        assert self.envs is not None
        rule_path = child(where, "rule")
        try:
            return_type, checked = self.envs.compile(node_path, text)
        except CompileError as error:
            return [invalid(rule_path, rule, f"compilation failed: {error}")]
        if literal_error := literal_errors(checked):
            return [invalid(rule_path, rule, f"compilation failed: {literal_error}")]
        if return_type != cel.Type.BOOL:
            return [invalid(rule_path, rule, "cel expression must evaluate to a bool")]
        errs: list[FieldError] = []
        per_call = estimate_cost(checked, decl).max
        cost = expression_cost(per_call, ctx, decl)
        self.report.rule_costs[rule_path] = cost
        self.report.per_call_costs[rule_path] = per_call
        if cost > STATIC_ESTIMATED_COST_LIMIT:
            errs.append(
                forbidden(rule_path, cost_error_message("estimated rule cost", cost, STATIC_ESTIMATED_COST_LIMIT))
            )
        ctx.total.observe(rule_path, cost)
        errs.extend(self._message_expression(rule, where, node_path, decl, ctx))
        uses_old_self = "oldSelf" in checked.references.values()
        if uses_old_self and ssv.uncorrelatable_old_self_path is not None:
            detail = (
                "oldSelf cannot be used on the uncorrelatable portion of the schema within "
                f"{ssv.uncorrelatable_old_self_path}"
            )
            errs.append(invalid(rule_path, text, detail))
        elif not uses_old_self and rule.get("optionalOldSelf") is not None:
            errs.append(
                invalid(
                    child(where, "optionalOldSelf"),
                    rule["optionalOldSelf"],
                    "may not be set if oldSelf is not used in rule",
                )
            )
        return errs

    def _message_expression(
        self, rule: dict[str, Any], where: str, node_path: str, decl: DeclType, ctx: CelContext
    ) -> list[FieldError]:
        text = rule.get("messageExpression", "")
        if not text:
            return []
        assert self.envs is not None
        expr_path = child(where, "messageExpression")
        try:
            return_type, checked = self.envs.compile(node_path, text)
        except CompileError as error:
            return [invalid(expr_path, rule, f"messageExpression compilation failed: {error}")]
        if return_type != cel.Type.STRING:
            return [invalid(expr_path, rule, "messageExpression must evaluate to a string")]
        cost = estimate_cost(checked, decl).max  # not multiplied by cardinality (validation.go)
        self.report.rule_costs[expr_path] = cost
        errs = []
        if cost > STATIC_ESTIMATED_COST_LIMIT:
            errs.append(
                forbidden(
                    expr_path,
                    cost_error_message("estimated messageExpression cost", cost, STATIC_ESTIMATED_COST_LIMIT),
                )
            )
        ctx.total.observe(expr_path, cost)
        return errs


# --- validateCustomResourceDefinitionValidation ---------------------------------------------------


def validate_validation(
    validation: dict[str, Any] | None, status_enabled: bool, opts: Options, path: str, report: Report
) -> list[FieldError]:
    if not validation or validation.get("openAPIV3Schema") is None:
        return []
    schema: Schema = validation["openAPIV3Schema"]
    where = child(path, "openAPIV3Schema")
    errs: list[FieldError] = []
    if status_enabled:
        errs.extend(_validate_root_for_status(schema, path))
    if schema.get("nullable"):
        errs.append(forbidden(child(path, "openAPIV3Schema.nullable"), "nullable cannot be true at the root"))
    ctx: CelContext | None = None
    structural_init: list[FieldError] = []
    if opts.require_structural_schema:
        if error := new_structural_error(schema):
            structural_init.append(invalid(where, "", error))
        # Defaults are validated only for a structural schema, and CEL compiled only if both pass.
        elif found := validate_structural(where, schema) or validate_defaults(
            where, schema, opts.require_pruned_defaults
        ):
            errs.extend(found)
        else:
            ctx = CelContext(schema, True, 1, TotalCost())
    envs = _typed_environments(schema, where) if ctx is not None else None
    ssv = _Standard(allow_defaults=opts.allow_defaults, require_valid_property_type=opts.require_valid_property_type)
    result = _SchemaWalk(opts, envs, report).walk(schema, where, ssv, True, ctx)
    errs.extend(result.schema + result.cel)
    if not errs and structural_init:
        errs.extend(structural_init)  # these overlap with the walk's errors, so they come only alone
    if ctx is not None:
        report.total_cost = ctx.total.total
        if ctx.total.total > STATIC_ESTIMATED_CRD_COST_LIMIT:
            for expensive, _cost in ctx.total.most_expensive:
                errs.append(
                    forbidden(
                        expensive,
                        "contributed to estimated rule cost total exceeding cost limit for entire OpenAPIv3 schema",
                    )
                )
            message = cost_error_message(
                "x-kubernetes-validations estimated rule cost total for entire OpenAPIv3 schema",
                ctx.total.total,
                STATIC_ESTIMATED_CRD_COST_LIMIT,
            )
            errs.append(forbidden(where, message))
    return errs


def _validate_root_for_status(schema: Schema, path: str) -> list[FieldError]:
    """With the status subresource, the root may only say what survives extracting properties[status]."""
    for name in GO_FIELD:
        if not is_set(schema, name):
            continue
        go_name = GO_FIELD[name][0]
        if go_name == "Type":
            if schema["type"] != "object":
                return [
                    invalid(
                        child(path, "openAPIV3Schema.type"),
                        schema["type"],
                        'only "object" is allowed as the type at the root of the schema if the status subresource '
                        "is enabled",
                    )
                ]
            continue
        if go_name not in ROOT_ALLOWED:
            allowed = "[" + " ".join(ROOT_ALLOWED) + "]"
            return [
                invalid(
                    child(path, "openAPIV3Schema"),
                    {"<field>": name},
                    f"only {allowed} fields are allowed at the root of the schema if the status subresource is enabled",
                )
            ]
    return []


def _rule_nodes(schema: Schema, path: str, is_root: bool = True) -> Iterable[tuple[str, Schema, bool]]:
    """Every node of the structural part of the schema that carries x-kubernetes-validations."""
    if not isinstance(schema, dict):
        return
    if schema.get("x-kubernetes-validations"):
        yield path, schema, is_root
    for name, prop in (schema.get("properties") or {}).items():
        yield from _rule_nodes(prop, key(child(path, "properties"), name), False)
    if isinstance(schema.get("items"), dict):
        yield from _rule_nodes(schema["items"], child(path, "items"), False)
    if isinstance(schema.get("additionalProperties"), dict):
        yield from _rule_nodes(schema["additionalProperties"], child(path, "additionalProperties"), False)


def _typed_environments(schema: Schema, path: str) -> TypedEnvironments:
    decls = {}
    for node_path, node, is_root in _rule_nodes(schema, path):
        decl = schema_decl_type(node, is_root or bool(node.get("x-kubernetes-embedded-resource")))
        if decl is not None:
            decls[node_path] = decl
    return TypedEnvironments(decls)
