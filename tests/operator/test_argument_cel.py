"""The CEL form of the catalogue's cross-field rules: it compiles, and its verdict is the spec model's.

The rules sit on a schema node built from `argument_schema(kind)` the way the CRD generator
would place them, and run through celrules (the API server's CEL, as the CRD's own rules).
"""

from __future__ import annotations

from typing import Any

import pytest
from celrules import Validator

from kubetune_api.argument_schema import argument_schema, cel_rules
from kubetune_api.arguments import check_arguments

CASES: list[tuple[str, dict[str, Any]]] = [
    ("trainingArgs", {}),
    ("trainingArgs", {"fp16": True}),
    ("trainingArgs", {"fp16": True, "bf16": True}),
    ("trainingArgs", {"fp16": True, "bf16": False}),
    ("trainingArgs", {"fp16_full_eval": True, "bf16_full_eval": True}),
    ("trainingArgs", {"dataloader_prefetch_factor": 2}),
    ("trainingArgs", {"dataloader_prefetch_factor": 2, "dataloader_num_workers": 2}),
    ("trainingArgs", {"lr_scheduler_type": "greedy"}),
    ("trainingArgs", {"lr_scheduler_type": "reduce_lr_on_plateau", "eval_strategy": "epoch"}),
    ("trainingArgs", {"lr_scheduler_type": "cosine"}),
    ("trainingArgs", {"logging_steps": 0.0}),
    ("trainingArgs", {"logging_steps": 0.0, "logging_strategy": "epoch"}),
    ("trainingArgs", {"logging_strategy": "steps"}),
    ("trainingArgs", {"group_by_length": True}),
    ("trainingArgs", {"group_by_length": False, "train_sampling_strategy": "random"}),
    ("lora", {"lora_bias": True}),
    ("lora", {"lora_bias": True, "use_dora": True}),
    ("quantize", {"load_in_4bit": True}),
    ("quantize", {"load_in_4bit": True, "load_in_8bit": True}),
    ("quantize", {"load_in_4bit": False, "load_in_8bit": True}),
]


def validator(kind: str) -> Validator:
    node = {**argument_schema(kind), "x-kubernetes-validations": cel_rules(kind)}  # type: ignore[arg-type]
    return Validator({"type": "object", "properties": {kind: node}})


@pytest.mark.parametrize("kind", ["trainingArgs", "lora", "quantize"])
def test_rules_compile(kind: str) -> None:
    assert validator(kind).programs  # compile_rule raises for a rule the API server would refuse


@pytest.mark.parametrize(("kind", "values"), CASES, ids=[f"{k}-{sorted(v)}" for k, v in CASES])
def test_cel_and_the_spec_model_agree(kind: str, values: dict[str, Any]) -> None:
    from_cel = sorted(violation.message for violation in validator(kind).violations({kind: values}))
    from_model = sorted(f"spec.{kind}: {problem.message}" for problem in check_arguments(kind, values))  # type: ignore[arg-type]
    assert from_cel == from_model


def test_the_cases_break_every_rule_cel_can_express() -> None:
    broken = {v.message for kind, values in CASES for v in validator(kind).violations({kind: values})}
    expressible = {rule["message"] for kind in ("trainingArgs", "lora", "quantize") for rule in cel_rules(kind)}  # type: ignore[arg-type]
    assert broken == expressible
