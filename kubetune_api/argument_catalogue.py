"""The argument catalogue: what `trainingArgs`, `lora` and `quantize` accept, read from a checked-in file.

`argument_catalogue.json` beside this module describes, for the library versions the trainer
pins, every `transformers.TrainingArguments`, `peft.LoraConfig` and
`transformers.BitsAndBytesConfig` argument: its JSON shape, choices, the bounds the library
enforces (and the few kubetune adds, marked as such), its default and its help text, plus
the cross-field rules that can be said declaratively. The trainer writes the file
(`python -m kubetune_trainer.catalogue_gen`, which imports those libraries); everything here
only reads it, so `kubetune validate` and the operator image need no torch.

One set of classes describes the file both ways: the generator builds them and calls
`Catalogue.to_json`, the readers get them from `load_catalogue`.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

CATALOGUE_FILE = Path(__file__).with_name("argument_catalogue.json")
REGENERATE_COMMAND = "python -m kubetune_trainer.catalogue_gen"

# The spec fields the catalogue describes, as a user writes them in YAML.
ArgumentKind = Literal["trainingArgs", "lora", "quantize"]
KINDS: tuple[ArgumentKind, ...] = ("trainingArgs", "lora", "quantize")

# JSON shapes. "any" is a value the library takes in several shapes (`accepts` lists them).
JSON_TYPES = ("boolean", "integer", "number", "string", "array", "object")
ANY = "any"

# Who refuses a value outside a bound: the library (at config time or when it is used), or
# kubetune on top of it (a value the library takes but that is surely a mistake).
Enforcer = Literal["library", "kubetune"]


@dataclass(frozen=True)
class Shape:
    """The JSON values an argument (or an array item, or a map value) accepts."""

    type: str  # one of JSON_TYPES or ANY
    enum: tuple[Any, ...] = ()  # string choices
    items: Shape | None = None  # arrays: the shape of each item
    values: Shape | None = None  # objects used as maps: the shape of each value
    accepts: tuple[str, ...] = ()  # ANY: the JSON types the library takes
    nullable: bool = False  # null means "the library's default (None)"

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"type": self.type}
        if self.enum:
            data["enum"] = list(self.enum)
        if self.items is not None:
            data["items"] = self.items.to_json()
        if self.values is not None:
            data["values"] = self.values.to_json()
        if self.accepts:
            data["accepts"] = list(self.accepts)
        if self.nullable:
            data["nullable"] = True
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Shape:
        return cls(
            type=data["type"],
            enum=tuple(data.get("enum", ())),
            items=cls.from_json(data["items"]) if "items" in data else None,
            values=cls.from_json(data["values"]) if "values" in data else None,
            accepts=tuple(data.get("accepts", ())),
            nullable=bool(data.get("nullable", False)),
        )


@dataclass(frozen=True)
class Bound:
    """A numeric limit on an argument, who enforces it, and where that was read."""

    limit: Literal["minimum", "maximum"]
    value: int | float
    enforced_by: Enforcer
    source: str  # file and check in the library, or why kubetune adds it

    def to_json(self) -> dict[str, Any]:
        return {"limit": self.limit, "value": self.value, "enforced_by": self.enforced_by, "source": self.source}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Bound:
        return cls(data["limit"], data["value"], data["enforced_by"], data["source"])


@dataclass(frozen=True)
class Argument:
    """One keyword argument of a library class."""

    name: str
    shape: Shape
    help: str
    default: Any = None
    # What a FineTuneJob run uses when the spec leaves the argument out, where kubetune
    # overrides the library's default (logging_steps, save_strategy, ...); None: the library's.
    kubetune_default: Any = None
    bounds: tuple[Bound, ...] = ()
    choices_from: str | None = None  # where the enum comes from (Enum class, Literal, a check)
    alias_of: str | None = None  # kubetune aliases: the library field it sets

    @property
    def effective_default(self) -> Any:
        """The value a run gets when the spec does not set the argument."""
        return self.default if self.kubetune_default is None else self.kubetune_default

    def bound(self, limit: str) -> Bound | None:
        return next((bound for bound in self.bounds if bound.limit == limit), None)

    def to_json(self) -> dict[str, Any]:
        data = {**self.shape.to_json(), "default": self.default, "help": self.help}
        if self.kubetune_default is not None:
            data["kubetune_default"] = self.kubetune_default
        if self.bounds:
            data["bounds"] = [bound.to_json() for bound in self.bounds]
        if self.choices_from:
            data["choices_from"] = self.choices_from
        if self.alias_of:
            data["alias_of"] = self.alias_of
        return data

    @classmethod
    def from_json(cls, name: str, data: dict[str, Any]) -> Argument:
        return cls(
            name=name,
            shape=Shape.from_json(data),
            help=data["help"],
            default=data.get("default"),
            kubetune_default=data.get("kubetune_default"),
            bounds=tuple(Bound.from_json(bound) for bound in data.get("bounds", ())),
            choices_from=data.get("choices_from"),
            alias_of=data.get("alias_of"),
        )


ConditionOp = Literal["is", "in", "not_in", "set", "unset"]


@dataclass(frozen=True)
class Condition:
    """A test on one argument; an absent argument has its default value.

    is: equals `value`; in / not_in: one of / none of `value` (a list); set / unset: given
    and not null, or absent (null).
    """

    field: str
    op: ConditionOp
    value: Any = None

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"field": self.field, "op": self.op}
        if self.op in ("is", "in", "not_in"):
            data["value"] = self.value
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Condition:
        return cls(data["field"], data["op"], data.get("value"))


@dataclass(frozen=True)
class CrossFieldRule:
    """A combination of arguments that must not occur together.

    The rule is broken when every condition in `forbid` holds. `message` says what to change,
    without the field prefix (the checker adds `spec.quantize: ` and the like).
    """

    id: str
    forbid: tuple[Condition, ...]
    message: str
    enforced_by: Enforcer
    source: str

    @property
    def fields(self) -> tuple[str, ...]:
        return tuple(condition.field for condition in self.forbid)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "forbid": [condition.to_json() for condition in self.forbid],
            "message": self.message,
            "enforced_by": self.enforced_by,
            "source": self.source,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CrossFieldRule:
        forbid = tuple(Condition.from_json(condition) for condition in data["forbid"])
        return cls(data["id"], forbid, data["message"], data["enforced_by"], data["source"])


@dataclass(frozen=True)
class KindCatalogue:
    """Everything one spec field (trainingArgs, lora or quantize) accepts."""

    kind: ArgumentKind
    library_class: str  # e.g. "transformers.TrainingArguments"
    arguments: dict[str, Argument]
    rules: tuple[CrossFieldRule, ...] = ()
    # Keyword arguments of the class a spec cannot set, and why (kubetune owns them, no JSON form).
    excluded: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "class": self.library_class,
            "arguments": {name: self.arguments[name].to_json() for name in sorted(self.arguments)},
            "rules": [rule.to_json() for rule in self.rules],
            "excluded": dict(sorted(self.excluded.items())),
        }

    @classmethod
    def from_json(cls, kind: ArgumentKind, data: dict[str, Any]) -> KindCatalogue:
        return cls(
            kind=kind,
            library_class=data["class"],
            arguments={name: Argument.from_json(name, entry) for name, entry in data["arguments"].items()},
            rules=tuple(CrossFieldRule.from_json(rule) for rule in data["rules"]),
            excluded=dict(data["excluded"]),
        )


@dataclass(frozen=True)
class Catalogue:
    """The three kinds, and the library versions they were read from."""

    libraries: dict[str, str]  # distribution name -> installed version
    kinds: dict[ArgumentKind, KindCatalogue]

    def __getitem__(self, kind: ArgumentKind) -> KindCatalogue:
        return self.kinds[kind]

    def to_json(self) -> str:
        data = {
            "generated_by": REGENERATE_COMMAND,
            "libraries": dict(sorted(self.libraries.items())),
            "kinds": {kind: self.kinds[kind].to_json() for kind in KINDS},
        }
        # Sorted keys and one key per line: a library upgrade shows as a readable diff.
        return json.dumps(data, indent=1, sort_keys=True, ensure_ascii=False) + "\n"

    @classmethod
    def from_json(cls, text: str) -> Catalogue:
        data = json.loads(text)
        kinds = {kind: KindCatalogue.from_json(kind, data["kinds"][kind]) for kind in KINDS}
        return cls(libraries=dict(data["libraries"]), kinds=kinds)


@functools.cache
def load_catalogue() -> Catalogue:
    """The checked-in catalogue, read once per process."""
    return Catalogue.from_json(CATALOGUE_FILE.read_text(encoding="utf-8"))
