"""values.yaml and values.schema.json: every key documented and typed, nothing else accepted."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import jsonschema
import yaml
from chartlib import CHART

VALUES_TEXT = (CHART / "values.yaml").read_text()
VALUES = yaml.safe_load(VALUES_TEXT)
SCHEMA = json.loads((CHART / "values.schema.json").read_text())

# Kubernetes objects handed through to the pod spec as they are; the API server validates them.
PASS_THROUGH = {
    "global",
    "extraEnv",
    "podSecurityContext",
    "containerSecurityContext",
    "tolerations",
    "affinity",
    "topologySpreadConstraints",
}


def _walk(node: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    yield path, node
    if path in PASS_THROUGH:
        return
    for key, child in (node.get("properties") or {}).items():
        yield from _walk(child, f"{path}.{key}" if path else key)
    items = node.get("items")
    if isinstance(items, dict):
        yield from _walk(items, f"{path}[]")


def _value_paths(value: Any, path: str = "") -> Iterator[str]:
    if isinstance(value, dict):
        for key, child in value.items():
            child_path = f"{path}.{key}" if path else key
            yield child_path
            if not _is_free_form(child_path):
                yield from _value_paths(child, child_path)


def _schema_at(path: str) -> dict[str, Any] | None:
    node: dict[str, Any] | None = SCHEMA
    for part in path.split("."):
        node = (node or {}).get("properties", {}).get(part)
    return node


def _is_free_form(path: str) -> bool:
    """Pass-through objects and string maps: their keys are the user's, not the chart's."""
    node = _schema_at(path)
    return path in PASS_THROUGH or (node is not None and isinstance(node.get("additionalProperties"), dict))


def test_schema_closes_every_object() -> None:
    for path, node in _walk(SCHEMA):
        if node.get("type") != "object" or path in PASS_THROUGH:
            continue
        if "properties" in node:
            assert node.get("additionalProperties") is False, f"{path or '<root>'}: additionalProperties must be false"
        else:
            assert isinstance(node.get("additionalProperties"), dict), (
                f"{path}: an object without properties must type its values (or be listed as pass-through)"
            )


def test_every_value_is_in_the_schema_and_every_schema_key_has_a_default() -> None:
    value_paths = set(_value_paths(VALUES))
    schema_paths = {path for path, _ in _walk(SCHEMA) if path and "[]" not in path}
    schema_paths = {p for p in schema_paths if not any(p.startswith(f"{free}.") for free in PASS_THROUGH)}
    assert value_paths - schema_paths == set(), "values.yaml keys missing from values.schema.json"
    assert schema_paths - value_paths - {"global"} == set(), "values.schema.json keys without a default in values.yaml"


def test_defaults_validate_against_the_schema() -> None:
    jsonschema.Draft7Validator.check_schema(SCHEMA)
    jsonschema.Draft7Validator(SCHEMA).validate(VALUES)


def test_every_chart_key_is_documented_in_values_yaml() -> None:
    """Each key the chart defines has a comment right above it (cert-manager's convention)."""
    stack: list[tuple[int, str]] = []
    previous = ""
    undocumented = []
    for line in VALUES_TEXT.splitlines():
        match = re.match(r"^(\s*)([A-Za-z][A-Za-z0-9]*):", line)
        if match:
            indent, key = len(match.group(1)), match.group(2)
            while stack and stack[-1][0] >= indent:
                stack.pop()
            parent = stack[-1][1] if stack else ""
            path = f"{parent}.{key}" if parent else key
            stack.append((indent, path))
            inside_free_form = parent and (
                _is_free_form(parent) or any(parent.startswith(f"{f}.") for f in PASS_THROUGH)
            )
            is_comment = previous.strip().startswith("#") and not previous.strip().startswith("# +docs")
            if not inside_free_form and not is_comment:
                undocumented.append(path)
        if line.strip():
            previous = line
    assert undocumented == []


def test_schema_descriptions_are_the_values_yaml_comments() -> None:
    """Every chart key has a description in the schema too, taken from values.yaml."""
    for path, node in _walk(SCHEMA):
        if path and "[]" not in path and not any(path.startswith(f"{free}.") for free in PASS_THROUGH):
            assert node.get("description"), f"{path}: no description in values.schema.json"


def test_default_output_schemes_are_the_operators() -> None:
    """The schema accepts exactly the output schemes the operator's settings accept."""
    from kubetune_api.uris import PERSISTENT_WORK_SCHEMES

    pattern = SCHEMA["properties"]["defaultOutput"]["pattern"]
    schemes = re.search(r"\^\(([a-z0-9|]+)\)://", pattern)
    assert schemes is not None, pattern
    assert set(schemes.group(1).split("|")) == set(PERSISTENT_WORK_SCHEMES)  # a registry cannot be a default
    assert re.match(pattern, "")
