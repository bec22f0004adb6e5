"""`kubetune validate` / `kubetune run` on a tiny FineTuneJob manifest, as a user runs them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from runtime_helpers import toy_rows, write_csv
from tiny_models import TinyModels

from kubetune_api import cli
from kubetune_api.protocol import EXIT_INVALID_CONFIG, EXIT_SUCCEEDED, Artifact, Result
from kubetune_api.training import TrainingSpec
from kubetune_trainer.local_run import resolve_paths, summary


def write_manifest(folder: Path, base: Path, **training_args: object) -> Path:
    """A FineTuneJob whose data paths are relative to the manifest's folder."""
    write_csv(folder / "data" / "train.csv", toy_rows(16))
    write_csv(folder / "data" / "validation.csv", toy_rows(8, seed=3))
    manifest = {
        "apiVersion": "kubetune.io/v1alpha1",
        "kind": "FineTuneJob",
        "metadata": {"name": "tiny-job", "namespace": "ml"},
        "spec": {
            "base": {"model": str(base)},
            "data": {"train": "data/train.csv", "validation": "data/validation.csv"},
            "trainingArgs": {"num_train_epochs": 1, "per_device_train_batch_size": 8, **training_args},
            "resources": {"gpus": 0},
        },
    }
    path = folder / "job.yaml"
    path.write_text(yaml.safe_dump(manifest))
    return path


def test_validate(tiny_models: TinyModels, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    manifest = write_manifest(tmp_path, tiny_models.bert)
    assert cli.main(["validate", "--local", str(manifest)]) == EXIT_SUCCEEDED
    assert "tiny-job: valid" in capsys.readouterr().out
    # Without --local it is checked as the operator would: a local output does not outlive the pod.
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["validate", str(manifest)])
    assert exit_info.value.code == EXIT_INVALID_CONFIG
    assert "spec.output" in capsys.readouterr().err
    broken = tmp_path / "broken.yaml"
    broken.write_text(manifest.read_text().replace("trainingArgs", "trainingArguments"))
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["validate", "--local", str(broken)])
    assert exit_info.value.code == EXIT_INVALID_CONFIG
    assert "trainingArguments" in capsys.readouterr().err


def test_run_from_another_directory_with_progress(
    tiny_models: TinyModels, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest = write_manifest(tmp_path / "project", tiny_models.bert, logging_steps=1)
    workdir = tmp_path / "elsewhere"
    workdir.mkdir()
    monkeypatch.chdir(workdir)
    assert cli.main(["run", str(manifest)]) == EXIT_SUCCEEDED
    captured = capsys.readouterr()
    out = workdir / "outputs" / "tiny-job"  # default output: outputs/NAME under the current directory
    assert f"Saved the model to {out}" in captured.out
    assert "Validation accuracy: " in captured.out and "Metrics: validation loss" in captured.out
    assert "2/2" in captured.err and "loss=" in captured.err  # the tqdm bar reached the end
    assert "{'loss'" not in captured.out + captured.err  # the Trainer's raw log dicts are kept off the bar
    meta = json.loads((out / "kubetune.json").read_text())
    assert meta["job"] == "ml/tiny-job"
    assert meta["data"]["train"] == str(tmp_path / "project" / "data" / "train.csv")


def test_run_output_override_quiet_and_failure(
    tiny_models: TinyModels, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest = write_manifest(tmp_path, tiny_models.bert, max_steps=1)
    assert cli.main(["run", str(manifest), "--quiet", "--output", str(tmp_path / "custom")]) == EXIT_SUCCEEDED
    assert (tmp_path / "custom" / "model.safetensors").is_file()
    captured = capsys.readouterr()
    assert "step" not in captured.err  # --quiet: no bar
    assert "{'" not in captured.out + captured.err  # nor the Trainer's raw log dicts

    (tmp_path / "data" / "train.csv").write_text("")
    assert cli.main(["run", str(manifest), "--quiet", "--output", str(tmp_path / "custom2")]) == EXIT_INVALID_CONFIG
    assert "FAILED (InvalidData): data.train:" in capsys.readouterr().out


def test_resolve_paths(tmp_path: Path) -> None:
    (tmp_path / "models" / "mine").mkdir(parents=True)
    spec = TrainingSpec.model_validate(
        {
            "base": {"model": "models/mine"},
            "data": {"train": "data/t.csv", "validation": "s3://bucket/v.csv"},
            "output": {"uri": "out"},
        }
    )
    resolved = resolve_paths(spec, tmp_path)
    assert resolved.base.model == str(tmp_path / "models" / "mine")
    assert resolved.data.train == str(tmp_path / "data" / "t.csv")
    assert resolved.data.validation == "s3://bucket/v.csv"
    assert resolved.output is not None and resolved.output.uri == str(tmp_path / "out")
    hub = TrainingSpec.model_validate({"base": {"model": "org/name"}, "data": {"train": "/abs.csv"}})
    assert resolve_paths(hub, tmp_path).base.model == "org/name"  # a hub id stays one
    registry = {"uri": "oci://localhost:5000/team/m:v1", "checkpointUri": "runs/m"}
    pushed = TrainingSpec.model_validate({**spec.model_dump(by_alias=True, exclude_none=True), "output": registry})
    output = resolve_paths(pushed, tmp_path).output
    assert output is not None and (output.uri, output.checkpoint_uri) == (
        "oci://localhost:5000/team/m:v1",
        str(tmp_path / "runs" / "m"),  # a registry output's work folder beside the manifest
    )


def test_summary_lines() -> None:
    result = Result(
        outcome="Succeeded",
        artifact=Artifact(uri="/m", kind="adapter", merged_uri="/m/merged"),
        metrics={"accuracy": 0.925, "loss": 0.2, "train_loss": 0.31},
        warnings=["quantize dropped: no GPU"],
    )
    assert summary(result).splitlines() == [
        "Saved the LoRA adapter to /m",
        "Merged model: /m/merged",
        "Validation accuracy: 92.5%",
        "Metrics: validation loss 0.2, train_loss 0.31",
        "warning: quantize dropped: no GPU",
    ]
