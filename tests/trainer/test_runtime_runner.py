"""run_training end to end on the tiny BERT: layout, metadata, adapters, resume, failures."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from runtime_helpers import toy_rows, write_csv
from tiny_models import TinyModels

from kubetune_api.protocol import EXIT_FAILED, EXIT_INVALID_CONFIG, EXIT_SUCCEEDED, Progress, Result, exit_code
from kubetune_api.training import TrainingSpec
from kubetune_trainer.hftrainer import HFTrainer
from kubetune_trainer.runner import run_training

FAST = {"per_device_train_batch_size": 8, "learning_rate": 1e-3, "logging_steps": 2}


def make_spec(base: Path | str, data: dict[str, str], output: str, **fields: Any) -> TrainingSpec:
    args = {**FAST, **fields.pop("trainingArgs", {})}
    return TrainingSpec.model_validate(
        {"base": {"model": str(base)}, "data": data, "trainingArgs": args, "output": {"uri": output}, **fields}
    )


class Interrupt(Exception):
    """Stands in for a pod being killed mid-run."""


def stop_after(step: int, seen: list[Progress]) -> Any:
    def on_progress(progress: Progress) -> None:
        seen.append(progress)
        if progress.step >= step:
            raise Interrupt(f"killed after step {progress.step}")

    return on_progress


def test_full_model_layout_metadata_and_progress(tiny_models: TinyModels, data: dict[str, str], tmp_path: Path) -> None:
    out = tmp_path / "out"
    seen: list[Progress] = []
    result = run_training(
        make_spec(tiny_models.bert, data, str(out), trainingArgs={"num_train_epochs": 2}),
        job_name="team/sentiment",
        on_progress=seen.append,
    )
    assert result.outcome == "Succeeded", result.message
    assert result.artifact is not None and result.artifact.uri == str(out) and result.artifact.kind == "full"
    assert 0.0 <= result.metrics["accuracy"] <= 1.0 and "train_loss" in result.metrics
    assert "runtime" not in result.metrics  # eval timings are not model metrics
    for name in ("config.json", "model.safetensors", "tokenizer.json", "kubetune.json"):
        assert (out / name).is_file(), name
    # Default checkpointing (every 20% of the run, last two kept) so a retry can resume.
    assert len(list(out.glob("checkpoint-*"))) == 2

    meta = json.loads((out / "kubetune.json").read_text())
    assert meta["job"] == "team/sentiment" and meta["task"] == "text-classification"
    assert meta["base"] == {"model": str(tiny_models.bert), "revision": None}
    assert meta["data"]["train"] == data["train"] and meta["data"]["trainRows"] == 32
    assert meta["data"]["validationRows"] == 8
    assert meta["trainingArgs"] == {**FAST, "num_train_epochs": 2}
    assert meta["resolvedTrainingArgs"]["save_total_limit"] == 2
    assert meta["metrics"] == result.metrics and meta["artifact"] == {"kind": "full", "uri": str(out)}
    assert meta["globalStep"] == 8 and meta["resumedFromStep"] is None
    assert {"torch", "transformers", "datasets", "peft", "python", "kubetune"} <= set(meta["versions"])
    assert meta["startedAt"] < meta["finishedAt"] and meta["durationSeconds"] > 0
    assert meta["quantize"] == {"requested": None, "applied": False}

    # One report at the start (maxSteps known), one per logging step, eval, the summary.
    assert seen[0].step == 0 and seen[0].max_steps == 8
    assert [p.step for p in seen if p.loss is not None][:4] == [2, 4, 6, 8]
    assert all(p.max_steps == 8 for p in seen)
    assert seen[-1].step == 8 and seen[-1].eval["accuracy"] == result.metrics["accuracy"]
    assert seen[-1].learning_rate is not None and seen[-1].elapsed_seconds is not None


def test_lora_adapter_and_merged_model(tiny_models: TinyModels, data: dict[str, str], tmp_path: Path) -> None:
    out = tmp_path / "adapter"
    spec = make_spec(
        tiny_models.bert,
        data,
        str(out),
        lora={"r": 4, "lora_alpha": 8, "target_modules": ["query", "value"]},
        trainingArgs={"max_steps": 3, "save_strategy": "no"},
    )
    spec.output.merge_adapter = True  # type: ignore[union-attr]
    result = run_training(spec, job_name="adapter")
    assert result.outcome == "Succeeded", result.message
    assert result.artifact is not None and result.artifact.kind == "adapter"
    assert result.artifact.merged_uri == f"{out}/merged"
    assert (out / "adapter_config.json").is_file() and (out / "adapter_model.safetensors").is_file()
    assert not (out / "model.safetensors").exists()  # the adapter only, not a copy of the base
    from transformers import AutoModelForSequenceClassification

    merged = AutoModelForSequenceClassification.from_pretrained(out / "merged")
    assert merged.config.num_labels == 2 and set(merged.config.label2id) == {"cat", "dog"}
    assert not any("lora" in name for name, _ in merged.named_parameters())
    assert (out / "merged" / "tokenizer.json").is_file()
    assert json.loads((out / "kubetune.json").read_text())["artifact"]["mergedUri"] == f"{out}/merged"


def test_rerun_resumes_from_latest_checkpoint(tiny_models: TinyModels, data: dict[str, str], tmp_path: Path) -> None:
    out = tmp_path / "resume"
    spec = make_spec(
        tiny_models.bert, data, str(out), trainingArgs={"num_train_epochs": 3, "save_steps": 2, "logging_steps": 1}
    )
    first: list[Progress] = []
    interrupted = run_training(spec, job_name="resume", on_progress=stop_after(5, first))
    assert interrupted.outcome == "Failed" and interrupted.reason == "TrainingError"
    assert "killed after step 5" in (interrupted.message or "")
    assert (out / "checkpoint-4").is_dir() and not (out / "kubetune.json").exists()

    second: list[Progress] = []
    result = run_training(spec, job_name="resume", on_progress=second.append)
    assert result.outcome == "Succeeded", result.message
    # The second run starts at the checkpoint's step, not at 0, and finishes the plan.
    assert second[0].step == 4 and second[0].max_steps == 12
    assert min(p.step for p in second) == 4 and second[-1].step == 12
    meta = json.loads((out / "kubetune.json").read_text())
    assert meta["resumedFromStep"] == 4 and meta["globalStep"] == 12
    assert result.warnings[0].startswith("resumed from checkpoint-4 (step 4)")


def _no_model_load(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("HFTrainer was called: the error should come before any model load")

    monkeypatch.setattr(HFTrainer, "__call__", refuse)


def test_config_errors_come_before_data_and_model(
    data: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _no_model_load(monkeypatch)
    out = str(tmp_path / "o")
    # The spec model refuses a misspelt trainingArgs name; one passed through the escape hatch
    # meets the installed TrainingArguments here, before the (missing) data is read.
    missing_data = {"train": str(tmp_path / "missing.csv")}
    bad_args = make_spec("org/model", missing_data, out, uncheckedTrainingArgs={"num_epochs": 1})
    result = run_training(bad_args, job_name="x")
    assert result.reason == "InvalidConfig" and exit_code(result) == EXIT_INVALID_CONFIG
    assert "uncheckedTrainingArgs: unknown training argument 'num_epochs' (did you mean: num_train_epochs?)" in (
        result.message or ""
    )

    missing = run_training(make_spec("org/model", {"train": str(tmp_path / "missing.csv")}, out), job_name="x")
    assert missing.reason == "InvalidData" and "data file not found" in (missing.message or "")

    no_base = run_training(make_spec(tmp_path / "no-such-model", data, out), job_name="x")
    assert no_base.reason == "InvalidConfig" and "no model folder" in (no_base.message or "")
    pvc_base = run_training(make_spec("pvc://models/base", data, out), job_name="x")
    assert pvc_base.reason == "InvalidConfig" and "was not resolved" in (pvc_base.message or "")
    column = run_training(make_spec("org/model", {**data, "columns": ["text", "sentiment"]}, out), job_name="x")
    assert column.reason == "InvalidData" and "no column 'sentiment'" in (column.message or "")


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"), "OutOfMemory"),
        (RuntimeError("CUDA error: out of memory"), "OutOfMemory"),
        (RuntimeError("NCCL timeout\nwith a second line"), "TrainingError"),
    ],
)
def test_training_failures_are_results(
    tiny_models: TinyModels,
    data: dict[str, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    error: Exception,
    reason: str,
) -> None:
    def fail(*args: Any, **kwargs: Any) -> None:
        raise error

    monkeypatch.setattr(HFTrainer, "__call__", fail)
    result = run_training(make_spec(tiny_models.bert, data, str(tmp_path / "o")), job_name="x")
    assert result.outcome == "Failed" and result.reason == reason and exit_code(result) == EXIT_FAILED
    assert result.message is not None and "\n" not in result.message


def test_exit_codes() -> None:
    assert exit_code(Result(outcome="Succeeded")) == EXIT_SUCCEEDED
    assert exit_code(Result(outcome="Failed", reason="InvalidData")) == EXIT_INVALID_CONFIG
    assert exit_code(Result(outcome="Failed", reason="OutOfMemory")) == EXIT_FAILED


def test_id_like_labels_fail_as_invalid_data_under_the_runners_limit(
    tiny_models: TinyModels, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KUBETUNE_MAX_LABELS", "20")
    rows = [{"text": row["text"], "label": str(1000 + index)} for index, row in enumerate(toy_rows(8))]
    train = str(write_csv(tmp_path / "ids.csv", rows))  # numbers in a csv read back as integers
    result = run_training(make_spec(tiny_models.bert, {"train": train}, str(tmp_path / "o")), job_name="x")
    assert result.reason == "InvalidData" and exit_code(result) == EXIT_INVALID_CONFIG
    assert "label column 'label' holds whole numbers up to 1007 (8 distinct values)" in (result.message or "")
    assert "more than the limit of 20 (KUBETUNE_MAX_LABELS / HFTrainer maxlabels)" in (result.message or "")

    monkeypatch.setenv("KUBETUNE_MAX_LABELS", "twenty")
    wrong = run_training(make_spec(tiny_models.bert, {"train": train}, str(tmp_path / "o")), job_name="x")
    assert wrong.reason == "InvalidConfig" and "KUBETUNE_MAX_LABELS='twenty'" in (wrong.message or "")
