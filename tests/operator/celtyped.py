"""Compile x-kubernetes-validations rules against the schema's types, as kube-apiserver does.

celrules.py evaluates rules with `self` as an untyped (dyn) value. When a CRD is created,
the API server compiles each rule against a *typed* declaration of its schema node, so a
rule that compares a string with an int, names a field that is not declared, or does not
return a bool is refused. This module reproduces that compile step:

* `schema_decl_type` ports `SchemaDeclType` (k8s.io/apiserver/pkg/cel/common/schemas.go)
  and the DeclType sizes it carries (`MaxElements`, `MinSerializedSize`, from
  k8s.io/apiserver/pkg/cel/types.go and limits.go), which the cost estimate reads;
* `escape` ports `Escape` (k8s.io/apiserver/pkg/cel/escaping.go): property names are
  seen in CEL under their escaped names, unescapable ones not at all;
* the DeclType tree becomes protobuf message types (descriptors written by hand below;
  the project has no protobuf Python package), which cel-expr-python's checker (CEL C++,
  the same language definition as cel-go) uses to type-check;
* the checked AST (types, overload ids) comes back through celchecked.decode_checked, for
  the cost estimate in celcost.py.

Approximated: protobuf has no list of lists, map of lists, list of maps or map of maps; such
values are typed as google.protobuf.ListValue / Struct (list(dyn) / map(string, dyn)) inside
a message, so operations on their elements are checked at runtime only. A rule whose `self`
is such a value is typed exactly (variable types can nest). An object with no declared
field (only unknown fields) gets one placeholder field, because the C++ checker refuses an
empty message type as a variable type. The environment is standard CEL: the Kubernetes
libraries (strings ext, lists, regex, url, quantity, ip/cidr, format, semver, ...) are not
declared, so a rule that uses one fails to compile here; celrules.py has the same limit.
"""

from __future__ import annotations

import contextlib
import re
import sys
import types
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from cel_expr_python import cel
from celchecked import CheckedExpr, decode_checked

Schema = dict[str, Any]

# k8s.io/apiserver/pkg/cel/limits.go and k8s.io/apiserver/pkg/apis/cel/config.go
MAX_REQUEST_SIZE_BYTES = 3 * 1024 * 1024
MAX_DURATION_SIZE_JSON = 32
MAX_DATETIME_SIZE_JSON = 32
MIN_DURATION_SIZE_JSON = 3
JSON_DATE_SIZE = 12
MIN_DATETIME_SIZE_JSON = 21
MIN_STRING_SIZE = 2
MIN_BOOL_SIZE = 4
MIN_NUMBER_SIZE = 1


@dataclass(eq=False)
class DeclField:
    name: str  # escaped CEL name
    type: DeclType
    required: bool


@dataclass(eq=False)
class DeclType:
    """k8s.io/apiserver/pkg/cel/types.go DeclType: a CEL type plus worst-case sizes."""

    name: str  # object, list, map, string, bytes, int, double, bool, timestamp, duration, dyn
    fields: dict[str, DeclField] | None = None  # objects only
    key: DeclType | None = None  # maps only
    elem: DeclType | None = None  # lists and maps
    max_elements: int = 0
    min_serialized_size: int = 0

    @property
    def is_object(self) -> bool:
        return self.fields is not None


def _scalar(name: str, min_size: int, max_elements: int = 0) -> DeclType:
    return DeclType(name, max_elements=max_elements, min_serialized_size=min_size)


# The shared StringType used as every map's key type: MaxElements 0 (types.go).
STRING_KEY = _scalar("string", MIN_STRING_SIZE)

# celReservedSymbols (escaping.go)
# fmt: off
CEL_RESERVED = frozenset({
    "true", "false", "null", "in", "as", "break", "const", "continue", "else", "for", "function", "if", "import",
    "let", "loop", "package", "namespace", "return", "var", "void", "while",
})
# fmt: on
_EXPAND = re.compile(r"(__|[-./]|[^a-zA-Z0-9\-./_])")


def escape(ident: str) -> str | None:
    """escaping.go Escape: the CEL name of a property, or None where CEL cannot name it."""
    if not ident or ident[0].isdigit():
        return None
    if ident in CEL_RESERVED:
        return f"__{ident}__"
    ok = True

    def replace(match: re.Match[str]) -> str:
        nonlocal ok
        token = match.group(0)
        table = {"__": "__underscores__", ".": "__dot__", "-": "__dash__", "/": "__slash__"}
        if token not in table:
            ok = False
            return ""
        return table[token]

    escaped = _EXPAND.sub(replace, ident)
    return escaped if ok else None


def with_type_and_object_meta(schema: Schema) -> Schema:
    """schemas.go WithTypeAndObjectMeta: kind, apiVersion, metadata.name/generateName are always visible."""
    props = schema.get("properties") or {}
    meta = props.get("metadata", {})
    meta_props = meta.get("properties") or {}
    if (
        props.get("kind", {}).get("type") == "string"
        and props.get("apiVersion", {}).get("type") == "string"
        and meta.get("type") == "object"
        and meta_props.get("name", {}).get("type") == "string"
        and meta_props.get("generateName", {}).get("type") == "string"
    ):
        return schema
    string = {"type": "string"}
    props = {
        **props,
        "kind": string,
        "apiVersion": string,
        "metadata": {"type": "object", "properties": {"name": string, "generateName": string}},
    }
    return {**schema, "properties": props}


def _max_items_estimate(min_size: int) -> int:
    return (MAX_REQUEST_SIZE_BYTES - 2) // (min_size + 1)  # estimateMaxArrayItemsFromMinSize


def _max_properties_estimate(min_size: int) -> int:
    return (MAX_REQUEST_SIZE_BYTES - 2) // (min_size + 6)  # estimateMaxAdditionalPropertiesFromMinSize


def _zero_if_negative(value: int) -> int:
    return max(0, int(value))


def _string_decl(schema: Schema) -> DeclType:
    fmt = schema.get("format")
    if fmt == "byte":
        max_len = schema.get("maxLength")
        limit = _zero_if_negative(max_len) if max_len is not None else MAX_REQUEST_SIZE_BYTES - 2
        return _scalar("bytes", MIN_STRING_SIZE, limit)
    if fmt == "duration":
        return _scalar("duration", MIN_DURATION_SIZE_JSON, MAX_DURATION_SIZE_JSON)
    if fmt == "date":
        return _scalar("timestamp", JSON_DATE_SIZE, JSON_DATE_SIZE)
    if fmt == "date-time":
        return _scalar("timestamp", MIN_DATETIME_SIZE_JSON, MAX_DATETIME_SIZE_JSON)
    if schema.get("maxLength") is not None:
        # maxLength counts code points; a code point is up to 4 bytes of request.
        return _scalar("string", MIN_STRING_SIZE, _zero_if_negative(schema["maxLength"]) * 4)
    if schema.get("enum"):
        longest = max((len(v) for v in schema["enum"] if isinstance(v, str)), default=0)
        return _scalar("string", MIN_STRING_SIZE, longest)
    return _scalar("string", MIN_STRING_SIZE, MAX_REQUEST_SIZE_BYTES - 2)


def schema_decl_type(schema: Schema | None, is_resource_root: bool) -> DeclType | None:
    """schemas.go SchemaDeclType: the CEL declaration of a structural schema, None if CEL cannot see it."""
    if schema is None:
        return None
    if schema.get("x-kubernetes-int-or-string"):
        return _scalar("dyn", 1, MAX_REQUEST_SIZE_BYTES - 2)
    if is_resource_root:
        schema = with_type_and_object_meta(schema)
    kind = schema.get("type")
    if kind == "array":
        items = schema.get("items")
        if not isinstance(items, dict):
            return None
        item_type = schema_decl_type(items, bool(items.get("x-kubernetes-embedded-resource")))
        if item_type is None:
            return None
        max_items = schema.get("maxItems")
        limit = (
            _zero_if_negative(max_items)
            if max_items is not None
            else _max_items_estimate(item_type.min_serialized_size)
        )
        return DeclType("list", elem=item_type, max_elements=limit, min_serialized_size=2)
    if kind == "object":
        return _object_decl(schema)
    if kind == "string":
        return _string_decl(schema)
    simple = {
        "boolean": ("bool", MIN_BOOL_SIZE),
        "number": ("double", MIN_NUMBER_SIZE),
        "integer": ("int", MIN_NUMBER_SIZE),
    }
    if kind in simple:
        return _scalar(*simple[kind])
    return None


def _object_decl(schema: Schema) -> DeclType | None:
    extra = schema.get("additionalProperties")
    if isinstance(extra, dict):
        value_type = schema_decl_type(extra, bool(extra.get("x-kubernetes-embedded-resource")))
        if value_type is None:
            return None
        max_props = schema.get("maxProperties")
        limit = (
            _zero_if_negative(max_props)
            if max_props is not None
            else _max_properties_estimate(value_type.min_serialized_size)
        )
        return DeclType("map", key=STRING_KEY, elem=value_type, max_elements=limit, min_serialized_size=2)
    required = set(schema.get("required") or [])
    fields: dict[str, DeclField] = {}
    min_size = 2  # {}
    for name, prop in (schema.get("properties") or {}).items():
        field_type = schema_decl_type(prop, bool(prop.get("x-kubernetes-embedded-resource")))
        if field_type is None:
            continue
        escaped = escape(name)
        if escaped is not None:
            fields[escaped] = DeclField(escaped, field_type, name in required)
        # Defaulted properties are filled in server-side, so they do not count.
        if name in required and "default" not in prop:
            min_size += len(name) + field_type.min_serialized_size + 4
    return DeclType("object", fields=fields, min_serialized_size=min_size)


# --- protobuf descriptors, encoded by hand -------------------------------------------------

PACKAGE = "crd"
_PLACEHOLDER_FIELD = "__no_declared_fields__"
_WKT = {
    "timestamp": ".google.protobuf.Timestamp",
    "duration": ".google.protobuf.Duration",
    "dyn": ".google.protobuf.Value",
}
_WKT_FILES = ("google/protobuf/timestamp.proto", "google/protobuf/duration.proto", "google/protobuf/struct.proto")
_PROTO_SCALAR = {"string": 9, "bytes": 12, "int": 3, "double": 1, "bool": 8}  # FieldDescriptorProto.Type
_TYPE_MESSAGE = 11
_LABEL_OPTIONAL, _LABEL_REPEATED = 1, 3


def _varint(value: int) -> bytes:
    value &= (1 << 64) - 1
    out = bytearray()
    while True:
        low = value & 0x7F
        value >>= 7
        if value:
            out.append(low | 0x80)
        else:
            out.append(low)
            return bytes(out)


def _tag(number: int, wire: int) -> bytes:
    return _varint((number << 3) | wire)


def _bytes_field(number: int, data: bytes | str) -> bytes:
    raw = data.encode() if isinstance(data, str) else data
    return _tag(number, 2) + _varint(len(raw)) + raw


def _int_field(number: int, value: int) -> bytes:
    return _tag(number, 0) + _varint(value)


def _field_proto(name: str, number: int, label: int, kind: int, type_name: str | None = None) -> bytes:
    out = _bytes_field(1, name) + _int_field(3, number) + _int_field(4, label) + _int_field(5, kind)
    return out + (_bytes_field(6, type_name) if type_name else b"")


def _camel(name: str) -> str:
    """protobuf's ToCamelCase(name, lower_first=false)."""
    out, upper = [], True
    for char in name:
        if char == "_":
            upper = True
        elif upper:
            out.append(char.upper())
            upper = False
        else:
            out.append(char)
    return "".join(out)


class _Descriptors:
    """Message types for every object DeclType reachable from the ones registered."""

    def __init__(self) -> None:
        self._names: dict[int, str] = {}
        self._messages: list[bytes] = []

    def message_name(self, decl: DeclType, hint: str) -> str:
        if id(decl) in self._names:
            return self._names[id(decl)]
        name = f"T{len(self._names)}_{re.sub(r'[^A-Za-z0-9]', '_', hint)[:40]}"
        self._names[id(decl)] = name
        self._messages.append(self._message(name, decl, hint))
        return name

    def _message(self, name: str, decl: DeclType, hint: str) -> bytes:
        fields, nested = [], []
        for number, (field_name, decl_field) in enumerate(sorted((decl.fields or {}).items()), start=1):
            fields.append(self._field(field_name, number, decl_field.type, f"{hint}.{field_name}", name, nested))
        if not fields:
            fields.append(_field_proto(_PLACEHOLDER_FIELD, 1, _LABEL_OPTIONAL, 8))
        body = _bytes_field(1, name) + b"".join(_bytes_field(2, f) for f in fields)
        return body + b"".join(_bytes_field(3, n) for n in nested)

    def _element_type(self, decl: DeclType, hint: str) -> tuple[int, str | None]:
        """Proto type of a list item or map value (which protobuf cannot nest)."""
        if decl.name == "list":
            return _TYPE_MESSAGE, ".google.protobuf.ListValue"
        if decl.name == "map":
            return _TYPE_MESSAGE, ".google.protobuf.Struct"
        return self._scalar_or_message(decl, hint)

    def _scalar_or_message(self, decl: DeclType, hint: str) -> tuple[int, str | None]:
        if decl.is_object:
            return _TYPE_MESSAGE, f".{PACKAGE}.{self.message_name(decl, hint)}"
        if decl.name in _WKT:
            return _TYPE_MESSAGE, _WKT[decl.name]
        return _PROTO_SCALAR[decl.name], None

    def _field(self, name: str, number: int, decl: DeclType, hint: str, owner: str, nested: list[bytes]) -> bytes:
        if decl.name == "list":
            kind, type_name = self._element_type(decl.elem, f"{hint}.items")  # type: ignore[arg-type]
            return _field_proto(name, number, _LABEL_REPEATED, kind, type_name)
        if decl.name == "map":
            entry = _camel(name) + "Entry"  # the name protobuf requires of a map entry type
            kind, type_name = self._element_type(decl.elem, f"{hint}.values")  # type: ignore[arg-type]
            entry_fields = [
                _field_proto("key", 1, _LABEL_OPTIONAL, 9),
                _field_proto("value", 2, _LABEL_OPTIONAL, kind, type_name),
            ]
            options = _bytes_field(7, _int_field(7, 1))  # MessageOptions.map_entry = true
            nested.append(_bytes_field(1, entry) + b"".join(_bytes_field(2, f) for f in entry_fields) + options)
            return _field_proto(name, number, _LABEL_REPEATED, _TYPE_MESSAGE, f".{PACKAGE}.{owner}.{entry}")
        kind, type_name = self._scalar_or_message(decl, hint)
        return _field_proto(name, number, _LABEL_OPTIONAL, kind, type_name)

    def file(self) -> bytes:
        deps = b"".join(_bytes_field(3, dep) for dep in _WKT_FILES)
        messages = b"".join(_bytes_field(4, m) for m in self._messages)
        return _bytes_field(1, "crd.proto") + _bytes_field(2, PACKAGE) + deps + messages + _bytes_field(12, "proto2")


@dataclass
class _File:
    serialized_pb: bytes
    name: str = "crd.proto"


class _Pool:
    """The duck-typed descriptor pool cel-expr-python reads (FindFileContainingSymbol/FindFileByName)."""

    def __init__(self, serialized: bytes) -> None:
        self._file = _File(serialized)

    def FindFileContainingSymbol(self, symbol: str) -> _File:
        if symbol == PACKAGE or symbol.startswith(PACKAGE + "."):
            return self._file
        raise KeyError(symbol)

    def FindFileByName(self, name: str) -> _File:
        if name == self._file.name:
            return self._file
        raise KeyError(name)

    def FindExtensionByNumber(self, *args: Any) -> Any:
        raise KeyError(args)

    def FindMessageTypeByName(self, name: str) -> Any:
        raise KeyError(name)


def _no_message_classes(*_args: Any) -> Any:
    raise RuntimeError("no protobuf Python package: CEL values here are never Python messages")


@contextlib.contextmanager
def _protobuf_module_for_cel() -> Iterator[None]:
    """cel-expr-python imports google.protobuf.message_factory when given a descriptor pool.

    The checker never builds a Python message, so where protobuf is not installed an empty
    stand-in is enough while the environment is created; it is removed again at once so
    that no other import sees it.
    """
    try:
        import google.protobuf.message_factory  # noqa: F401
    except ImportError:
        pass
    else:
        yield
        return
    added: list[str] = []
    for name in ("google", "google.protobuf", "google.protobuf.message_factory"):
        if name not in sys.modules:
            sys.modules[name] = types.ModuleType(name)
            added.append(name)
    parent, child = sys.modules["google"], sys.modules["google.protobuf"]
    had_attr = hasattr(parent, "protobuf")
    if not had_attr:
        parent.protobuf = child  # type: ignore[attr-defined]
    factory = sys.modules["google.protobuf.message_factory"]
    child.message_factory = factory  # type: ignore[attr-defined]
    if "google.protobuf.message_factory" in added:
        factory.GetMessageClass = _no_message_classes  # type: ignore[attr-defined]
    try:
        yield
    finally:
        for name in added:
            del sys.modules[name]
        if not had_attr:
            del parent.protobuf  # type: ignore[attr-defined]


# --- typed compilation --------------------------------------------------------------------


class CompileError(Exception):
    """The CEL checker refused the expression; str() is the checker's report."""


class TypedEnvironments:
    """One CEL environment per rule-carrying schema node, all over one descriptor pool."""

    def __init__(self, decls: dict[str, DeclType]) -> None:
        self._descriptors = _Descriptors()
        self._var_types = {path: self._cel_type(decl, _type_hint(path)) for path, decl in decls.items()}
        pool = _Pool(self._descriptors.file())
        self._envs: dict[str, Any] = {}
        with _protobuf_module_for_cel():
            for path, var_type in self._var_types.items():
                self._envs[path] = cel.NewEnv(descriptor_pool=pool, variables={"self": var_type, "oldSelf": var_type})

    def _cel_type(self, decl: DeclType, hint: str) -> Any:
        if decl.is_object:
            return cel.Type(f"{PACKAGE}.{self._descriptors.message_name(decl, hint)}")
        if decl.name == "list":
            return cel.Type.List(self._cel_type(decl.elem, hint + ".items"))  # type: ignore[arg-type]
        if decl.name == "map":
            return cel.Type.Map(cel.Type.STRING, self._cel_type(decl.elem, hint + ".values"))  # type: ignore[arg-type]
        simple = {
            "string": cel.Type.STRING, "bytes": cel.Type.BYTES, "int": cel.Type.INT, "double": cel.Type.DOUBLE,
            "bool": cel.Type.BOOL, "timestamp": cel.Type.TIMESTAMP, "duration": cel.Type.DURATION, "dyn": cel.Type.DYN,
        }  # fmt: skip
        return simple[decl.name]

    @property
    def paths(self) -> frozenset[str]:
        return frozenset(self._envs)

    def compile(self, path: str, expression: str) -> tuple[Any, CheckedExpr]:
        """(return type, checked AST); CompileError with the checker's message if refused."""
        try:
            compiled = self._envs[path].compile(expression)
        except RuntimeError as error:
            raise CompileError(_clean_error(str(error))) from None
        return compiled.return_type(), decode_checked(compiled.serialize())


def _type_hint(path: str) -> str:
    """A readable message name from a schema path: ...openAPIV3Schema.properties[spec].items -> spec.items."""
    short = re.sub(r"^.*?openAPIV3Schema\.?", "", path)
    return re.sub(r"properties\[([^\]]*)\]", r"\1", short) or "self"


def _clean_error(message: str) -> str:
    message = re.sub(r"^[A-Z_]+: ", "", message)
    return re.sub(r"\s*\[[A-Z_]+\]$", "", message)
