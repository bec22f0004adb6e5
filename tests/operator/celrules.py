"""Evaluate a CRD's `x-kubernetes-validations` rules the way the API server does.

The CEL engine is cel-expr-python (the CEL C++ implementation, RE2 regular
expressions, as cel-go in the API server). Around it, this module reproduces what
Kubernetes adds, so that a rule's verdict here is its verdict on `kubectl apply`:

* a rule runs at its schema node, once per value found there (every list item, every
  map value), with `self` bound to that value;
* values are seen through the schema: defaults applied first (the API server defaults
  before it validates), untyped fields (`x-kubernetes-preserve-unknown-fields` without a
  type, such as spec.lora) invisible, and an object with unknown fields but no declared
  properties (spec.trainingArgs) an empty object;
* a rule that names `oldSelf` is a transition rule: it runs only on update, and only
  where an old value correlates with the new one (object properties, map values, items
  of `x-kubernetes-list-type: map` lists); otherwise it is skipped;
* compiling also checks what the API server's type check would catch and a plain CEL
  environment would not: every `self.a.b` / `oldSelf.a.b` must name a declared,
  typed field, and every `matches()` pattern must be a valid RE2 expression.

No rule uses a Kubernetes-only library function (isURL, quantity, ...): the environment
is standard CEL, so a rule that starts to use one fails to compile here, loudly, and the
function then needs an implementation in this module.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from cel_expr_python import cel

Schema = dict[str, Any]
# One step from a schema node to a child: ("properties", name), ("items", ""), ("additionalProperties", "").
Step = tuple[str, str]

_ENV = cel.NewEnv(variables={"self": cel.Type.DYN, "oldSelf": cel.Type.DYN})
_STRING_LITERAL = re.compile(r"'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"")
# Field selections after self/oldSelf; a name followed by "(" is a method call, not a field.
_FIELD_REFERENCE = re.compile(r"\b(self|oldSelf)((?:\.[A-Za-z_][A-Za-z0-9_]*(?![A-Za-z0-9_]|\s*\())+)")
_MATCHES_LITERAL = re.compile(r"\.matches\(\s*('(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\")\s*\)")
_MISSING = object()


class RuleCompileError(AssertionError):
    """A rule the API server would refuse when the CRD is applied."""


@dataclass(frozen=True)
class Rule:
    path: str  # where the rule sits, e.g. "spec.env[].valueFrom"
    steps: tuple[Step, ...]  # how to get there from the root schema
    node: Schema  # the schema node carrying the rule
    rule: str
    message: str
    field_path: str | None

    @property
    def transition(self) -> bool:
        # String literals stripped: only the identifier makes a transition rule.
        return re.search(r"\boldSelf\b", _STRING_LITERAL.sub("''", self.rule)) is not None

    def __str__(self) -> str:
        return f"{self.path or '<root>'}: {self.rule}"


@dataclass(frozen=True)
class Violation:
    path: str  # the value's path, e.g. "spec.env[2]"
    rule: str
    message: str


def collect_rules(root: Schema) -> list[Rule]:
    rules: list[Rule] = []
    for path, steps, node in _walk(root, "", ()):
        for entry in node.get("x-kubernetes-validations", []):
            rules.append(Rule(path, steps, node, entry["rule"], entry["message"], entry.get("fieldPath")))
    return rules


def _walk(node: Schema, path: str, steps: tuple[Step, ...]) -> Iterator[tuple[str, tuple[Step, ...], Schema]]:
    yield path, steps, node
    for name, child in (node.get("properties") or {}).items():
        yield from _walk(child, f"{path}.{name}" if path else name, (*steps, ("properties", name)))
    if isinstance(node.get("items"), dict):
        yield from _walk(node["items"], f"{path}[]", (*steps, ("items", "")))
    if isinstance(node.get("additionalProperties"), dict):
        yield from _walk(node["additionalProperties"], f"{path}{{}}", (*steps, ("additionalProperties", "")))


def _visible(schema: Schema) -> bool:
    """Whether CEL sees a field with this schema (Kubernetes drops untyped ones from the type)."""
    return "type" in schema or bool(schema.get("x-kubernetes-int-or-string"))


def _child_schema(schema: Schema, name: str) -> Schema | None:
    props = schema.get("properties")
    if props is not None:
        child = props.get(name)
        return child if child is not None and _visible(child) else None
    extra = schema.get("additionalProperties")
    return extra if isinstance(extra, dict) else None  # a map: any key selects a value


def compile_rule(rule: Rule) -> Any:
    """The compiled program; RuleCompileError when the API server would refuse the rule."""
    try:
        program = _ENV.compile(rule.rule)
    except RuntimeError as error:
        raise RuleCompileError(f"{rule}: {error}") from None
    for _var, fields in _FIELD_REFERENCE.findall(_STRING_LITERAL.sub("''", rule.rule)):
        schema: Schema | None = rule.node
        for name in fields.lstrip(".").split("."):
            schema = _child_schema(schema, name) if schema is not None else None
            if schema is None:
                raise RuleCompileError(f"{rule}: undefined field {name!r} (not a typed field of the schema)")
    for literal in _MATCHES_LITERAL.findall(rule.rule):
        # Kubernetes compiles constant patterns with the CRD; an invalid one is refused there.
        checked = _ENV.compile(f"''.matches({literal})").eval(data={})
        if checked.type() != cel.Type.BOOL:
            raise RuleCompileError(f"{rule}: pattern {literal}: {checked}")
    if rule.field_path is not None:
        schema = rule.node
        for name in rule.field_path.lstrip(".").split("."):
            schema = _child_schema(schema, name) if schema is not None else None
        if schema is None:
            raise RuleCompileError(f"{rule}: fieldPath {rule.field_path} names no field of the schema")
    return program


def apply_defaults(value: Any, schema: Schema) -> Any:
    """A copy of value with the schema's defaults filled in, as the API server does."""
    value = copy.deepcopy(value)
    _default_in_place(value, schema)
    return value


def _default_in_place(value: Any, schema: Schema) -> None:
    if isinstance(value, dict):
        for name, child in (schema.get("properties") or {}).items():
            if name not in value and "default" in child:
                value[name] = copy.deepcopy(child["default"])
            if name in value:
                _default_in_place(value[name], child)
        if isinstance(schema.get("additionalProperties"), dict):
            for item in value.values():
                _default_in_place(item, schema["additionalProperties"])
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for item in value:
            _default_in_place(item, schema["items"])


def cel_value(value: Any, schema: Schema) -> Any:
    """The value as a rule sees it through its schema."""
    if isinstance(value, dict):
        if "properties" in schema:
            return {
                name: cel_value(item, schema["properties"][name])
                for name, item in value.items()
                if name in schema["properties"] and _visible(schema["properties"][name])
            }
        if isinstance(schema.get("additionalProperties"), dict):
            return {key: cel_value(item, schema["additionalProperties"]) for key, item in value.items()}
        return {}  # unknown fields only: Kubernetes shows an empty object
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [cel_value(item, schema["items"]) for item in value]
    return value


def _instances(
    value: Any, old: Any, schema: Schema, steps: tuple[Step, ...], path: str
) -> Iterator[tuple[str, Any, Any, Schema]]:
    """(path, new value, correlated old value or _MISSING, schema) at the end of steps."""
    if not steps:
        yield path, value, old, schema
        return
    (kind, name), rest = steps[0], steps[1:]
    if kind == "properties":
        if isinstance(value, dict) and name in value:
            old_child = old.get(name, _MISSING) if isinstance(old, dict) else _MISSING
            yield from _instances(
                value[name], old_child, schema["properties"][name], rest, f"{path}.{name}".lstrip(".")
            )
    elif kind == "additionalProperties":
        if isinstance(value, dict):
            for key, item in value.items():
                old_item = old.get(key, _MISSING) if isinstance(old, dict) else _MISSING
                yield from _instances(item, old_item, schema["additionalProperties"], rest, f"{path}[{key!r}]")
    elif isinstance(value, list):
        items = schema["items"]
        keys = schema.get("x-kubernetes-list-map-keys") if schema.get("x-kubernetes-list-type") == "map" else None
        for index, item in enumerate(value):
            old_item: Any = _MISSING
            if keys and isinstance(old, list):
                # Only map-type lists correlate old and new items (by their keys); others are atomic.
                matches = [o for o in old if all(o.get(k) == item.get(k) for k in keys)]
                old_item = matches[0] if matches else _MISSING
            yield from _instances(item, old_item, items, rest, f"{path}[{index}]")


class Validator:
    """All rules of one structural schema, compiled once."""

    def __init__(self, root: Schema) -> None:
        self.root = root
        self.rules = collect_rules(root)
        self.programs = [compile_rule(rule) for rule in self.rules]

    def violations(self, obj: dict[str, Any], old: dict[str, Any] | None = None) -> list[Violation]:
        """What the API server would refuse: a create (old None) or an update from old to obj."""
        new = apply_defaults(obj, self.root)
        previous: Any = apply_defaults(old, self.root) if old is not None else _MISSING
        found: list[Violation] = []
        for rule, program in zip(self.rules, self.programs, strict=True):
            for path, value, old_value, schema in _instances(new, previous, self.root, rule.steps, ""):
                data = {"self": cel_value(value, schema)}
                if rule.transition:
                    if old_value is _MISSING:
                        continue  # create, or nothing to compare with: transition rules are skipped
                    data["oldSelf"] = cel_value(old_value, schema)
                result = program.eval(data=data)
                if result.type() != cel.Type.BOOL:
                    # An evaluation error rejects the request too, with the error as message.
                    found.append(Violation(path, rule.rule, f"evaluation error: {result}"))
                elif not result.value():
                    found.append(Violation(path, rule.rule, rule.message))
        return found
