"""What every spec model shares: camelCase on the wire, unknown fields refused, and
validation errors that read as one line per problem naming the field as written in YAML.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic.alias_generators import to_camel

from kubetune_api.arguments import ArgumentError


class SpecModel(BaseModel):
    """camelCase on the wire, snake_case in Python, unknown fields rejected."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        use_enum_values=True,
    )


# What a field's pattern means, in words: "should match pattern '^...$'" helps nobody.
PATTERN_HINTS: dict[str, str] = {}


def explain_pattern(pattern: str, hint: str) -> str:
    """Register the words that replace `pattern` in validation messages; returns `pattern`."""
    PATTERN_HINTS[pattern] = hint
    return pattern


def describe_validation_error(error: ValidationError, prefix: str = "spec") -> str:
    """One line per problem, each naming the field the way a user writes it in YAML."""
    lines = []
    for problem in error.errors():
        path = ".".join([prefix, *(str(part) for part in problem["loc"])]) if problem["loc"] else prefix
        cause = (problem.get("ctx") or {}).get("error")
        if isinstance(cause, ArgumentError):
            # The argument checks know where below the field each mistake is.
            lines += [found.render(path) for found in cause.problems]
            continue
        message = problem["msg"].removeprefix("Value error, ")
        hint = PATTERN_HINTS.get(str((problem.get("ctx") or {}).get("pattern")))
        if problem["type"] == "string_pattern_mismatch" and hint:
            message = f"{problem['input']!r} is not {hint}"
        lines.append(f"{path}: {message}")
    return "; ".join(lines)
