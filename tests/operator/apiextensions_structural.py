"""Structural schemas: what NewStructural and ValidateStructural refuse, and the helpers around them.

Sources (kubernetes/kubernetes, staging/src/k8s.io/apiextensions-apiserver/pkg/):
    apiserver/schema/convert.go      NewStructural / validateUnsupportedFields -> new_structural_error
    apiserver/schema/validation.go   ValidateStructural                        -> validate_structural
                                     validateStructuralInvariants              -> _Structural.invariants, _types
                                     validateStructuralMetadataInvariants      -> _Structural.metadata
                                     validateExtensions                        -> _Structural.extensions
                                     validateValueValidation                   -> _Structural.value_validation
                                     validateNestedValueValidation             -> _Structural.nested
    apiserver/schema/complete.go     validateStructuralCompleteness (the root's value validations only, as in Go)
                                                                               -> _Structural.completeness
    apiserver/schema/cel/validation.go  ValidFieldPath                         -> valid_field_path
    apis/apiextensions/validation/validation.go  pathValid, SchemaHas          -> path_valid, schema_has
The zero-value rules (is_set) follow Go: a JSON null is the zero value, an empty list is not.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from cel_expr_python import cel
from fielderrors import (
    FieldError,
    child,
    forbidden,
    index,
    invalid,
    key,
    required,
)

Schema = dict[str, Any]
META_FIELDS = frozenset({"metadata", "kind", "apiVersion"})


def spec_has(spec: dict[str, Any], pred: Any) -> bool:
    schemas = [(spec.get("validation") or {}).get("openAPIV3Schema")]
    schemas += [(v.get("schema") or {}).get("openAPIV3Schema") for v in spec["versions"]]
    return any(s is not None and schema_has(s, pred) for s in schemas)


def schema_has(schema: Any, pred: Any) -> bool:
    """validation.go SchemaHas: does any node of the schema satisfy pred."""
    if not isinstance(schema, dict):
        return False
    if pred(schema):
        return True
    return any(schema_has(sub, pred) for _where, sub in subschemas(schema))


def subschemas(schema: Schema) -> Iterable[tuple[str, Any]]:
    """Every schema nested in this one, with its path suffix."""
    items = schema.get("items")
    if isinstance(items, list):
        yield from ((f"items[{i}]", s) for i, s in enumerate(items))
    elif isinstance(items, dict):
        yield "items", items
    for name in ("allOf", "anyOf", "oneOf"):
        yield from ((f"{name}[{i}]", s) for i, s in enumerate(schema.get(name) or []))
    for name in ("not", "additionalProperties", "additionalItems"):
        if isinstance(schema.get(name), dict):
            yield name, schema[name]
    for name in ("properties", "patternProperties", "definitions", "dependencies"):
        yield from ((f"{name}[{k}]", s) for k, s in (schema.get(name) or {}).items() if isinstance(s, dict))


# --- valid field paths (cel/validation.go ValidFieldPath) -----------------------------------------

_FIELD_PATH_TOKEN = re.compile(r"'(?:[^'\\]|\\.)*'|[.\[\]]|[^.\[\]']+")


def valid_field_path(json_path: str, schema: Schema, allow_array_notation: bool = True) -> tuple[str, Schema]:
    """The normalized path (field.Path form: .field, [mapKey]) and the schema it names.

    ValueError with the API server's reason if the path is not valid for the schema."""
    tokens = _FIELD_PATH_TOKEN.findall(json_path)
    if "".join(tokens) != json_path:
        raise ValueError("invalid string literal")
    normalized = ""
    node = schema
    pos = 0
    while pos < len(tokens):
        token = tokens[pos]
        if token == "[" and allow_array_notation:
            if pos + 2 >= len(tokens):
                raise ValueError("unexpected end of JSON path")
            literal = tokens[pos + 1]
            if len(literal) < 2 or literal[0] != "'" or literal[-1] != "'":
                raise ValueError(f"expected single quoted string but got {literal}")
            name = re.sub(r"\\(.)", r"\1", literal[1:-1])
            if tokens[pos + 2] != "]":
                raise ValueError(f"expected ] but got {tokens[pos + 2]}")
            pos += 3
        elif token == ".":
            if pos + 1 >= len(tokens):
                raise ValueError("unexpected end of JSON path")
            name = tokens[pos + 1]
            pos += 2
        else:
            raise ValueError(f"expected [ or . but got: {token}")
        node, named = _field_path_step(node, name)
        normalized += f".{name}" if named else f"[{name}]"
    return normalized.lstrip("."), node


def _field_path_step(node: Schema, name: str) -> tuple[Schema, bool]:
    """The schema one step down, and whether the step named a property (else a map key)."""
    if node.get("properties") is not None:
        if name not in node["properties"]:
            raise ValueError("does not refer to a valid field")
        return node["properties"][name], True
    extra = node.get("additionalProperties")
    if extra is not None:
        return (extra if isinstance(extra, dict) else {}), False
    raise ValueError("does not refer to a valid field")


def path_valid(schema: Schema, field_path: str, structural: bool | None = None) -> bool:
    """pathValid: a schema NewStructural refuses accepts any path (that error is reported elsewhere)."""
    if structural is None:
        structural = new_structural_error(schema) is None
    if not structural:
        return True
    try:
        valid_field_path(field_path, schema)
    except ValueError:
        return False
    return True


# --- JSONSchemaProps zero values ----------------------------------------------------------------

# Internal JSONSchemaProps fields, by JSON name, and their Go kind (for "is it set" questions).
# fmt: off
GO_FIELD = {
    "id": ("ID", "string"), "$schema": ("Schema", "string"), "$ref": ("Ref", "pointer"),
    "description": ("Description", "string"), "type": ("Type", "string"), "format": ("Format", "string"),
    "title": ("Title", "string"), "default": ("Default", "pointer"), "maximum": ("Maximum", "pointer"),
    "exclusiveMaximum": ("ExclusiveMaximum", "bool"), "minimum": ("Minimum", "pointer"),
    "exclusiveMinimum": ("ExclusiveMinimum", "bool"), "maxLength": ("MaxLength", "pointer"),
    "minLength": ("MinLength", "pointer"), "pattern": ("Pattern", "string"), "maxItems": ("MaxItems", "pointer"),
    "minItems": ("MinItems", "pointer"), "uniqueItems": ("UniqueItems", "bool"),
    "multipleOf": ("MultipleOf", "pointer"), "enum": ("Enum", "slice"),
    "maxProperties": ("MaxProperties", "pointer"), "minProperties": ("MinProperties", "pointer"),
    "required": ("Required", "slice"), "items": ("Items", "pointer"), "allOf": ("AllOf", "slice"),
    "oneOf": ("OneOf", "slice"), "anyOf": ("AnyOf", "slice"), "not": ("Not", "pointer"),
    "properties": ("Properties", "slice"), "additionalProperties": ("AdditionalProperties", "pointer"),
    "patternProperties": ("PatternProperties", "slice"), "dependencies": ("Dependencies", "slice"),
    "additionalItems": ("AdditionalItems", "pointer"), "definitions": ("Definitions", "slice"),
    "externalDocs": ("ExternalDocs", "pointer"), "example": ("Example", "pointer"), "nullable": ("Nullable", "bool"),
    "x-kubernetes-preserve-unknown-fields": ("XPreserveUnknownFields", "pointer"),
    "x-kubernetes-embedded-resource": ("XEmbeddedResource", "bool"),
    "x-kubernetes-int-or-string": ("XIntOrString", "bool"), "x-kubernetes-list-map-keys": ("XListMapKeys", "slice"),
    "x-kubernetes-list-type": ("XListType", "pointer"), "x-kubernetes-map-type": ("XMapType", "pointer"),
    "x-kubernetes-validations": ("XValidations", "slice"),
}
# fmt: on

# fmt: off
ROOT_ALLOWED = (
    "Description", "Type", "Format", "Title", "Maximum", "ExclusiveMaximum", "Minimum", "ExclusiveMinimum",
    "MaxLength", "MinLength", "Pattern", "MaxItems", "MinItems", "UniqueItems", "MultipleOf", "Required", "Items",
    "Properties", "ExternalDocs", "Example", "XPreserveUnknownFields", "XValidations",
)
# fmt: on


def is_set(schema: Schema, name: str) -> bool:
    """Whether the internal JSONSchemaProps field is non-zero (JSON null decodes to the zero value)."""
    if name not in schema or schema[name] is None:
        return False
    kind = GO_FIELD.get(name, ("", "pointer"))[1]
    value = schema[name]
    if kind == "string":
        return value != ""
    if kind == "bool":
        return value is True
    return True  # pointers, and slices/maps decoded from JSON (even empty ones are not nil)


# --- structural schemas (schema/convert.go, validation.go, complete.go) ---------------------------


def new_structural_error(schema: Any) -> str | None:
    """NewStructural's error for a schema it cannot convert, else None."""
    if not isinstance(schema, dict):
        return None
    if schema.get("id"):
        return "OpenAPIV3Schema 'id' is not supported"
    if schema.get("$schema"):
        return "OpenAPIV3Schema 'schema' is not supported"
    if schema.get("$ref"):
        return "OpenAPIV3Schema '$ref' is not supported"
    if schema.get("patternProperties"):
        return "OpenAPIV3Schema 'patternProperties' is not supported"
    if schema.get("dependencies"):
        return "OpenAPIV3Schema 'dependencies' is not supported"
    if schema.get("additionalItems") is not None:
        return "OpenAPIV3Schema 'additionalItems' is not supported"
    if schema.get("definitions"):
        return "OpenAPIV3Schema 'definitions' is not supported"
    if schema.get("x-kubernetes-preserve-unknown-fields") is False:
        return "internal error: 'x-kubernetes-preserve-unknown-fields' must be true or undefined"
    if isinstance(schema.get("items"), list) and schema["items"]:
        return "OpenAPIV3Schema 'items' must be a schema, but is an array"
    for _where, sub in subschemas(schema):
        if error := new_structural_error(sub):
            return error
    return None


# Structural's Generic and Extensions fields are not allowed in value validations (NestedValueValidation).
_FORBIDDEN_IN_NESTED = (
    ("type", "must be empty to be structural"),
    ("default", "must be undefined to be structural"),
    ("title", "must be empty to be structural"),
    ("description", "must be empty to be structural"),
    ("nullable", "must be false to be structural"),
    ("x-kubernetes-preserve-unknown-fields", "must be false to be structural"),
    ("x-kubernetes-embedded-resource", "must be false to be structural"),
    ("x-kubernetes-int-or-string", "must be false to be structural"),
    ("x-kubernetes-list-map-keys", "must be empty to be structural"),
    ("x-kubernetes-list-type", "must be undefined to be structural"),
    ("x-kubernetes-map-type", "must be undefined to be structural"),
    ("x-kubernetes-validations", "must be empty to be structural"),
)
_INT_OR_STRING_ANY_OF = [{"type": "integer"}, {"type": "string"}]


def _structural_nonzero(schema: Schema, name: str) -> bool:
    """Whether the Structural field is non-zero: empty enum/allOf/anyOf/oneOf/properties are dropped."""
    if name in ("enum", "allOf", "anyOf", "oneOf", "properties"):
        return bool(schema.get(name))
    if name in ("default", "example"):
        return schema.get(name) is not None
    return is_set(schema, name)


class _Structural:
    """schema/validation.go ValidateStructural over a schema that NewStructural accepts."""

    def __init__(self) -> None:
        self.errs: list[FieldError] = []

    def invariants(self, s: Schema | None, level: str, path: str) -> None:
        """validateStructuralInvariants; level is root, item or field."""
        if not isinstance(s, dict):
            return
        if s.get("type") == "array" and s.get("items") is None:
            self.errs.append(required(child(path, "items"), "must be specified"))
        self.invariants(s.get("items"), "item", child(path, "items"))
        for name, prop in (s.get("properties") or {}).items():
            self.invariants(prop, "field", key(child(path, "properties"), name))
        if s.get("additionalProperties") is not None:
            if level == "root":
                self.errs.append(forbidden(child(path, "additionalProperties"), "must not be used at the root"))
            if isinstance(s["additionalProperties"], dict):
                self.invariants(s["additionalProperties"], "field", child(path, "additionalProperties"))
        self.extensions(s, path)
        skip_any_of = s.get("anyOf") == _INT_OR_STRING_ANY_OF
        all_of = s.get("allOf") or []
        skip_first_all_of_any_of = (
            bool(all_of) and isinstance(all_of[0], dict) and all_of[0].get("anyOf") == _INT_OR_STRING_ANY_OF
        )
        self.value_validation(s, skip_any_of, skip_first_all_of_any_of, path)
        self._types(s, level, path)
        check_metadata = level == "root" or bool(s.get("x-kubernetes-embedded-resource"))
        props = s.get("properties") or {}
        for name in ("kind", "apiVersion"):
            if name in props and check_metadata and props[name].get("type") != "string":
                self.errs.append(
                    invalid(
                        child(key(child(path, "properties"), name), "type"),
                        props[name].get("type", ""),
                        "must be string",
                    )
                )
        if "metadata" in props:
            self.metadata(props["metadata"], check_metadata, level, key(child(path, "properties"), "metadata"))
        embedded = bool(s.get("x-kubernetes-embedded-resource"))
        if embedded and not s.get("x-kubernetes-preserve-unknown-fields") and not props:
            self.errs.append(
                required(
                    child(path, "properties"),
                    "must not be empty if x-kubernetes-embedded-resource is true without "
                    "x-kubernetes-preserve-unknown-fields",
                )
            )

    def _types(self, s: Schema, level: str, path: str) -> None:
        kind = s.get("type", "")
        embedded = bool(s.get("x-kubernetes-embedded-resource"))
        if embedded and kind != "object":
            detail = "must be object if x-kubernetes-embedded-resource is true"
            self.errs.append(
                invalid(child(path, "type"), kind, detail) if kind else required(child(path, "type"), detail)
            )
        elif not kind and not s.get("x-kubernetes-int-or-string") and not s.get("x-kubernetes-preserve-unknown-fields"):
            detail = {
                "root": "must not be empty at the root",
                "item": "must not be empty for specified array items",
            }.get(level, "must not be empty for specified object fields")
            self.errs.append(required(child(path, "type"), detail))
        if embedded and s.get("additionalProperties") is not None:
            self.errs.append(
                forbidden(
                    child(path, "additionalProperties"), "must not be used if x-kubernetes-embedded-resource is set"
                )
            )
        if level == "root" and kind and kind != "object":
            self.errs.append(invalid(child(path, "type"), kind, "must be object at the root"))

    def metadata(self, s: Schema, check_metadata: bool, level: str, path: str) -> None:
        """validateStructuralMetadataInvariants: at the root, metadata may only constrain name and generateName."""
        if check_metadata and s.get("type") != "object":
            self.errs.append(invalid(child(path, "type"), s.get("type", ""), "must be object"))
        if level != "root":
            return
        props = s.get("properties") or {}
        names = {"name", "generateName"} & set(props)
        rest = {k: v for k, v in s.items() if k in GO_FIELD and k not in ("type", "default")}
        if names and len(props) == len(names):
            rest.pop("properties", None)
        if any(_structural_nonzero(rest, k) for k in rest):
            self.errs.append(
                forbidden(
                    path,
                    "must not specify anything other than name and generateName, but metadata is implicitly specified",
                )
            )

    def extensions(self, s: Schema, path: str) -> None:
        """validateExtensions."""
        if s.get("x-kubernetes-int-or-string") and s.get("x-kubernetes-preserve-unknown-fields"):
            self.errs.append(
                invalid(
                    child(path, "x-kubernetes-preserve-unknown-fields"),
                    True,
                    "must be false if x-kubernetes-int-or-string is true",
                )
            )
        if s.get("x-kubernetes-int-or-string") and s.get("x-kubernetes-embedded-resource"):
            self.errs.append(
                invalid(
                    child(path, "x-kubernetes-embedded-resource"),
                    True,
                    "must be false if x-kubernetes-int-or-string is true",
                )
            )

    def value_validation(self, v: Schema, skip_any_of: bool, skip_first_all_of_any_of: bool, path: str) -> None:
        """validateValueValidation: value validations may not say anything structural."""
        if not skip_any_of:
            for i, sub in enumerate(v.get("anyOf") or []):
                self.nested(sub, False, index(child(path, "anyOf"), i))
        for i, sub in enumerate(v.get("allOf") or []):
            self.nested(sub, skip_first_all_of_any_of and i == 0, index(child(path, "allOf"), i))
        for i, sub in enumerate(v.get("oneOf") or []):
            self.nested(sub, False, index(child(path, "oneOf"), i))
        if isinstance(v.get("not"), dict):
            self.nested(v["not"], False, child(path, "not"))
        if v.get("pattern"):
            error = re2_error(v["pattern"])
            if error:
                self.errs.append(
                    invalid(
                        child(path, "pattern"), v["pattern"], f"must be a valid regular expression, but isn't: {error}"
                    )
                )

    def nested(self, v: Schema, skip_any_of: bool, path: str) -> None:
        """validateNestedValueValidation."""
        if not isinstance(v, dict):
            return
        self.value_validation(v, skip_any_of, False, path)
        if isinstance(v.get("items"), dict):
            self.nested(v["items"], False, child(path, "items"))
        for name, prop in (v.get("properties") or {}).items():
            self.nested(prop, False, key(child(path, "properties"), name))
        for name, detail in _FORBIDDEN_IN_NESTED:
            if _structural_nonzero(v, name):
                self.errs.append(forbidden(child(path, name), detail))
        if v.get("additionalProperties") is not None and v.get("additionalProperties") is not False:
            self.errs.append(forbidden(child(path, "additionalProperties"), "must be undefined to be structural"))
        if "metadata" in (v.get("properties") or {}):
            self.errs.append(
                forbidden(key(child(path, "properties"), "metadata"), "must not be specified in a nested context")
            )

    def completeness(self, s: Schema, path: str) -> None:
        """validateStructuralCompleteness: what a value validation names must exist in the structure."""
        self._value_completeness(s, s, path, path)

    def _value_completeness(self, v: Schema, s: Schema | None, s_path: str, v_path: str) -> None:
        if s is None:
            self.errs.append(required(s_path, f"because it is defined in {v_path}"))
            return
        if isinstance(v.get("not"), dict):
            self._nested_completeness(v["not"], s, s_path, child(v_path, "not"))
        for name in ("allOf", "anyOf", "oneOf"):
            for i, sub in enumerate(v.get(name) or []):
                self._nested_completeness(sub, s, s_path, index(child(v_path, name), i))

    def _nested_completeness(self, v: Schema, s: Schema | None, s_path: str, v_path: str) -> None:
        if not isinstance(v, dict):
            return
        if s is None:
            self.errs.append(required(s_path, f"because it is defined in {v_path}"))
            return
        self._value_completeness(v, s, s_path, v_path)
        if isinstance(v.get("items"), dict):
            items = s.get("items") if isinstance(s.get("items"), dict) else None
            self._nested_completeness(v["items"], items, child(s_path, "items"), child(v_path, "items"))
        for name, sub in (v.get("properties") or {}).items():
            s_props = s.get("properties") or {}
            if name not in s_props:
                self.errs.append(
                    required(
                        key(child(s_path, "properties"), name),
                        f"because it is defined in {key(child(v_path, 'properties'), name)}",
                    )
                )
            else:
                self._nested_completeness(
                    sub, s_props[name], key(child(s_path, "properties"), name), key(child(v_path, "properties"), name)
                )


def validate_structural(path: str, schema: Schema) -> list[FieldError]:
    """ValidateStructural (AllowNested* options false, as for CRDs)."""
    checker = _Structural()
    checker.invariants(schema, "root", path)
    checker.completeness(schema, path)
    return sorted(checker.errs, key=str)


_RE2_ENV = cel.NewEnv(variables={"pattern": cel.Type.STRING})
_RE2_CHECK = _RE2_ENV.compile("''.matches(pattern)")


def re2_error(pattern: str) -> str | None:
    """The RE2 error for a pattern (Go's regexp and CEL's matches() are both RE2), else None."""
    result = _RE2_CHECK.eval(data={"pattern": pattern})
    if result.type() == cel.Type.BOOL:
        return None
    return re.sub(r"^[A-Z_]+: ", "", str(result.value()))
