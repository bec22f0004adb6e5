"""The CRD: generated from the models, structural, documented, and the examples fit it."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from kubetune_api.cli import main
from kubetune_api.manifest import parse_manifest
from kubetune_api.training import TASK_NAMES
from kubetune_api.validation import ClusterPolicy
from kubetune_operator.crd import OPAQUE_FIELDS, build_crd, render_crd_yaml

ROOT = Path(__file__).resolve().parents[2]
CRD_FILE = ROOT / "crds" / "finetunejobs.kubetune.io.yaml"
TASKS = set(TASK_NAMES)
EXAMPLES = sorted(p for p in (ROOT / "examples").glob("*.yaml") if p.name != "quickstart.yaml")


def schema() -> dict[str, Any]:
    return build_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


def walk(node: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    yield path, node
    for name, child in (node.get("properties") or {}).items():
        yield from walk(child, f"{path}.{name}")
    if isinstance(node.get("items"), dict):
        yield from walk(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        yield from walk(node["additionalProperties"], f"{path}{{}}")


def test_file_matches_the_models(capsys: pytest.CaptureFixture[str]) -> None:
    assert CRD_FILE.read_text() == render_crd_yaml(), "run: kubetune crd > crds/finetunejobs.kubetune.io.yaml"
    assert main(["crd"]) == 0
    assert capsys.readouterr().out == CRD_FILE.read_text()


def test_schema_is_structural() -> None:
    for path, node in walk(schema()):
        assert "type" in node or node.get("x-kubernetes-preserve-unknown-fields"), f"{path}: no type"
        for banned in ("$ref", "anyOf", "oneOf", "allOf", "title", "examples", "const", "nullable"):
            assert banned not in node, f"{path}: {banned}"
        if "properties" in node:
            assert "additionalProperties" not in node, path
            assert set(node.get("required", [])) <= set(node["properties"]), path
        assert node.get("additionalProperties") is not False, path


def test_every_field_is_described() -> None:
    for path, node in walk(schema()):
        # metadata is the exception: the API server refuses anything but its type there.
        if path and path != ".metadata" and not path.endswith(("[]", "{}")):
            assert node.get("description"), f"{path} has no description"


def test_names_columns_and_subresource() -> None:
    crd = build_crd()
    names = crd["spec"]["names"]
    assert (names["kind"], names["plural"], names["shortNames"], names["categories"]) == (
        "FineTuneJob",
        "finetunejobs",
        ["ftj"],
        ["kubetune"],
    )
    version = crd["spec"]["versions"][0]
    assert version["subresources"] == {"status": {}}
    assert [c["name"] for c in version["additionalPrinterColumns"]] == [
        "Phase",
        "Task",
        "Base",
        "Progress",
        "Loss",
        "Age",
    ]
    spec = schema()["properties"]["spec"]
    assert set(spec["properties"]["task"]["enum"]) == TASKS
    assert spec["required"] == ["base", "data"]
    assert spec["properties"]["resources"]["properties"]["gpus"]["minimum"] == 0


def test_cel_rules_make_the_spec_immutable_except_suspend() -> None:
    spec = schema()["properties"]["spec"]
    props = spec["properties"]
    for name, field in props.items():
        rules = [r["rule"] for r in field.get("x-kubernetes-validations", [])]
        if name == "suspend":
            assert not any("oldSelf" in r for r in rules)
        elif name not in OPAQUE_FIELDS:
            assert "self == oldSelf" in rules, name
    # Every field a rule names exists where the rule sits (a cheap compile check).
    for path, node in walk(schema()):
        for rule in node.get("x-kubernetes-validations", []):
            for ref in re.findall(r"(?:self|oldSelf)\.([A-Za-z]+)\b(?!\()", rule["rule"]):
                assert ref in node.get("properties", {}), f"{path}: {rule['rule']} names unknown field {ref}"
            assert rule["rule"].count("(") == rule["rule"].count(")"), rule
            assert "\n" not in rule["message"]


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_examples_validate_against_the_crd(path: Path) -> None:
    document = yaml.safe_load(path.read_text())
    jsonschema.validate(document, schema())
    # And through the one validation path, with the operator's settings the docs install.
    parse_manifest(document, ClusterPolicy(default_output="pvc://models/runs"))


def test_one_example_per_task() -> None:
    tasks = {yaml.safe_load(p.read_text())["spec"]["task"] for p in EXAMPLES}
    assert tasks == TASKS
    qlora = [yaml.safe_load(p.read_text())["spec"] for p in EXAMPLES]
    assert any(
        s.get("quantize") is True and s.get("lora") is True and s["task"] == "language-generation" for s in qlora
    )


def test_schema_rejects_what_the_model_rejects() -> None:
    good = yaml.safe_load(EXAMPLES[0].read_text())
    for bad_spec in ({"task": "poetry"}, {"resources": {"gpus": -1}}, {"backoffLimit": 1000}):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate({**good, "spec": {**good["spec"], **bad_spec}}, schema())
