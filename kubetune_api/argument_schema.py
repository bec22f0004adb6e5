"""CRD schema fragments and CEL rules for trainingArgs, lora and quantize, from the argument catalogue.

For the CRD generator (`kubetune_operator.crd`), torch-free:

* `argument_schema(kind)`: an OpenAPI v3 *structural* schema (Kubernetes' subset: a type on
  every node or `x-kubernetes-preserve-unknown-fields`, no $ref/anyOf/oneOf/nullable) for the
  object form of a kind, so `kubectl explain ftj.spec.trainingArgs.learning_rate` documents
  the argument and the API server refuses a wrong type, a value outside the choices or the
  library's bounds, and (declared properties only, no preserved unknown fields) a misspelt
  name under strict field validation;
* `cel_rules(kind)`: `x-kubernetes-validations` entries for the catalogue's cross-field rules,
  for the object node of that kind;
* `cross_field_rules(kind)`, `mutually_exclusive_pairs(kind)`: the same rules as data.

No `default` is emitted on purpose: the API server would write every library default into
every FineTuneJob, overriding kubetune's own run defaults (logging_steps, save_strategy, ...).
Defaults go into the descriptions instead. No `nullable` either: a null is pruned at
admission, which is what the library's None default means anyway.

Unknown names: a structural schema without preserved unknown fields makes the API server
*drop* unknown fields; `kubectl apply` (strict field validation by default) turns that into
an error, but a client using Warn or Ignore (the server's default is Warn) gets the typo
silently removed. `preserve_unknown=True` keeps them instead, for the operator's validation
to refuse (InvalidSpec, with the closest names) at the cost of no refusal at admission.
"""

from __future__ import annotations

from typing import Any

from kubetune_api.argument_catalogue import (
    ANY,
    Argument,
    ArgumentKind,
    Condition,
    CrossFieldRule,
    Shape,
    load_catalogue,
)
from kubetune_api.arguments import shown
from kubetune_api.credentials import is_credential_key

Schema = dict[str, Any]

# Help text per argument in a description. kubectl explain shows the whole text; the CRD
# (and the last-applied annotation of a client-side apply, limited to 256 KiB) carries it
# for every argument, so it is cut at a sentence end where one is near.
DESCRIPTION_LIMIT = 200
_PRESERVE = "x-kubernetes-preserve-unknown-fields"
_SCALARS = ("boolean", "integer", "number", "string")
# CEL words a field name cannot be used as without escaping (apiextensions escapes them).
_CEL_RESERVED = frozenset(
    {
        *("true", "false", "null", "in", "as", "break", "const", "continue", "else", "for", "function"),
        *("if", "import", "let", "loop", "package", "namespace", "return", "var", "void", "while"),
    }
)
_KIND_DESCRIPTIONS: dict[ArgumentKind, str] = {
    "trainingArgs": "{cls} arguments ({library} {version}), snake_case as in Python.",
    "lora": "{cls} arguments ({library} {version}).",
    "quantize": "{cls} arguments ({library} {version}).",
}
_TYPE_WORDS = {"array": "a list", "boolean": "a boolean", "number": "a number", "object": "an object"}


def trimmed(text: str, limit: int = DESCRIPTION_LIMIT) -> str:
    """`text` cut to about `limit` characters: at the last sentence end if it keeps half, else a word."""
    if len(text) <= limit:
        return text
    head = text[:limit]
    sentence = head.rfind(". ")
    if sentence >= limit // 2:
        return head[: sentence + 1]
    return head[: head.rfind(" ")].rstrip(",;:") + " ..."


def _sentence(text: str) -> str:
    return text if text.endswith((".", "!", "?", ")", "...")) else f"{text}."


def _alternatives(words: list[str]) -> str:
    return words[0] if len(words) == 1 else f"{', '.join(words[:-1])} or {words[-1]}"


def _description(argument: Argument, limit: int) -> str:
    parts = [_sentence(trimmed(argument.help, limit))] if argument.help else []
    if argument.shape.type == ANY:
        # kubectl explain shows no type for these nodes: say what they take.
        words = [_TYPE_WORDS.get(name, f"a {name}") for name in argument.shape.accepts]
        parts.append(f"Takes {_alternatives(words)}.")
    if argument.kubetune_default is not None:
        parts.append(f"Default in kubetune: {shown(argument.kubetune_default)} (library: {shown(argument.default)}).")
    elif argument.default not in (None, "", [], {}):
        parts.append(f"Default: {shown(argument.default)}.")
    return " ".join(parts)


def _node(shape: Shape) -> Schema:
    """The structural schema of one shape (no description)."""
    if shape.type == ANY:
        return {_PRESERVE: True}
    node: Schema = {"type": shape.type}
    if shape.enum:
        node["enum"] = list(shape.enum)
    if shape.type == "array":
        node["items"] = _node(shape.items) if shape.items is not None else {_PRESERVE: True}
    if shape.type == "object":
        if shape.values is not None:
            node["additionalProperties"] = _node(shape.values)
        else:
            node[_PRESERVE] = True  # a free-form object (fsdp_config, rank_pattern, ...)
    return node


def argument_property(argument: Argument, limit: int = DESCRIPTION_LIMIT) -> Schema:
    """The schema of one argument: its shape, description and the bounds enforced on it."""
    node = {"description": _description(argument, limit), **_node(argument.shape)}
    for bound in argument.bounds:
        node[bound.limit] = bound.value
    return node


def argument_schema(
    kind: ArgumentKind, *, preserve_unknown: bool = False, description_limit: int = DESCRIPTION_LIMIT
) -> Schema:
    """The structural schema of the object form of `kind` (trainingArgs, lora or quantize)."""
    catalogue = load_catalogue()
    kind_catalogue = catalogue[kind]
    cls = kind_catalogue.library_class
    library = cls.split(".")[0]
    schema: Schema = {
        "type": "object",
        "description": _KIND_DESCRIPTIONS[kind].format(
            cls=cls, library=library, version=catalogue.libraries.get(library, "?")
        ),
        # No credentials: a strict client refuses them at admission (the spec model with its reason).
        "properties": {
            name: argument_property(kind_catalogue.arguments[name], description_limit)
            for name in sorted(kind_catalogue.arguments)
            if not is_credential_key(name)
        },
    }
    if preserve_unknown:
        schema[_PRESERVE] = True
    return schema


def cross_field_rules(kind: ArgumentKind) -> tuple[CrossFieldRule, ...]:
    """The catalogue's cross-field rules of `kind`, library's and kubetune's."""
    return load_catalogue()[kind].rules


def mutually_exclusive_pairs(kind: ArgumentKind) -> list[tuple[str, str]]:
    """Pairs of boolean arguments that must not both be true (fp16/bf16, load_in_4bit/load_in_8bit)."""
    return [
        (rule.forbid[0].field, rule.forbid[1].field)
        for rule in cross_field_rules(kind)
        if len(rule.forbid) == 2 and all(c.op == "is" and c.value is True for c in rule.forbid)
    ]


def _literal(value: Any, shape: Shape) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
    # CEL does not compare an int literal with a double field at type-check time.
    return repr(float(value)) if shape.type == "number" else str(int(value))


def _cel_condition(argument: Argument, condition: Condition) -> str | None:
    """The CEL form of a condition on `self`, or None when CEL cannot see the field."""
    shape = argument.shape
    if shape.type not in _SCALARS or argument.name in _CEL_RESERVED:
        return None  # untyped (preserved unknown) fields are invisible to CEL
    ref = f"self.{argument.name}"
    if condition.op == "set":
        return f"(has({ref}) && {ref} != '')" if shape.type == "string" else f"has({ref})"
    if condition.op == "unset":
        return f"!has({ref})"
    default = argument.effective_default
    if default is None:
        # Absent means None: equal to nothing, so "is" and "in" need the field present.
        present = f"has({ref}) && "
        value = ref
    else:
        present = ""
        value = f"(has({ref}) ? {ref} : {_literal(default, shape)})"
    if condition.op == "is":
        return f"({present}{value} == {_literal(condition.value, shape)})"
    choices = "[" + ", ".join(_literal(choice, shape) for choice in condition.value) + "]"
    if condition.op == "in":
        return f"({present}{value} in {choices})"
    return f"(!has({ref}) || !({ref} in {choices}))" if default is None else f"!({value} in {choices})"


def cel_rules(kind: ArgumentKind, prefix: str | None = None) -> list[dict[str, str]]:
    """`x-kubernetes-validations` for the object node of `kind`: each cross-field rule CEL can see.

    Rules on untyped fields (init_lora_weights, layers_pattern, ...) are left to the spec model.
    Messages start with `prefix` (default `spec.<kind>`), like the spec model's.
    """
    where = prefix if prefix is not None else f"spec.{kind}"
    arguments = load_catalogue()[kind].arguments
    entries = []
    for rule in cross_field_rules(kind):
        parts = [_cel_condition(arguments[condition.field], condition) for condition in rule.forbid]
        if all(part is not None for part in parts):
            entries.append({"rule": "!(" + " && ".join(parts) + ")", "message": f"{where}: {rule.message}"})  # type: ignore[arg-type]
    return entries
