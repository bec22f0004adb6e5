"""The static cost estimate kube-apiserver computes for each x-kubernetes-validations rule.

A port of cel-go's estimator (github.com/google/cel-go checker/cost.go: `coster`,
`functionCost`, `computeSize`, ...) driven by Kubernetes' size estimator
(k8s.io/apiextensions-apiserver/pkg/apiserver/schema/cel/compilation.go `sizeEstimator`,
which reads `MaxElements` of the schema's DeclType along a field path), with the options
Kubernetes sets (k8s.io/apiserver/pkg/cel/environment/base.go:
`PresenceTestHasCost(false)`, so `has()` costs nothing itself).

It runs on the real checked AST (celchecked.decode_checked: types and overload ids from the
CEL C++ checker, whose standard overload ids and macro expansions are cel-go's). The
Kubernetes library estimator (k8s.io/apiserver/pkg/cel/library/cost.go EstimateCallCost)
is not ported: it only prices Kubernetes library functions (lowerAscii, quantity, url,
ip, authz, ...), and none is declared in the compile environment (see celtyped), so a
rule using one fails to compile before its cost matters. Two-variable comprehensions and
cel.bind are ported as cel-go has them, though the environment does not declare them.

Multiplying by the rule's cardinality and comparing with the limits is in
apiextensions_rules.py (validation.go getExpressionCost, StaticEstimatedCostLimit).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from celchecked import CheckedExpr, Expr, Type
from celtyped import DeclType

MAX_UINT64 = (1 << 64) - 1
_TWO_TO_64 = math.ldexp(1.0, 64)

# cel-go common/cost.go
SELECT_AND_IDENT_COST = 1
CONST_COST = 0
LIST_CREATE_BASE_COST = 10
MAP_CREATE_BASE_COST = 30
STRUCT_CREATE_BASE_COST = 40
STRING_TRAVERSAL_COST_FACTOR = 0.1
REGEX_STRING_LENGTH_COST_FACTOR = 0.25

# cel-go parser.AccumulatorName / HiddenAccumulatorName (and the C++ parser's name)
_ACCUMULATORS = frozenset({"@result", "@__result__", "__result__"})


def _add(x: int, y: int) -> int:
    return MAX_UINT64 if y > 0 and x > MAX_UINT64 - y else x + y


def _mul(x: int, y: int) -> int:
    return MAX_UINT64 if y != 0 and x > MAX_UINT64 // y else x * y


def _mul_factor(x: int, factor: float) -> int:
    """multiplyByCostFactor: x * factor rounded up, saturating (float64 arithmetic as in Go)."""
    x_float = float(x)
    if x_float > 0 and factor > 0 and x_float > MAX_UINT64 / factor:
        return MAX_UINT64
    ceil = math.ceil(x_float * factor)
    return MAX_UINT64 if ceil >= _TWO_TO_64 else int(ceil)


@dataclass(frozen=True)
class Estimate:
    """cel-go SizeEstimate and CostEstimate (same arithmetic)."""

    min: int
    max: int

    def add(self, other: Estimate) -> Estimate:
        return Estimate(_add(self.min, other.min), _add(self.max, other.max))

    def multiply(self, other: Estimate) -> Estimate:
        return Estimate(_mul(self.min, other.min), _mul(self.max, other.max))

    def multiply_by_factor(self, factor: float) -> Estimate:
        return Estimate(_mul_factor(self.min, factor), _mul_factor(self.max, factor))

    def union(self, other: Estimate) -> Estimate:
        return Estimate(min(self.min, other.min), max(self.max, other.max))


def fixed(value: int) -> Estimate:
    return Estimate(value, value)


UNKNOWN = Estimate(0, MAX_UINT64)
SELECT_COST = fixed(SELECT_AND_IDENT_COST)
PRESENCE_TEST_COST = fixed(0)  # PresenceTestHasCost(false), environment/base.go


@dataclass(frozen=True)
class EntrySize:
    """cel-go entrySizeEstimate: sizes of a container literal's keys and values."""

    container: str  # list or map
    key: Estimate
    val: Estimate


def _union_entries(a: EntrySize | None, b: EntrySize | None) -> EntrySize | None:
    if a is None or b is None:
        return None
    return EntrySize(a.container, a.key.union(b.key), a.val.union(b.val))


@dataclass
class _LocalVar:
    path: list[str] | None
    size: Estimate | None
    entry: EntrySize | None


@dataclass
class AstNode:
    """cel-go astNode: what a function estimate sees of an argument."""

    path: list[str] | None
    type: Type
    expr: Expr | None
    computed_size: Estimate | None


def size_from_decl(root: DeclType, path: list[str] | None) -> Estimate | None:
    """compilation.go sizeEstimator.EstimateSize: MaxElements of the DeclType the path leads to."""
    if not path:
        return None
    node: DeclType | None = root
    for name in path[1:]:  # the first element is the variable (self or oldSelf)
        if node is None:
            return None
        if name in ("@items", "@values"):
            node = node.elem
        elif name == "@keys":
            node = node.key
        else:
            decl_field = (node.fields or {}).get(name)
            node = decl_field.type if decl_field is not None else None
        if node is None:
            return None
    return Estimate(0, node.max_elements)


def _is_scalar(t: Type) -> bool:
    if t.kind in ("bool", "double", "duration", "int", "timestamp", "uint"):
        return True
    return t.kind == "opaque" and t.name == "optional_type" and bool(t.params) and _is_scalar(t.params[0])


@dataclass
class Coster:
    """cel-go checker/cost.go coster, over one checked expression."""

    checked: CheckedExpr
    root: DeclType
    paths: dict[int, list[str]] = field(default_factory=dict)
    local_vars: dict[str, list[_LocalVar]] = field(default_factory=dict)
    sizes: dict[int, Estimate] = field(default_factory=dict)
    entry_sizes: dict[int, EntrySize] = field(default_factory=dict)

    def estimate(self) -> Estimate:
        return self.cost(self.checked.expr)

    # -- bookkeeping ------------------------------------------------------------------------

    def _type(self, e: Expr) -> Type:
        return self.checked.types.get(e.id, Type("dyn"))

    def _peek(self, name: str) -> _LocalVar | None:
        stack = self.local_vars.get(name)
        return stack[-1] if stack else None

    def _push(self, name: str, var: _LocalVar) -> None:
        self.local_vars.setdefault(name, []).append(var)

    def _pop(self, name: str) -> None:
        self.local_vars[name].pop()

    def _path(self, e: Expr) -> list[str] | None:
        if e.kind == "ident":
            var = self._peek(e.name)
            if var is not None:
                return list(var.path) if var.path is not None else None
        path = self.paths.get(e.id)
        return list(path) if path is not None else None

    def _node(self, e: Expr) -> AstNode:
        path = self._path(e)
        if path and path[0] in _ACCUMULATORS:
            path = None  # only paths from root variables are given to the estimator
        return AstNode(path, self._type(e), e, self.compute_size(e))

    def _set_size(self, e: Expr, size: Estimate | None) -> None:
        if size is not None:
            self.sizes[e.id] = size

    def _set_entry(self, e: Expr, entry: EntrySize | None) -> None:
        if entry is not None:
            self.entry_sizes[e.id] = entry

    def _size_or_unknown(self, node: Expr | AstNode) -> Estimate:
        size = self.compute_size(node) if isinstance(node, Expr) else node.computed_size
        return size if size is not None else UNKNOWN

    def compute_size(self, e: Expr) -> Estimate | None:
        if e.id in self.sizes:
            return self.sizes[e.id]
        literal = _literal_size(e)
        if literal is not None:
            return literal
        estimated = size_from_decl(self.root, self._path(e))
        if estimated is not None:
            self.sizes[e.id] = estimated
            return estimated
        if _is_scalar(self._type(e)):
            return fixed(1)
        if e.kind == "ident":
            var = self._peek(e.name)
            if var is not None and var.size is not None:
                return var.size
        return None

    def compute_entry_size(self, e: Expr) -> EntrySize | None:
        if e.id in self.entry_sizes:
            return self.entry_sizes[e.id]
        if e.kind == "ident":
            var = self._peek(e.name)
            if var is not None and var.entry is not None:
                return var.entry
        return None

    def _push_local(self, name: str, e: Expr) -> None:
        self._push(name, _LocalVar(self._path(e), self.compute_size(e), self.compute_entry_size(e)))

    def _container(self, range_expr: Expr, entry: EntrySize | None) -> str:
        if entry is not None:
            return entry.container
        return self._type(range_expr).kind

    def _push_iter(self, name: str, range_expr: Expr, role: str) -> None:
        """pushIterSingle / pushIterKey / pushIterValue."""
        entry = self.compute_entry_size(range_expr)
        container = self._container(range_expr, entry)
        path = self._path(range_expr) or []
        if role == "key":
            subpath = "@indices" if container == "list" else "@keys"
            size = entry.key if entry is not None else None
        elif role == "value":
            subpath = "@items" if container == "list" else "@values"
            size = entry.val if entry is not None else None
        elif container == "list":  # single variable over a list: its items
            subpath, size = "@items", entry.val if entry is not None else None
        else:  # single variable over a map: its keys
            subpath, size = "@keys", entry.key if entry is not None else None
        self._push(name, _LocalVar([*path, subpath], size, None))

    # -- cost -------------------------------------------------------------------------------

    def cost(self, e: Expr | None) -> Estimate:
        if e is None:
            return fixed(0)
        handlers = {
            "literal": lambda: fixed(CONST_COST),
            "ident": lambda: self._cost_ident(e),
            "select": lambda: self._cost_select(e),
            "call": lambda: self._cost_call(e),
            "list": lambda: self._cost_list(e),
            "map": lambda: self._cost_map(e),
            "struct": lambda: self._cost_struct(e),
            "comprehension": lambda: self._cost_bind(e) if self._is_bind(e) else self._cost_comprehension(e),
        }
        return handlers[e.kind]() if e.kind in handlers else fixed(0)

    def _cost_ident(self, e: Expr) -> Estimate:
        var = self._peek(e.name)
        if var is None:
            self.paths[e.id] = [e.name]
        elif var.path is not None:
            self.paths[e.id] = list(var.path)
        else:
            self.paths.pop(e.id, None)  # a local variable without a path (an accumulator)
        return SELECT_COST

    def _cost_select(self, e: Expr) -> Estimate:
        assert e.operand is not None
        if e.test_only:
            return PRESENCE_TEST_COST.add(self.cost(e.operand))
        total = self.cost(e.operand)
        if self._type(e.operand).kind in ("map", "struct", "type_param"):
            total = total.add(SELECT_COST)
        self.paths[e.id] = [*(self._path(e.operand) or []), e.name]
        return total

    def _cost_call(self, e: Expr) -> Estimate:
        if e.name == "dyn" and len(e.args) == 1:
            arg_cost = self.cost(e.args[0])
            self._set_size(e, self.compute_size(e.args[0]))
            self._set_entry(e, self.compute_entry_size(e.args[0]))
            return fixed(1).add(arg_cost)
        arg_costs: list[Estimate] = []
        arg_nodes: list[AstNode] = []
        for arg in e.args:  # each argument's node right after its cost, which records its path
            arg_costs.append(self.cost(arg))
            arg_nodes.append(self._node(arg))
        overloads = self.checked.overloads.get(e.id, [])
        if not overloads:
            return fixed(0)
        total = fixed(0)
        target: AstNode | None = None
        if e.target is not None:
            total = total.add(self.cost(e.target))
            target = self._node(e.target)
        fn_cost = Estimate(MAX_UINT64, 0)
        result_size: Estimate | None = None
        for overload in overloads:
            cost, size = self._function_cost(e, overload, target, arg_nodes, arg_costs)
            fn_cost = fn_cost.union(cost)
            if size is not None:
                result_size = size if result_size is None else result_size.union(size)
            if overload in ("index_list", "index_map") and e.args:
                entry = self.compute_entry_size(e.args[0])
                result_size = entry.val if entry is not None else None
                suffix = "@items" if overload == "index_list" else "@values"
                self.paths[e.id] = [*(self._path(e.args[0]) or []), suffix]
            if result_size is None:
                result_size = self.compute_size(e)
        self._set_size(e, result_size)
        return total.add(fn_cost)

    def _function_cost(
        self, e: Expr, overload: str, target: AstNode | None, args: list[AstNode], arg_costs: list[Estimate]
    ) -> tuple[Estimate, Estimate | None]:
        """functionCost: (cost, result size) of one overload; the library estimator never applies here."""
        arg_sum = fixed(0)
        for cost in arg_costs:
            arg_sum = arg_sum.add(cost)
        size = self._size_or_unknown
        if overload in ("string_to_bytes", "bytes_to_string", "strings_quote") and len(args) == 1:
            sz = size(args[0])
            result = {
                "string_to_bytes": Estimate(sz.min, _mul(sz.max, 4)),
                "bytes_to_string": Estimate(sz.min // 4, sz.max),
                "strings_quote": Estimate(_add(sz.min, 2), _add(_mul(sz.max, 2), 2)),
            }[overload]
            return sz.multiply_by_factor(STRING_TRAVERSAL_COST_FACTOR).add(arg_sum), result
        if overload in ("starts_with_string", "ends_with_string") and len(args) == 1:
            return size(args[0]).multiply_by_factor(STRING_TRAVERSAL_COST_FACTOR).add(arg_sum), None
        if overload == "in_list" and len(args) == 2:
            return size(args[1]).multiply_by_factor(1).add(arg_sum), None
        if overload == "matches_string" and target is not None and len(args) == 1:
            # RE2: O(n*m), the pattern length standing in for its number of states.
            str_cost = size(target).add(fixed(1)).multiply_by_factor(STRING_TRAVERSAL_COST_FACTOR)
            regex_cost = size(args[0]).multiply_by_factor(REGEX_STRING_LENGTH_COST_FACTOR)
            return str_cost.multiply(regex_cost).add(arg_sum), None
        if overload == "contains_string" and target is not None and len(args) == 1:
            str_cost = size(target).multiply_by_factor(STRING_TRAVERSAL_COST_FACTOR)
            sub_cost = size(args[0]).multiply_by_factor(STRING_TRAVERSAL_COST_FACTOR)
            return str_cost.multiply(sub_cost).add(arg_sum), None
        if overload in ("logical_or", "logical_and"):
            lhs, rhs = arg_costs[0], arg_costs[1]
            return Estimate(lhs.min, lhs.add(rhs).max), None  # short circuit: the minimum is the left side
        if overload == "conditional":
            result = size(args[1]).union(size(args[2]))
            assert args[1].expr is not None and args[2].expr is not None
            self._set_entry(
                e, _union_entries(self.compute_entry_size(args[1].expr), self.compute_entry_size(args[2].expr))
            )
            return arg_costs[0].add(arg_costs[1].union(arg_costs[2])), result
        if overload in ("add_string", "add_bytes", "add_list") and len(args) == 2:
            result = size(args[0]).add(size(args[1]))
            assert args[0].expr is not None and args[1].expr is not None
            self._set_entry(
                e, _union_entries(self.compute_entry_size(args[0].expr), self.compute_entry_size(args[1].expr))
            )
            if overload == "add_list":
                return fixed(1).add(arg_sum), result  # O(1), tracked for its size
            return result.multiply_by_factor(STRING_TRAVERSAL_COST_FACTOR).add(arg_sum), result
        if overload in _COMPARISONS:
            lhs, rhs = size(args[0]), size(args[1])
            smallest_max = min(lhs.max, rhs.max)
            low = 1 if smallest_max > 0 else 0
            return Estimate(low, smallest_max).multiply_by_factor(STRING_TRAVERSAL_COST_FACTOR).add(arg_sum), None
        return fixed(1).add(arg_sum), None  # O(1) functions

    def _cost_list(self, e: Expr) -> Estimate:
        total = fixed(0)
        item = Estimate(0 if not e.entries else MAX_UINT64, 0)
        for _key, value in e.entries:
            total = total.add(self.cost(value))
            item = item.union(self._size_or_unknown(value))
        self._set_entry(e, EntrySize("list", fixed(1), item))
        return total.add(fixed(LIST_CREATE_BASE_COST))

    def _cost_map(self, e: Expr) -> Estimate:
        total = fixed(0)
        empty = 0 if not e.entries else MAX_UINT64
        key_size, val_size = Estimate(empty, 0), Estimate(empty, 0)
        for key, value in e.entries:
            assert key is not None
            total = total.add(self.cost(key)).add(self.cost(value))
            key_size = key_size.union(self._size_or_unknown(key))
            val_size = val_size.union(self._size_or_unknown(value))
        self._set_entry(e, EntrySize("map", key_size, val_size))
        return total.add(fixed(MAP_CREATE_BASE_COST))

    def _cost_struct(self, e: Expr) -> Estimate:
        total = fixed(0)
        for _key, value in e.entries:
            total = total.add(self.cost(value))
        return total.add(fixed(STRUCT_CREATE_BASE_COST))

    def _is_bind(self, e: Expr) -> bool:
        rng, cond = e.iter_range, e.loop_condition
        return (
            rng is not None
            and rng.kind == "list"
            and not rng.entries
            and cond is not None
            and cond.kind == "literal"
            and cond.literal == ("bool", False)
            and e.accu_var not in _ACCUMULATORS
        )

    def _cost_bind(self, e: Expr) -> Estimate:
        total = self.cost(e.iter_range).add(self.cost(e.accu_init))
        assert e.accu_init is not None and e.result is not None
        self._push_local(e.accu_var, e.accu_init)
        total = total.add(self.cost(e.result))
        self._pop(e.accu_var)
        self._set_size(e, self.compute_size(e.result))
        self._set_entry(e, self.compute_entry_size(e.result))
        return total

    def _cost_comprehension(self, e: Expr) -> Estimate:
        assert e.iter_range is not None and e.accu_init is not None
        total = self.cost(e.iter_range).add(self.cost(e.accu_init))
        self._push_local(e.accu_var, e.accu_init)
        if e.iter_var2:
            self._push_iter(e.iter_var, e.iter_range, "key")
            self._push_iter(e.iter_var2, e.iter_range, "value")
        else:
            self._push_iter(e.iter_var, e.iter_range, "single")
        loop_cost = self.cost(e.loop_condition)
        step_cost = self.cost(e.loop_step)
        self._pop(e.iter_var)
        if e.iter_var2:
            self._pop(e.iter_var2)
        total = total.add(self.cost(e.result))
        self._pop(e.accu_var)
        range_count = self._size_or_unknown(e.iter_range)
        total = total.add(range_count.multiply(step_cost.add(loop_cost)))
        if e.accu_init.kind == "literal":
            self._set_size(e, self.compute_size(e.accu_init))
        elif e.accu_init.kind in ("list", "map"):
            self._set_size(e, range_count)
            if e.loop_step is not None:
                self._set_entry(e, self.compute_entry_size(e.loop_step))
        return total


# fmt: off
_COMPARISONS = frozenset({
    "less_string", "greater_string", "less_equals_string", "greater_equals_string", "less_bytes", "greater_bytes",
    "less_equals_bytes", "greater_equals_bytes", "equals", "not_equals",
})
# fmt: on


def _literal_size(e: Expr) -> Estimate | None:
    """computeExprSize: exact sizes of literals and inline lists and maps."""
    if e.kind == "literal":
        kind, value = e.literal
        if kind == "string":
            return fixed(len(value))  # code points, as CEL's size()
        if kind == "bytes":
            return fixed(len(value))
        if kind in ("bool", "double", "duration", "int", "timestamp", "uint", "null"):
            return fixed(1)
        return None
    if e.kind in ("list", "map"):
        return fixed(len(e.entries))
    return None


def estimate_cost(checked: CheckedExpr, root: DeclType) -> Estimate:
    """The worst-case cost of one evaluation of the expression (cel.EstimateCost's Max is what counts)."""
    return Coster(checked, root).estimate()


def max_cardinality(min_serialized_size: int, max_request_size: int) -> int:
    """compilation.go maxCardinality: how often a value of this minimum size fits in one request."""
    return max_request_size // (min_serialized_size + 1)
