"""Outputs know their run, end to end through run_training (issue: a re-created FineTuneJob).

Delete a FineTuneJob and create one with the same name: the default output is the same
folder. With another spec it must fail at preflight (OutputInUse, before any model load)
instead of resuming the old run's checkpoints; with the same spec it resumes them. S3
runs go through moto's server (s3fs over HTTP): data read from the store, checkpoints
uploaded while training, a resume from a fresh staging folder.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from moto_s3 import Bucket
from runtime_helpers import toy_rows
from test_runtime_runner import make_spec, stop_after
from tiny_models import TinyModels

from kubetune_api.protocol import ENV_STAGING_DIR, EXIT_INVALID_CONFIG, Progress, exit_code
from kubetune_trainer.artifacts import RUN_MARKER
from kubetune_trainer.hftrainer import HFTrainer
from kubetune_trainer.runner import run_training

JOB = "team/sentiment"


def refuse_model_loads(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("HFTrainer was called: OutputInUse must come before any model load")

    monkeypatch.setattr(HFTrainer, "__call__", refuse)


def test_a_new_spec_under_the_old_name_is_refused_not_resumed(
    tiny_models: TinyModels, data: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "default-output" / "team" / "sentiment"
    old = make_spec(tiny_models.bert, data, str(out), trainingArgs={"max_steps": 4, "save_steps": 2})
    assert run_training(old, job_name=JOB, job_uid="uid-old").outcome == "Succeeded"
    finished = (out / "kubetune.json").read_text()

    # Same name, new learning rate, and fewer steps than the old run's global_step: resuming
    # would train 0 steps and publish the old model as the new one.
    refuse_model_loads(monkeypatch)
    new = make_spec(tiny_models.bert, data, str(out), trainingArgs={"max_steps": 2, "learning_rate": 5e-4})
    result = run_training(new, job_name=JOB, job_uid="uid-new")
    assert result.outcome == "Failed" and result.reason == "OutputInUse"
    assert exit_code(result) == EXIT_INVALID_CONFIG  # retrying cannot help
    message = result.message or ""
    assert f"output.uri {out} belongs to FineTuneJob {JOB} (uid uid-old, started " in message
    assert "differs in trainingArgs.learning_rate, trainingArgs.max_steps" in message
    assert f"give this run another output.uri, or delete the old output ({out})" in message
    assert (out / "kubetune.json").read_text() == finished  # the other run's output is left alone


def test_the_same_spec_recreated_resumes_its_checkpoints(
    tiny_models: TinyModels, data: dict[str, str], tmp_path: Path
) -> None:
    out = tmp_path / "out"
    spec = make_spec(tiny_models.bert, data, str(out), trainingArgs={"num_train_epochs": 2, "save_steps": 2})
    first = run_training(spec, job_name=JOB, job_uid="uid-old", on_progress=stop_after(3, []))
    assert first.outcome == "Failed" and (out / "checkpoint-2" / "trainer_state.json").is_file()
    assert json.loads((out / RUN_MARKER).read_text())["uid"] == "uid-old"  # written before the first checkpoint

    seen: list[Progress] = []
    result = run_training(spec, job_name=JOB, job_uid="uid-new", on_progress=seen.append)
    assert result.outcome == "Succeeded", result.message
    assert seen[0].step == 2  # resumed, not restarted
    assert any("with the same training spec: taken over" in warning for warning in result.warnings)
    marker = json.loads((out / RUN_MARKER).read_text())
    meta = json.loads((out / "kubetune.json").read_text())
    assert marker["uid"] == meta["jobUid"] == "uid-new" and meta["trainingHash"] == marker["trainingHash"]


def test_files_of_an_earlier_run_do_not_outlive_it(
    tiny_models: TinyModels, data: dict[str, str], tmp_path: Path
) -> None:
    out = tmp_path / "adapter"
    lora = {"r": 4, "lora_alpha": 8, "target_modules": ["query", "value"]}
    spec = make_spec(tiny_models.bert, data, str(out), lora=lora, trainingArgs={"max_steps": 2, "save_strategy": "no"})
    merged = spec.model_copy(update={"output": spec.output.model_copy(update={"merge_adapter": True})})  # type: ignore[union-attr]
    assert run_training(merged, job_name=JOB).outcome == "Succeeded" and (out / "merged").is_dir()

    # Again, without mergeAdapter (not a training change): no stale merged/ beside the new adapter.
    result = run_training(spec, job_name=JOB)
    assert result.outcome == "Succeeded", result.message
    assert not (out / "merged").exists()
    assert "mergedUri" not in json.loads((out / "kubetune.json").read_text())["artifact"]


def test_s3_data_checkpoints_resume_and_ownership(
    tiny_models: TinyModels, s3: Bucket, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ENV_STAGING_DIR, str(tmp_path / "staging"))
    (tmp_path / "staging").mkdir()
    with s3.fs.open(s3.path("data/train.csv"), "w") as handle:
        pd.DataFrame(toy_rows(32)).to_csv(handle, index=False)
    for index in range(2):  # validation: a folder of parquet shards
        with s3.fs.open(s3.path(f"data/validation/part-{index}.parquet"), "wb") as handle:
            pd.DataFrame(toy_rows(4, seed=index + 1)).to_parquet(handle)
    s3_data = {"train": s3.uri("data/train.csv"), "validation": s3.uri("data/validation")}
    output = s3.uri("models/run")
    spec = make_spec(tiny_models.bert, s3_data, output, trainingArgs={"num_train_epochs": 2, "save_steps": 3})

    seen: list[Progress] = []
    first = run_training(spec, job_name=JOB, job_uid="uid-1", on_progress=stop_after(4, seen))
    assert first.outcome == "Failed"
    # Uploaded while training: the marker first, then checkpoint-3 as soon as it was saved.
    assert s3.names("models/run") == ["checkpoint-3", RUN_MARKER]
    assert s3.exists("models/run/checkpoint-3/trainer_state.json")

    # A retried pod on another node: a fresh staging folder; the checkpoint comes from S3.
    second: list[Progress] = []
    result = run_training(spec, job_name=JOB, job_uid="uid-1", on_progress=second.append)
    assert result.outcome == "Succeeded", result.message
    assert result.artifact is not None and result.artifact.uri == output
    assert second[0].step == 3 and "accuracy" in result.metrics
    for name in ("config.json", "model.safetensors", "tokenizer.json", "kubetune.json", RUN_MARKER):
        assert s3.exists("models/run", name), name
    meta = json.loads(s3.fs.cat_file(s3.path("models/run/kubetune.json")))
    assert meta["resumedFromStep"] == 3 and meta["globalStep"] == 8 and meta["data"]["validationRows"] == 8

    # Another spec on the same S3 output: refused, nothing downloaded or removed.
    before = s3.names("models/run")
    refuse_model_loads(monkeypatch)
    other = make_spec(tiny_models.bert, s3_data, output, trainingArgs={"num_train_epochs": 3})
    refused = run_training(other, job_name=JOB, job_uid="uid-2")
    assert refused.reason == "OutputInUse" and "(uid uid-1, started " in (refused.message or "")
    assert s3.names("models/run") == before
