"""trainingArgs, lora and quantize checked against the argument catalogue, without torch.

Every mistake of issue 9 is refused by the spec model, so by `kubetune validate`, the
operator and the trainer alike, with a message that names the YAML field and the fix.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from kubetune_api.argument_catalogue import KINDS, load_catalogue
from kubetune_api.arguments import (
    UNCHECKED_FIELD,
    ArgumentProblem,
    as_library_values,
    check_lora,
    check_quantize,
    check_training_args,
)
from kubetune_api.finetunejob import FineTuneJobSpec
from kubetune_api.manifest import ManifestError, parse_manifest
from kubetune_api.spec_base import describe_validation_error
from kubetune_api.training import TrainingSpec
from kubetune_api.validation import LOCAL_POLICY, InvalidSpecError, validate_spec

EXAMPLES = sorted((Path(__file__).resolve().parents[2] / "examples").glob("*.yaml"))
MINIMAL = {"base": {"model": "org/model"}, "data": {"train": "train.csv"}, "lora": True}
TRANSFORMERS = load_catalogue().libraries["transformers"]

MISTAKES: list[tuple[dict[str, Any], str]] = [
    ({"lora": {"r": 0}}, "spec.lora.r: must be a positive integer, got 0"),
    ({"lora": {"r": -4}}, "spec.lora.r: must be a positive integer, got -4"),
    ({"lora": {"r": 8.5}}, "spec.lora.r: expected an integer, got 8.5"),
    ({"lora": {"lora_dropout": 1.5}}, "spec.lora.lora_dropout: must be between 0 and 1, got 1.5"),
    ({"lora": {"lora_dropout": -0.1}}, "spec.lora.lora_dropout: must be between 0 and 1, got -0.1"),
    ({"lora": "yes"}, 'spec.lora: expected true, false or an object of LoraConfig arguments, got "yes"'),
    ({"lora": 1}, "spec.lora: expected true, false or an object of LoraConfig arguments, got 1"),
    ({"lora": {"lora_alfa": 16}}, "spec.lora.lora_alfa: unknown LoraConfig argument (did you mean: lora_alpha"),
    ({"lora": {"bias": "some"}}, 'spec.lora.bias: expected one of none, all, lora_only; got "some"'),
    ({"lora": {"lora_bias": True, "use_dora": True}}, "spec.lora: lora_bias is not supported with use_dora; drop one"),
    (
        {"quantize": {"load_in_4bit": True, "load_in_8bit": True}},
        "spec.quantize: load_in_4bit and load_in_8bit are mutually exclusive; keep one",
    ),
    (
        {"quantize": {"load_in_4bit": True, "bnb_4bit_quant_type": "nf5"}},
        'spec.quantize.bnb_4bit_quant_type: expected one of fp4, nf4; got "nf5" (did you mean: nf4?)',
    ),
    (
        {"quantize": {"load_in_4bits": True}},
        "spec.quantize.load_in_4bits: unknown BitsAndBytesConfig argument (did you mean: load_in_4bit, load_in_8bit?)",
    ),
    (
        {"quantize": {"load_in_4bit": "yes"}},
        'spec.quantize.load_in_4bit: expected true or false, got "yes"',
    ),
    (
        {"quantize": "4bit"},
        'spec.quantize: expected true, false or an object of BitsAndBytesConfig arguments, got "4bit"',
    ),
    (
        {"trainingArgs": {"learning_rat": 1e-4}},
        "spec.trainingArgs.learning_rat: unknown training argument (did you mean: learning_rate?)",
    ),
    (
        {"trainingArgs": {"num_train_epochs": "three"}},
        'spec.trainingArgs.num_train_epochs: expected a number, got "three"',
    ),
    (
        {"trainingArgs": {"learning_rate": "1e-4"}},
        'spec.trainingArgs.learning_rate: expected a number, got "1e-4" (YAML reads 1e-4 as text; write 1.0e-4)',
    ),
    (
        {"trainingArgs": {"per_device_train_batch_size": "16"}},
        'spec.trainingArgs.per_device_train_batch_size: expected an integer, got "16" '
        "(a quoted number is text; remove the quotes)",
    ),
    (
        {"trainingArgs": {"per_device_train_batch_size": 0}},
        "spec.trainingArgs.per_device_train_batch_size: must be a positive integer, got 0",
    ),
    ({"trainingArgs": {"warmup_steps": -5}}, "spec.trainingArgs.warmup_steps: must not be negative, got -5"),
    ({"trainingArgs": {"bf16": "true"}}, 'spec.trainingArgs.bf16: expected true or false, got "true"'),
    ({"trainingArgs": {"num_train_epochs": None}}, "spec.trainingArgs.num_train_epochs: expected a number, got null"),
    (
        {"trainingArgs": {"eval_strategy": "sometimes"}},
        'spec.trainingArgs.eval_strategy: expected one of no, steps, epoch; got "sometimes"',
    ),
    (
        {"trainingArgs": {"optim": "adamw"}},
        'spec.trainingArgs.optim: "adamw" is not one of the 41 choices (did you mean:',
    ),
    ({"trainingArgs": {"report_to": 5}}, "spec.trainingArgs.report_to: expected a list or a string, got 5"),
    (
        {"trainingArgs": {"label_names": ["labels", 3]}},
        "spec.trainingArgs.label_names[1]: expected a string, got 3",
    ),
    (
        {"trainingArgs": {"fp16": True, "bf16": True}},
        "spec.trainingArgs: fp16 and bf16 are mutually exclusive; keep one",
    ),
    (
        {"trainingArgs": {"lr_scheduler_type": "reduce_lr_on_plateau"}},
        "spec.trainingArgs: lr_scheduler_type reduce_lr_on_plateau and greedy need an eval_strategy (steps or epoch)",
    ),
    (
        {"trainingArgs": {"dataloader_prefetch_factor": 2}},
        "spec.trainingArgs: dataloader_prefetch_factor needs dataloader_num_workers above 0",
    ),
    (
        {"trainingArgs": {"group_by_length": True, "train_sampling_strategy": "random"}},
        "spec.trainingArgs: group_by_length is kubetune's alias of train_sampling_strategy; set one of them",
    ),
    ({"trainingArgs": {"output_dir": "/tmp/x"}}, "spec.trainingArgs.output_dir: set by kubetune; set spec.output.uri"),
    (
        {"trainingArgs": {"parallelism_config": {}}},
        "spec.trainingArgs.parallelism_config: a Python object (accelerate ParallelismConfig)",
    ),
    (
        {"trainingArgs": {"completely_new_knob": 1}},
        f"spec.trainingArgs.completely_new_knob: unknown training argument (checked against transformers "
        f"{TRANSFORMERS}); an argument of a newer transformers in a custom trainer image goes under "
        "spec.uncheckedTrainingArgs",
    ),
    (
        {UNCHECKED_FIELD: {"learning_rate": 1e-4}},
        "spec.uncheckedTrainingArgs.learning_rate: a known training argument: move it to spec.trainingArgs",
    ),
]


def refusal(fields: dict[str, Any]) -> str:
    with pytest.raises(ValidationError) as caught:
        TrainingSpec.model_validate({**MINIMAL, **fields})
    return describe_validation_error(caught.value)


@pytest.mark.parametrize(("fields", "message"), MISTAKES, ids=[m for _, m in MISTAKES])
def test_each_mistake_is_refused_with_its_fix(fields: dict[str, Any], message: str) -> None:
    assert message in refusal(fields)


@pytest.mark.parametrize(("fields", "message"), MISTAKES[:6], ids=[m for _, m in MISTAKES[:6]])
def test_validate_and_the_operator_say_the_same(fields: dict[str, Any], message: str) -> None:
    """`kubetune validate` (parse_manifest) and the operator (validate_spec): one message."""
    raw = {**MINIMAL, **fields, "output": {"uri": "s3://bucket/model"}}
    document = {"apiVersion": "kubetune.io/v1alpha1", "kind": "FineTuneJob", "metadata": {"name": "x"}, "spec": raw}
    with pytest.raises(ManifestError) as from_validate:
        parse_manifest(document, LOCAL_POLICY)
    with pytest.raises(InvalidSpecError) as from_operator:
        validate_spec(raw, namespace="ml", name="x", policy=LOCAL_POLICY)
    assert str(from_validate.value) == str(from_operator.value)
    assert message in str(from_operator.value)


def test_every_problem_is_reported_at_once() -> None:
    text = refusal({"trainingArgs": {"learning_rat": 1, "seed": "x"}, "lora": {"r": 0}})
    assert text.count("; spec.") == 2, text


def test_switches_and_valid_objects_pass() -> None:
    for value in (None, True, False, {}):
        assert check_lora(value) == [] and check_quantize(value) == []
    assert (
        check_lora({"r": 16, "lora_alpha": 32, "target_modules": ["q", "v"], "lora_dropout": 0, "bias": "none"}) == []
    )
    assert check_quantize({"load_in_8bit": True, "llm_int8_threshold": 6}) == []
    assert check_quantize({"load_in_4bit": True, "bnb_4bit_compute_dtype": "float16"}) == []
    valid = {
        "num_train_epochs": 1,  # an integer is a number
        "fsdp": "full_shard auto_wrap",
        "fsdp_config": {"transformer_layer_cls_to_wrap": ["LlamaDecoderLayer"]},
        "deepspeed": "/etc/ds.json",
        "report_to": ["tensorboard"],
        "lr_scheduler_type": "reduce_lr_on_plateau",
        "eval_strategy": "steps",
        "save_total_limit": None,  # null: the library's own default
        "group_by_length": False,
    }
    assert check_training_args(valid) == []


def test_problems_render_below_their_field() -> None:
    problem = ArgumentProblem(("label_names", "[1]"), "expected a string, got 3")
    assert problem.render("spec.trainingArgs") == "spec.trainingArgs.label_names[1]: expected a string, got 3"
    assert ArgumentProblem((), "x").render("spec.lora") == "spec.lora: x"


def test_rules_see_defaults_of_left_out_arguments() -> None:
    # eval_strategy left out is "no"; given as steps, the scheduler is fine.
    assert check_training_args({"lr_scheduler_type": "greedy"}) != []
    assert check_training_args({"lr_scheduler_type": "greedy", "eval_strategy": "epoch"}) == []
    # logging_steps left out is kubetune's 0.05, not 0.
    assert check_training_args({"logging_strategy": "steps"}) == []
    assert check_training_args({"logging_steps": 0}) != []
    assert check_training_args({"logging_steps": 0, "logging_strategy": "epoch"}) == []


def test_numbers_become_floats_for_the_library() -> None:
    values = as_library_values("quantize", {"llm_int8_threshold": 6, "load_in_8bit": True})
    assert values == {"llm_int8_threshold": 6.0, "load_in_8bit": True}
    assert isinstance(values["llm_int8_threshold"], float) and values["load_in_8bit"] is True


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_examples_pass(path: Path) -> None:
    for document in yaml.safe_load_all(path.read_text()):
        if document and document.get("kind") == "FineTuneJob":
            FineTuneJobSpec.model_validate(document["spec"])


def test_the_catalogue_covers_the_three_kinds() -> None:
    catalogue = load_catalogue()
    counts = {kind: len(catalogue[kind].arguments) for kind in KINDS}
    assert counts["trainingArgs"] > 100 and counts["lora"] > 30 and counts["quantize"] >= 10, counts
    assert {"transformers", "peft", "torch"} <= set(catalogue.libraries)
    assert "output_dir" in catalogue["trainingArgs"].excluded
    assert catalogue["trainingArgs"].arguments["group_by_length"].alias_of == "train_sampling_strategy"
    for kind in KINDS:
        for rule in catalogue[kind].rules:
            assert set(rule.fields) <= set(catalogue[kind].arguments), rule.id


def test_the_unchecked_field_name_is_the_model_alias() -> None:
    assert TrainingSpec.model_fields["unchecked_training_args"].alias == UNCHECKED_FIELD


def test_checks_and_fragments_need_no_torch() -> None:
    code = (
        "import sys; from kubetune_api.arguments import check_training_args; "
        "from kubetune_api.argument_schema import argument_schema, cel_rules; "
        "assert check_training_args({'learning_rat': 1}); argument_schema('trainingArgs'); cel_rules('quantize'); "
        "heavy = {'torch', 'transformers', 'peft', 'datasets'} & set(sys.modules); "
        "sys.exit(f'imported {heavy}' if heavy else 0)"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_the_catalogue_file_round_trips() -> None:
    """The reader and the generator share one format: reading and writing back changes nothing."""
    from kubetune_api.argument_catalogue import CATALOGUE_FILE, Catalogue

    text = CATALOGUE_FILE.read_text(encoding="utf-8")
    assert Catalogue.from_json(text).to_json() == text


def test_the_hatch_travels_to_the_trainer() -> None:
    """The operator hands the trainer `training_part().to_job_json()`: the hatch must be in it."""
    raw = {**MINIMAL, "trainingArgs": {"seed": 1}, UNCHECKED_FIELD: {"a_newer_argument": 3}}
    job_json = FineTuneJobSpec.model_validate(raw).training_part().to_job_json()
    assert '"uncheckedTrainingArgs":{"a_newer_argument":3}' in job_json
    assert TrainingSpec.model_validate_json(job_json).all_training_args() == {"seed": 1, "a_newer_argument": 3}
