"""The training hash: what counts as the same training run (kubetune_api.training_hash)."""

from __future__ import annotations

from typing import Any

import pytest

from kubetune_api.training import TrainingSpec
from kubetune_api.training_hash import training_hash, training_relevant

BASE: dict[str, Any] = {
    "base": {"model": "org/base"},
    "data": {"train": "s3://b/train.csv"},
    "trainingArgs": {"learning_rate": 1e-3, "num_train_epochs": 2},
    "output": {"uri": "s3://b/models/a"},
}


def hashed(processes: int = 1, **changes: Any) -> str:
    spec = {**BASE, **changes}
    spec["trainingArgs"] = {**BASE["trainingArgs"], **changes.get("trainingArgs", {})}
    return training_hash(TrainingSpec.model_validate(spec), processes)


def test_the_hash_is_stable_and_names_its_algorithm() -> None:
    assert hashed() == hashed() and hashed().startswith("sha256:") and len(hashed()) == len("sha256:") + 64


@pytest.mark.parametrize(
    "change",
    [
        {"trainingArgs": {"logging_steps": 7, "save_steps": 3, "save_total_limit": 1, "eval_strategy": "steps"}},
        {"trainingArgs": {"report_to": "wandb", "run_name": "x", "dataloader_num_workers": 4, "hub_model_id": "o/m"}},
        {"output": {"uri": "s3://elsewhere/model", "mergeAdapter": True}},
        {"stride": 128, "task": "text-classification"},  # the defaults, written out
    ],
)
def test_bookkeeping_output_and_written_defaults_do_not_change_the_run(change: dict[str, Any]) -> None:
    assert hashed(**change) == hashed()


@pytest.mark.parametrize(
    "change",
    [
        {"trainingArgs": {"learning_rate": 5e-5}},
        {"trainingArgs": {"seed": 7}},
        {"trainingArgs": {"per_device_train_batch_size": 16}},
        {"base": {"model": "org/other"}},
        {"base": {"model": "org/base", "revision": "v2"}},
        {"data": {"train": "s3://b/train-v2.csv"}},
        {"data": {"train": "s3://b/train.csv", "columns": ["review", "stars"]}},
        {"maxLength": 256},
        {"lora": True},
        {"lora": {"r": 8}, "quantize": True},
        {"task": "language-generation", "data": {"train": "s3://b/train.csv", "columns": ["text"]}},
    ],
)
def test_what_is_trained_changes_the_run(change: dict[str, Any]) -> None:
    assert hashed(**change) != hashed()


def test_the_number_of_processes_is_part_of_the_run() -> None:
    """The global batch is per-device batch x processes: another trajectory."""
    assert hashed(processes=8) != hashed(processes=1)


def test_training_relevant_is_what_the_marker_shows() -> None:
    spec = TrainingSpec.model_validate({**BASE, "trainingArgs": {**BASE["trainingArgs"], "logging_steps": 5}})
    assert training_relevant(spec, 2) == {
        "base": {"model": "org/base"},
        "data": {"train": "s3://b/train.csv"},
        "trainingArgs": {"learning_rate": 1e-3, "num_train_epochs": 2},
        "processes": 2,
    }
