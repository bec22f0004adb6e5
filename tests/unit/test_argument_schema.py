"""CRD schema fragments for trainingArgs, lora and quantize: structural, documented, small, and strict."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from kubetune_api.argument_catalogue import KINDS, load_catalogue
from kubetune_api.argument_schema import (
    DESCRIPTION_LIMIT,
    argument_schema,
    cel_rules,
    cross_field_rules,
    mutually_exclusive_pairs,
    trimmed,
)

ROOT = Path(__file__).resolve().parents[2]
# The three fragments together; the whole CRD must stay far below the 256 KiB that a
# client-side `kubectl apply` can store in its last-applied annotation.
FRAGMENTS_BUDGET = 48 * 1024
BANNED = ("$ref", "anyOf", "oneOf", "allOf", "not", "nullable", "default", "title", "examples", "const")


def walk(node: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    yield path, node
    for name, child in (node.get("properties") or {}).items():
        yield from walk(child, f"{path}.{name}")
    for key, suffix in (("items", "[]"), ("additionalProperties", "{}")):
        if isinstance(node.get(key), dict):
            yield from walk(node[key], path + suffix)


@pytest.mark.parametrize("kind", KINDS)
def test_fragments_are_structural(kind: str) -> None:
    for path, node in walk(argument_schema(kind)):  # type: ignore[arg-type]
        assert "type" in node or node.get("x-kubernetes-preserve-unknown-fields") is True, f"{path}: no type"
        assert not set(BANNED) & set(node), f"{path}: {set(BANNED) & set(node)}"
        assert not ("properties" in node and "additionalProperties" in node), path
        if node.get("type") == "array":
            assert isinstance(node.get("items"), dict), f"{path}: an array needs items"


@pytest.mark.parametrize("kind", KINDS)
def test_every_argument_is_documented_briefly(kind: str) -> None:
    schema = argument_schema(kind)  # type: ignore[arg-type]
    assert schema["description"]
    for name, node in schema["properties"].items():
        assert node["description"], name
        # Help text is trimmed; what follows it (accepted shapes, default) is short.
        assert len(node["description"]) <= DESCRIPTION_LIMIT + 150, name


def test_fragments_stay_small() -> None:
    sizes = {kind: len(json.dumps(argument_schema(kind), separators=(",", ":"))) for kind in KINDS}  # type: ignore[arg-type]
    assert sum(sizes.values()) <= FRAGMENTS_BUDGET, sizes


def test_kubectl_explain_reads_the_library_help() -> None:
    learning_rate = argument_schema("trainingArgs")["properties"]["learning_rate"]
    help_text = load_catalogue()["trainingArgs"].arguments["learning_rate"].help
    assert learning_rate["description"].startswith(help_text)
    assert learning_rate["type"] == "number" and learning_rate["minimum"] == 0
    logging_steps = argument_schema("trainingArgs")["properties"]["logging_steps"]["description"]
    assert "Default in kubetune: 0.05 (library: 500)." in logging_steps


def test_types_enums_and_bounds_are_the_catalogue_s() -> None:
    training = argument_schema("trainingArgs")["properties"]
    assert training["per_device_train_batch_size"] == {**training["per_device_train_batch_size"], "minimum": 1}
    assert "linear" in training["lr_scheduler_type"]["enum"]
    assert training["fsdp"].get("x-kubernetes-preserve-unknown-fields") is True and "type" not in training["fsdp"]
    assert training["label_names"]["items"] == {"type": "string"}
    assert training["liger_kernel_config"]["additionalProperties"] == {"type": "boolean"}
    lora = argument_schema("lora")["properties"]
    assert (lora["r"]["minimum"], lora["lora_dropout"]["minimum"], lora["lora_dropout"]["maximum"]) == (1, 0, 1)
    quantize = argument_schema("quantize")["properties"]
    assert quantize["bnb_4bit_quant_type"]["enum"] == ["fp4", "nf4"]


@pytest.mark.parametrize(
    ("kind", "value"),
    [
        ("trainingArgs", {"num_train_epochs": "three"}),
        ("trainingArgs", {"lr_scheduler_type": "cosin"}),
        ("trainingArgs", {"per_device_train_batch_size": 0}),
        ("lora", {"r": 0}),
        ("lora", {"lora_dropout": 1.5}),
        ("quantize", {"bnb_4bit_quant_type": "nf5"}),
        ("quantize", {"load_in_4bit": "yes"}),
    ],
)
def test_wrong_types_choices_and_bounds_fail_the_schema(kind: str, value: dict[str, Any]) -> None:
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(value, argument_schema(kind))  # type: ignore[arg-type]


def test_unknown_names_are_not_declared_unless_asked() -> None:
    """Undeclared fields are what strict field validation refuses; preserve_unknown keeps them."""
    strict = argument_schema("trainingArgs")
    assert "learning_rat" not in strict["properties"] and "x-kubernetes-preserve-unknown-fields" not in strict
    assert argument_schema("trainingArgs", preserve_unknown=True)["x-kubernetes-preserve-unknown-fields"] is True


@pytest.mark.parametrize("path", sorted((ROOT / "examples").glob("*.yaml")), ids=lambda p: p.name)
def test_examples_fit_the_fragments(path: Path) -> None:
    for document in yaml.safe_load_all(path.read_text()):
        if not document or document.get("kind") != "FineTuneJob":
            continue
        spec = document["spec"]
        jsonschema.validate(spec.get("trainingArgs", {}), argument_schema("trainingArgs"))
        for kind in ("lora", "quantize"):
            if isinstance(spec.get(kind), dict):
                jsonschema.validate(spec[kind], argument_schema(kind))  # type: ignore[arg-type]


def test_rules_as_data_for_the_crd_generator() -> None:
    assert ("load_in_4bit", "load_in_8bit") in mutually_exclusive_pairs("quantize")
    assert ("fp16", "bf16") in mutually_exclusive_pairs("trainingArgs")
    assert {rule.id for rule in cross_field_rules("quantize")} == {"4bit-xor-8bit"}
    (quantize_rule,) = cel_rules("quantize")
    assert quantize_rule["message"] == "spec.quantize: load_in_4bit and load_in_8bit are mutually exclusive; keep one"
    # Rules on untyped fields (init_lora_weights takes a boolean or a string) have no CEL form.
    lora_ids = {rule.id for rule in cross_field_rules("lora")}
    assert "lora-bias-needs-plain-init" in lora_ids and len(cel_rules("lora")) < len(lora_ids)


def test_trimmed_cuts_at_a_sentence_or_a_word() -> None:
    assert trimmed("short") == "short"
    text = "First sentence here. " + "word " * 60
    assert trimmed(text, 30) == "First sentence here."
    assert trimmed("word " * 60, 40).endswith(" ...") and len(trimmed("word " * 60, 40)) <= 44
