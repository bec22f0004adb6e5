"""The checked AST of a compiled CEL expression, read from cel-expr-python's serialized form.

`Expression.serialize()` is a google.protobuf.Any holding a cel.expr.CheckedExpr
(github.com/google/cel-spec proto/cel/expr/checked.proto and syntax.proto): the expression
tree, the type of every node (type_map) and each call's overload ids (reference_map). The
cost estimate (celcost.py) walks this, as cel-go's estimator walks its checked AST. There is
no protobuf Python package here, so the wire format is read by hand; only the fields the
estimate needs are kept.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any


def _wire(buf: bytes) -> Iterator[tuple[int, int, Any]]:
    """(field number, wire type, value) for each field of a serialized message."""
    pos = 0
    while pos < len(buf):
        key, pos = _read_varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _read_varint(buf, pos)
        elif wire == 1:
            value, pos = buf[pos : pos + 8], pos + 8
        elif wire == 2:
            length, pos = _read_varint(buf, pos)
            value, pos = buf[pos : pos + length], pos + length
        elif wire == 5:
            value, pos = buf[pos : pos + 4], pos + 4
        else:
            raise ValueError(f"unsupported wire type {wire}")
        yield number, wire, value


def _read_varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return result, pos


def _signed(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


@dataclass
class Type:
    """A checked type, reduced to what the cost estimate asks of it (cel-go types.Kind)."""

    kind: str  # dyn, null, bool, int, uint, double, string, bytes, any, timestamp, duration,
    # list, map, struct, type_param, type, error, opaque, function
    params: list[Type] = field(default_factory=list)
    name: str = ""


_PRIMITIVES = {1: "bool", 2: "int", 3: "uint", 4: "double", 5: "string", 6: "bytes"}
_WELL_KNOWN = {1: "any", 2: "timestamp", 3: "duration"}


def _decode_type(buf: bytes) -> Type:
    for number, _wire_type, value in _wire(buf):
        if number == 1:
            return Type("dyn")
        if number == 2:
            return Type("null")
        if number == 3:
            return Type(_PRIMITIVES.get(value, "dyn"))
        if number == 4:
            return Type("opaque", [Type(_PRIMITIVES.get(value, "dyn"))], "wrapper")
        if number == 5:
            return Type(_WELL_KNOWN.get(value, "dyn"))
        if number == 6:
            return Type("list", [_decode_type(v) for n, _, v in _wire(value) if n == 1])
        if number == 7:
            return Type("map", [_decode_type(v) for n, _, v in _wire(value) if n in (1, 2)])
        if number == 8:
            return Type("function")
        if number == 9:
            return Type("struct", name=value.decode())
        if number == 10:
            return Type("type_param", name=value.decode())
        if number == 11:
            return Type("type")
        if number == 12:
            return Type("error")
        if number == 14:
            parts = list(_wire(value))
            name = next((v.decode() for n, _, v in parts if n == 1), "")
            return Type("opaque", [_decode_type(v) for n, _, v in parts if n == 2], name)
    return Type("dyn")


@dataclass
class Expr:
    """cel.expr.Expr, flattened: which attributes are set depends on kind."""

    id: int
    kind: str  # literal, ident, select, call, list, map, struct, comprehension
    name: str = ""  # ident name, selected field, called function
    literal: Any = None  # (type name, value) for literals
    operand: Expr | None = None
    test_only: bool = False
    target: Expr | None = None
    args: list[Expr] = field(default_factory=list)
    entries: list[tuple[Expr | None, Expr]] = field(default_factory=list)  # list items have key None
    iter_var: str = ""
    iter_var2: str = ""
    accu_var: str = ""
    iter_range: Expr | None = None
    accu_init: Expr | None = None
    loop_condition: Expr | None = None
    loop_step: Expr | None = None
    result: Expr | None = None


@dataclass
class CheckedExpr:
    expr: Expr
    types: dict[int, Type]
    overloads: dict[int, list[str]]
    references: dict[int, str]


def _decode_literal(buf: bytes) -> tuple[str, Any]:
    for number, _wire_type, value in _wire(buf):
        if number == 1:
            return "null", None
        if number == 2:
            return "bool", bool(value)
        if number == 3:
            return "int", _signed(value)
        if number == 4:
            return "uint", value
        if number == 5:
            return "double", struct.unpack("<d", value)[0]
        if number == 6:
            return "string", value.decode()
        if number == 7:
            return "bytes", bytes(value)
        if number == 8:
            return "duration", value
        if number == 9:
            return "timestamp", value
    return "null", None


def _decode_expr(buf: bytes) -> Expr:
    expr = Expr(0, "literal")
    for number, _wire_type, value in _wire(buf):
        if number == 2:
            expr.id = value
        elif number == 3:
            expr.kind, expr.literal = "literal", _decode_literal(value)
        elif number == 4:
            expr.kind = "ident"
            expr.name = next(v.decode() for n, _, v in _wire(value) if n == 1)
        elif number == 5:
            _decode_select(expr, value)
        elif number == 6:
            _decode_call(expr, value)
        elif number == 7:
            expr.kind = "list"
            expr.entries = [(None, _decode_expr(v)) for n, _, v in _wire(value) if n == 1]
        elif number == 8:
            _decode_struct(expr, value)
        elif number == 9:
            _decode_comprehension(expr, value)
    return expr


def _decode_select(expr: Expr, buf: bytes) -> None:
    expr.kind = "select"
    for number, _wire_type, value in _wire(buf):
        if number == 1:
            expr.operand = _decode_expr(value)
        elif number == 2:
            expr.name = value.decode()
        elif number == 3:
            expr.test_only = bool(value)


def _decode_call(expr: Expr, buf: bytes) -> None:
    expr.kind = "call"
    for number, _wire_type, value in _wire(buf):
        if number == 1:
            expr.target = _decode_expr(value)
        elif number == 2:
            expr.name = value.decode()
        elif number == 3:
            expr.args.append(_decode_expr(value))


def _decode_struct(expr: Expr, buf: bytes) -> None:
    expr.kind = "map"
    for number, _wire_type, value in _wire(buf):
        if number == 1 and value:
            expr.kind, expr.name = "struct", value.decode()
        elif number == 2:
            key: Expr | None = None
            item: Expr | None = None
            for n, _, v in _wire(value):
                if n == 3:
                    key = _decode_expr(v)
                elif n == 4:
                    item = _decode_expr(v)
            expr.entries.append((key, item))  # type: ignore[arg-type]


def _decode_comprehension(expr: Expr, buf: bytes) -> None:
    expr.kind = "comprehension"
    names = {1: "iter_var", 3: "accu_var", 8: "iter_var2"}
    exprs = {2: "iter_range", 4: "accu_init", 5: "loop_condition", 6: "loop_step", 7: "result"}
    for number, _wire_type, value in _wire(buf):
        if number in names:
            setattr(expr, names[number], value.decode())
        elif number in exprs:
            setattr(expr, exprs[number], _decode_expr(value))


def decode_checked(serialized: bytes) -> CheckedExpr:
    """Parse cel-expr-python's Expression.serialize(): an Any holding a cel.expr.CheckedExpr."""
    payload = next(v for n, _, v in _wire(serialized) if n == 2)
    checked = CheckedExpr(Expr(0, "literal"), {}, {}, {})
    for number, _wire_type, value in _wire(payload):
        if number == 2:  # reference_map
            key, ref = _map_entry(value)
            parts = list(_wire(ref))
            checked.references[key] = next((v.decode() for n, _, v in parts if n == 1), "")
            checked.overloads[key] = [v.decode() for n, _, v in parts if n == 3]
        elif number == 3:  # type_map
            key, type_buf = _map_entry(value)
            checked.types[key] = _decode_type(type_buf)
        elif number == 4:
            checked.expr = _decode_expr(value)
    return checked


def _map_entry(buf: bytes) -> tuple[int, bytes]:
    key, value = 0, b""
    for number, _wire_type, item in _wire(buf):
        if number == 1:
            key = _signed(item)
        elif number == 2:
            value = item
    return key, value
