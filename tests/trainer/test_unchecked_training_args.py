"""spec.uncheckedTrainingArgs: what the catalogue does not know reaches TrainingArguments, checked there.

A custom trainer image may carry a newer transformers than the catalogue was generated
from. These tests play that image by hiding an argument from the catalogue: the spec model
then refuses it under trainingArgs and takes it under uncheckedTrainingArgs, and the
trainer's preflight checks it against the transformers really installed.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from pydantic import ValidationError
from runtime_helpers import toy_rows, write_csv
from tiny_models import TinyModels

from kubetune_api import arguments
from kubetune_api.argument_catalogue import Catalogue, load_catalogue
from kubetune_api.spec_base import describe_validation_error
from kubetune_api.training import TrainingSpec
from kubetune_trainer.errors import ConfigError
from kubetune_trainer.hftrainer import HFTrainer
from kubetune_trainer.runner import check_training_args, run_training

NEWER_ARGUMENT = "ddp_timeout"  # this test's "older catalogue" does not list it; no name is close to it


@pytest.fixture()
def older_catalogue(monkeypatch: pytest.MonkeyPatch) -> Catalogue:
    """The checked-in catalogue without NEWER_ARGUMENT, as if transformers had added it since."""
    real = load_catalogue()
    training = real["trainingArgs"]
    shrunk = {name: argument for name, argument in training.arguments.items() if name != NEWER_ARGUMENT}
    kinds = {**real.kinds, "trainingArgs": dataclasses.replace(training, arguments=shrunk)}
    older = dataclasses.replace(real, kinds=kinds)
    monkeypatch.setattr(arguments, "load_catalogue", lambda: older)
    return older


def spec(tmp_path: Path, base: Path | str, **fields: object) -> TrainingSpec:
    train = write_csv(tmp_path / "train.csv", toy_rows(16))
    return TrainingSpec.model_validate(
        {
            "base": {"model": str(base)},
            "data": {"train": str(train)},
            "output": {"uri": str(tmp_path / "out")},
            **fields,
        }
    )


def test_the_older_catalogue_sends_the_new_argument_to_the_hatch(older_catalogue: Catalogue, tmp_path: Path) -> None:
    with pytest.raises(ValidationError) as caught:
        spec(tmp_path, "org/model", trainingArgs={NEWER_ARGUMENT: 600})
    assert (
        f"spec.trainingArgs.{NEWER_ARGUMENT}: unknown training argument (checked against transformers "
        f"{older_catalogue.libraries['transformers']}); an argument of a newer transformers in a custom trainer "
        "image goes under spec.uncheckedTrainingArgs"
    ) in describe_validation_error(caught.value)
    assert spec(tmp_path, "org/model", uncheckedTrainingArgs={NEWER_ARGUMENT: 600}).unchecked_training_args == {
        NEWER_ARGUMENT: 600
    }


@pytest.mark.slow
def test_a_hatch_argument_reaches_training_arguments(
    older_catalogue: Catalogue, tiny_models: TinyModels, tmp_path: Path
) -> None:
    job = spec(
        tmp_path,
        tiny_models.bert,
        trainingArgs={"max_steps": 2, "per_device_train_batch_size": 8, "save_strategy": "no"},
        uncheckedTrainingArgs={NEWER_ARGUMENT: 600},
    )
    result = run_training(job, job_name="hatch")
    assert result.outcome == "Succeeded", result.message
    meta = json.loads((tmp_path / "out" / "kubetune.json").read_text())
    assert meta["resolvedTrainingArgs"][NEWER_ARGUMENT] == 600
    assert meta["uncheckedTrainingArgs"] == {NEWER_ARGUMENT: 600}


def test_an_unknown_hatch_argument_fails_at_preflight(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("HFTrainer was called: the preflight should have refused the job")

    monkeypatch.setattr(HFTrainer, "__call__", refuse)
    result = run_training(spec(tmp_path, "org/model", uncheckedTrainingArgs={"learning_rat": 1e-4}), job_name="x")
    assert result.reason == "InvalidConfig"
    assert result.message is not None
    assert result.message.startswith(
        "uncheckedTrainingArgs: unknown training argument 'learning_rat' (did you mean: learning_rate?)"
    )


def test_a_name_in_both_places_is_refused_by_the_trainer_too() -> None:
    # The spec model refuses it first; the trainer does not rely on that (a spec built in Python).
    with pytest.raises(ConfigError, match="uncheckedTrainingArgs: seed also set in trainingArgs"):
        check_training_args({"seed": 1}, "", {"seed": 2})


def test_the_model_refuses_a_known_argument_in_the_hatch(tmp_path: Path) -> None:
    with pytest.raises(ValidationError) as caught:
        spec(tmp_path, "org/model", uncheckedTrainingArgs={"learning_rate": 1e-4, "output_dir": "/x"})
    assert describe_validation_error(caught.value) == (
        "spec.uncheckedTrainingArgs.learning_rate: a known training argument: move it to spec.trainingArgs, "
        "where it is checked; spec.uncheckedTrainingArgs.output_dir: set by kubetune; set spec.output.uri instead"
    )
