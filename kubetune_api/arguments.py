"""Check `trainingArgs`, `lora` and `quantize` against the argument catalogue, without torch.

`kubetune validate`, `kubetune run`, the operator and the trainer all reach these checks
through the spec model (`kubetune_api.training`), so they give one verdict with one message.
Each problem names the field the way a user writes it in YAML and says what to change:

    spec.trainingArgs.learning_rat: unknown training argument (did you mean: learning_rate?)
    spec.lora.r: must be a positive integer, got 0
    spec.quantize: load_in_4bit and load_in_8bit are mutually exclusive; keep one

An argument the catalogue does not know (a newer library in a custom trainer image) goes
under `spec.uncheckedTrainingArgs`, which the trainer checks against its own libraries.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from kubetune_api.argument_catalogue import ANY, Argument, ArgumentKind, Condition, KindCatalogue, Shape, load_catalogue
from kubetune_api.credentials import is_credential_key
from kubetune_api.suggestions import closest

UNCHECKED_FIELD = "uncheckedTrainingArgs"

# How each kind's arguments are called in messages.
ARGUMENT_NOUNS: dict[ArgumentKind, str] = {
    "trainingArgs": "training argument",
    "lora": "LoraConfig argument",
    "quantize": "BitsAndBytesConfig argument",
}
# The library a kind's class comes from: named when an argument is unknown to its version.
_LIBRARY_OF: dict[ArgumentKind, str] = {"trainingArgs": "transformers", "lora": "peft", "quantize": "transformers"}
_TYPE_WORDS = {
    "boolean": "true or false",
    "integer": "an integer",
    "number": "a number",
    "string": "a string",
    "array": "a list",
    "object": "an object",
}
_LISTED_CHOICES = 12  # longer enums are not spelt out in a message; `kubectl explain` lists them
_EXPONENT_WITHOUT_POINT = re.compile(r"^[+-]?\d+[eE][+-]?\d+$")


@dataclass(frozen=True)
class ArgumentProblem:
    """One mistake: where below the spec field (empty: the field's value itself) and what to do."""

    path: tuple[str, ...]
    message: str

    def render(self, prefix: str = "") -> str:
        """`prefix.a.b[0]: message`, e.g. with prefix "spec.lora"; without a prefix `a.b[0]: message`."""
        where = prefix
        for part in self.path:
            where += part if part.startswith("[") else f".{part}"
        where = where.removeprefix(".")
        return f"{where}: {self.message}" if where else self.message


class ArgumentError(ValueError):
    """Raised by the spec model's validators; `describe_validation_error` prints one line per problem."""

    def __init__(self, problems: list[ArgumentProblem]) -> None:
        self.problems = problems
        super().__init__("; ".join(problem.render() for problem in problems))


def shown(value: Any) -> str:
    """A value as a user wrote it: JSON for scalars, a word for containers."""
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "a list"
    try:
        return json.dumps(value)
    except (TypeError, ValueError):
        return repr(value)


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object" if isinstance(value, dict) else type(value).__name__


def _fits(json_type: str, wanted: str) -> bool:
    # An integer is a number; JSON (and the API server) do not tell 6 from 6.0 apart.
    return json_type == wanted or (wanted == "number" and json_type == "integer")


def _expected(shape: Shape) -> str:
    if shape.type == ANY:
        return " or ".join(_TYPE_WORDS[name] for name in shape.accepts)
    if shape.type == "array" and shape.items is not None and shape.items.type in ("string", "integer"):
        return f"a list of {shape.items.type}s"
    return _TYPE_WORDS[shape.type]


def _text_number_hint(shape: Shape, value: Any) -> str:
    """Why a number arrived as text, when it did: the YAML 1.1 exponent trap, or quotes."""
    if shape.type not in ("number", "integer") or not isinstance(value, str):
        return ""
    if _EXPONENT_WITHOUT_POINT.match(value.strip()):
        mantissa, exponent = value.strip().lower().split("e")
        return f" (YAML reads {value} as text; write {mantissa}.0e{exponent})"
    try:
        float(value)
    except ValueError:
        return ""
    return " (a quoted number is text; remove the quotes)"


def check_value(shape: Shape, value: Any, path: tuple[str, ...]) -> list[ArgumentProblem]:
    """Problems of one value against its shape (type, choices, list items, map values)."""
    if value is None:
        return [] if shape.nullable else [ArgumentProblem(path, f"expected {_expected(shape)}, got null")]
    actual = _json_type(value)
    wanted = shape.accepts if shape.type == ANY else (shape.type,)
    if not any(_fits(actual, name) for name in wanted):
        hint = _text_number_hint(shape, value)
        return [ArgumentProblem(path, f"expected {_expected(shape)}, got {shown(value)}{hint}")]
    if shape.enum and value not in shape.enum:
        return [ArgumentProblem(path, _not_a_choice(shape.enum, value))]
    problems: list[ArgumentProblem] = []
    if shape.items is not None and isinstance(value, list):
        for index, item in enumerate(value):
            problems += check_value(shape.items, item, (*path, f"[{index}]"))
    if shape.values is not None and isinstance(value, dict):
        for key, item in value.items():
            problems += check_value(shape.values, item, (*path, str(key)))
    return problems


def _not_a_choice(choices: tuple[Any, ...], value: Any) -> str:
    hint = closest(str(value), [str(choice) for choice in choices])
    if len(choices) <= _LISTED_CHOICES:
        return f"expected one of {', '.join(map(str, choices))}; got {shown(value)}{hint}"
    return f"{shown(value)} is not one of the {len(choices)} choices{hint}"


def _bound_problem(argument: Argument, value: Any) -> str | None:
    """The message for a number outside the argument's bounds, or None."""
    low, high = argument.bound("minimum"), argument.bound("maximum")
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if (low is None or value >= low.value) and (high is None or value <= high.value):
        return None
    if low is not None and high is not None:
        return f"must be between {low.value} and {high.value}, got {shown(value)}"
    if low is not None:
        if low.value == 1 and argument.shape.type == "integer":
            return f"must be a positive integer, got {shown(value)}"
        if low.value == 0:
            return f"must not be negative, got {shown(value)}"
        return f"must be at least {low.value}, got {shown(value)}"
    assert high is not None
    return f"must be at most {high.value}, got {shown(value)}"


def _unknown(kind: ArgumentKind, catalogue: KindCatalogue, name: str) -> str:
    noun = ARGUMENT_NOUNS[kind]
    hint = closest(name, catalogue.arguments)
    if hint:
        return f"unknown {noun}{hint}"
    library = _LIBRARY_OF[kind]
    version = load_catalogue().libraries.get(library, "?")
    message = f"unknown {noun} (checked against {library} {version})"
    if kind == "trainingArgs":
        message += f"; an argument of a newer {library} in a custom trainer image goes under spec.{UNCHECKED_FIELD}"
    return message


# A credential in the spec is copied into the Job's environment (readable by anyone who may
# view the namespace) and into kubetune.json: it belongs in a Secret.
CREDENTIAL_MESSAGE = (
    "looks like a credential: do not write it in the spec (it would be readable by anyone who can view "
    "the namespace); put it in a Secret and pass it through spec.env with valueFrom.secretKeyRef "
    "(the hub token as HF_TOKEN)"
)


def check_arguments(kind: ArgumentKind, values: dict[str, Any]) -> list[ArgumentProblem]:
    """Every problem of an object of `kind` arguments: names, types, choices, bounds, then rules."""
    catalogue = load_catalogue()[kind]
    problems: list[ArgumentProblem] = []
    for name, value in values.items():
        name = str(name)
        argument = catalogue.arguments.get(name)
        if is_credential_key(name):
            problems.append(ArgumentProblem((name,), CREDENTIAL_MESSAGE))
        elif name in catalogue.excluded:
            problems.append(ArgumentProblem((name,), catalogue.excluded[name]))
        elif argument is None:
            problems.append(ArgumentProblem((name,), _unknown(kind, catalogue, name)))
        else:
            found = check_value(argument.shape, value, (name,))
            bound = None if found else _bound_problem(argument, value)
            problems += found if bound is None else [ArgumentProblem((name,), bound)]
    if problems:
        return problems  # rules read the values; they would only repeat a wrong one
    broken = [rule for rule in catalogue.rules if rule_broken(catalogue, rule.forbid, values)]
    return [ArgumentProblem((), rule.message) for rule in broken]


def _same(left: Any, right: Any) -> bool:
    # True == 1 in Python; not in YAML.
    return left == right and isinstance(left, bool) == isinstance(right, bool)


def condition_holds(catalogue: KindCatalogue, condition: Condition, values: dict[str, Any]) -> bool:
    """Whether `condition` holds for `values`; an argument left out has the value a run gives it."""
    if condition.op in ("set", "unset"):
        # Given in the spec, not by a default: "set both" means the user wrote both.
        value = values.get(condition.field)
        given = value is not None and not (isinstance(value, str | list | dict) and not value)
        return given if condition.op == "set" else value is None
    if condition.field in values:
        value = values[condition.field]
    else:
        value = catalogue.arguments[condition.field].effective_default
    if condition.op == "is":
        return _same(value, condition.value)
    matched = any(_same(value, choice) for choice in condition.value)
    return matched if condition.op == "in" else not matched


def rule_broken(catalogue: KindCatalogue, forbid: tuple[Condition, ...], values: dict[str, Any]) -> bool:
    return all(condition_holds(catalogue, condition, values) for condition in forbid)


def check_training_args(values: dict[str, Any]) -> list[ArgumentProblem]:
    """Problems of `spec.trainingArgs` (an object: the spec model types it)."""
    return check_arguments("trainingArgs", values)


def _check_switch_or_object(kind: ArgumentKind, value: Any) -> list[ArgumentProblem]:
    """`lora` / `quantize`: true or false (the seed's switch) or an object of arguments."""
    if value is None or isinstance(value, bool):
        return []
    if not isinstance(value, dict):
        noun = ARGUMENT_NOUNS[kind].removesuffix(" argument")
        return [ArgumentProblem((), f"expected true, false or an object of {noun} arguments, got {shown(value)}")]
    return check_arguments(kind, value)


def check_lora(value: Any) -> list[ArgumentProblem]:
    """Problems of `spec.lora`."""
    return _check_switch_or_object("lora", value)


def check_quantize(value: Any) -> list[ArgumentProblem]:
    """Problems of `spec.quantize`."""
    return _check_switch_or_object("quantize", value)


def check_unchecked_training_args(unchecked: dict[str, Any], checked: dict[str, Any]) -> list[ArgumentProblem]:
    """Problems of the escape hatch: only what the catalogue does not know, and nothing twice.

    A key the catalogue knows belongs in trainingArgs, where it is checked; without this rule
    the hatch would be a way round every check.
    """
    catalogue = load_catalogue()["trainingArgs"]
    problems = []
    for name in unchecked:
        if is_credential_key(name):
            problems.append(ArgumentProblem((name,), CREDENTIAL_MESSAGE))
        elif name in checked:
            problems.append(ArgumentProblem((name,), "also set in spec.trainingArgs; set it in one place"))
        elif name in catalogue.excluded:
            problems.append(ArgumentProblem((name,), catalogue.excluded[name]))
        elif name in catalogue.arguments:
            problems.append(
                ArgumentProblem((name,), "a known training argument: move it to spec.trainingArgs, where it is checked")
            )
    return problems


def as_library_values(kind: ArgumentKind, values: dict[str, Any]) -> dict[str, Any]:
    """`values` with whole numbers made floats where the argument is a number.

    JSON (and so the API server and `kubetune.json`) writes 6.0 as 6, and some classes insist
    on a float (BitsAndBytesConfig: "llm_int8_threshold must be a float").
    """
    arguments = load_catalogue()[kind].arguments
    return {
        name: float(value)
        if name in arguments
        and arguments[name].shape.type == "number"
        and isinstance(value, int)
        and not isinstance(value, bool)
        else value
        for name, value in values.items()
    }
