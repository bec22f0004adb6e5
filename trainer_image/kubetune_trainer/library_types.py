"""Python type annotations and docstrings of the libraries, turned into catalogue `Shape`s.

Used by `catalogue_gen` only. A type it does not know how to say in JSON is an error naming
the argument, not a silent "any": a library upgrade that adds one gets looked at.
"""

from __future__ import annotations

import dataclasses
import enum
import re
import types
import typing
from typing import Any

import torch

from kubetune_api.argument_catalogue import ANY, Shape


class UnmappedTypeError(TypeError):
    """An annotation with no JSON form the generator knows; the message names the argument."""


# Only string values: kubetune passes what YAML gives, and these classes are converted from
# their value (TrainingArguments.__post_init__ calls IntervalStrategy(value) and the like).
def _enum_values(cls: type[enum.Enum]) -> tuple[str, ...]:
    return tuple(str(member.value) for member in cls)


def torch_dtype_names() -> tuple[str, ...]:
    """Every `torch.<name>` that is a dtype: what `getattr(torch, value)` accepts as a dtype."""
    return tuple(sorted(name for name in dir(torch) if isinstance(getattr(torch, name, None), torch.dtype)))


def _merge(shapes: list[Shape], nullable: bool) -> Shape:
    """One shape for a Union's members: a single JSON type, or ANY listing what it accepts."""
    by_type: dict[str, list[Shape]] = {}
    for shape in shapes:
        by_type.setdefault(shape.type, []).append(shape)
    if len(by_type) > 1:
        return Shape(ANY, accepts=tuple(sorted(by_type)), nullable=nullable)
    ((kind, same),) = by_type.items()
    if kind == "string":
        # `str | SchedulerType`: the libraries convert the string to the enum (or check it
        # against the enum), so only its values pass (shape_of keeps `str | Literal` open).
        choices = tuple(dict.fromkeys(value for shape in same for value in shape.enum))
        return Shape("string", enum=choices, nullable=nullable)
    if kind == "array":
        items = [shape.items for shape in same if shape.items is not None]
        return Shape("array", items=_merge(items, False) if items else None, nullable=nullable)
    first = same[0]
    return dataclasses.replace(first, nullable=nullable)


def shape_of(annotation: Any, where: str) -> Shape:
    """The JSON shape of a Python annotation (`where` names the argument in errors)."""
    origin = typing.get_origin(annotation)
    members = typing.get_args(annotation)
    if annotation is Any:
        return Shape(ANY, accepts=("array", "boolean", "number", "object", "string"))
    if origin in (typing.Union, types.UnionType):
        nullable = type(None) in members
        rest = [member for member in members if member is not type(None)]
        merged = _merge([shape_of(member, where) for member in rest], nullable)
        converted = any(isinstance(member, type) and issubclass(member, enum.Enum) for member in rest)
        if str in rest and merged.enum and not converted:
            # `str | Literal[...]`: nothing turns the string into one of the literals, so any string passes.
            merged = dataclasses.replace(merged, enum=())
        return merged
    if origin is typing.Literal:
        if all(isinstance(value, bool) for value in members):
            return Shape("boolean")
        if all(isinstance(value, str) for value in members):
            return Shape("string", enum=tuple(members))
        raise UnmappedTypeError(f"{where}: Literal{list(members)} mixes value types")
    if origin in (list, tuple, set, frozenset):
        item_types = [member for member in members if member is not Ellipsis] or [Any]
        return Shape("array", items=_merge([shape_of(member, where) for member in item_types], False))
    if origin is dict or annotation is dict:
        value = members[1] if len(members) == 2 else Any
        return Shape("object", values=None if value is Any else shape_of(value, where))
    if annotation is bool:
        return Shape("boolean")
    if annotation is int:
        return Shape("integer")
    if annotation is float:
        return Shape("number")
    if annotation is str:
        return Shape("string")
    if annotation in (list, tuple):
        return Shape("array", items=shape_of(Any, where))
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return Shape("string", enum=_enum_values(annotation))
    if annotation is torch.dtype:
        return Shape("string", enum=torch_dtype_names())
    if isinstance(annotation, type) and dataclasses.is_dataclass(annotation):
        # A nested config class: JSON can only give a dict. Whether the library turns the dict
        # into the class is probed by the generator (see catalogue_gen.converts_dict).
        return Shape("object")
    raise UnmappedTypeError(f"{where}: no JSON form known for the annotation {annotation!r}")


def choices_origin(annotation: Any) -> str | None:
    """Where an annotation's string choices come from: "enum NAME", "Literal" or "torch dtypes"."""
    if typing.get_origin(annotation) is typing.Literal:
        return "Literal"
    for member in typing.get_args(annotation):
        found = choices_origin(member)
        if found is not None:
            return found
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return f"enum {annotation.__module__}.{annotation.__qualname__}"
    return "torch dtypes" if annotation is torch.dtype else None


def nested_config_classes(annotation: Any) -> list[type]:
    """The dataclasses named in an annotation (Optional[EvaConfig] -> [EvaConfig])."""
    found = [member for member in typing.get_args(annotation) if isinstance(member, type)]
    candidates = found if found else [annotation]
    return [c for c in candidates if isinstance(c, type) and dataclasses.is_dataclass(c) and c is not type(None)]


# "    name (`type` or str, *optional*, defaults to `x`):" in a Google-style "Args:" section.
_DOC_ARGUMENT = re.compile(r"^(?P<indent>\s+)(?P<name>\w+) \((?P<spec>[^)]*(?:\([^)]*\)[^)]*)*)\):\s*$")
_DOC_TYPES: dict[str, Shape] = {
    "bool": Shape("boolean"),
    "int": Shape("integer"),
    "float": Shape("number"),
    "str": Shape("string"),
    "list[str]": Shape("array", items=Shape("string")),
    "dict": Shape("object"),
}


def docstring_arguments(doc: str) -> dict[str, tuple[str, str]]:
    """name -> (type text, help text) from a docstring's "Args:" section."""
    lines = doc.expandtabs().splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip() == "Args:")
    found: dict[str, tuple[str, str]] = {}
    current: str | None = None
    indent = 0
    for line in lines[start + 1 :]:
        match = _DOC_ARGUMENT.match(line)
        if match and (current is None or len(match["indent"]) == indent):
            current, indent = match["name"], len(match["indent"])
            found[current] = (match["spec"], "")
        elif current is not None and line.strip() and len(line) - len(line.lstrip()) > indent:
            spec, text = found[current]
            found[current] = (spec, f"{text} {line.strip()}".strip())
        elif line.strip():
            break  # the section is over (Example:, Returns:, ...)
    return found


def shape_of_doc(spec: str, where: str) -> Shape:
    """The shape a docstring type like "`torch.dtype` or str, *optional*" names."""
    types_text = [part.strip(" `") for part in spec.split(",")[0].split(" or ")]
    if "torch.dtype" in types_text:
        # BitsAndBytesConfig resolves a string with getattr(torch, value) and then requires a dtype.
        return Shape("string", enum=torch_dtype_names())
    if len(types_text) == 1 and types_text[0] in _DOC_TYPES:
        return _DOC_TYPES[types_text[0]]
    raise UnmappedTypeError(f"{where}: no JSON form known for the documented type {spec!r}")


def json_default(value: Any) -> Any:
    """A default as JSON: enum members by value, dtypes by name, containers as lists."""
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, torch.dtype):
        return str(value).removeprefix("torch.")
    if isinstance(value, (set, frozenset, tuple)):
        return sorted(value) if isinstance(value, (set, frozenset)) else list(value)
    if value is None or isinstance(value, (bool, int, float, str, list, dict)):
        return value
    return repr(value)


def clean_help(text: str) -> str:
    """Help text on one line: newlines and runs of spaces collapsed."""
    return " ".join(text.split())
