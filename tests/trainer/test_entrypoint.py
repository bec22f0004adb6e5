"""`python -m kubetune_trainer` as the container runs it: env in, progress lines and
termination message out, exit codes for the Job's podFailurePolicy, and a killed run
that resumes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from runtime_helpers import toy_rows, write_csv
from tiny_models import TinyModels

from kubetune_api import __version__
from kubetune_api.protocol import (
    EXIT_FAILED,
    EXIT_INVALID_CONFIG,
    EXIT_SUCCEEDED,
    PROGRESS_KEY,
    decode_result,
    parse_progress,
)
from kubetune_trainer import __main__ as entrypoint
from kubetune_trainer.hftrainer import HFTrainer


def job_json(base: Path | str, train: str, output: str, **args: Any) -> str:
    return json.dumps(
        {
            "base": {"model": str(base)},
            "data": {"train": train},
            "trainingArgs": {"per_device_train_batch_size": 8, "logging_steps": 1, **args},
            "output": {"uri": output},
        }
    )


def run_trainer(tmp_path: Path, *argv: str, job: str | None = None, **popen: Any) -> subprocess.Popen[str]:
    env = {
        **os.environ,
        "KUBETUNE_TERMINATION_LOG": str(tmp_path / "termination-log"),
        "KUBETUNE_JOB_NAME": "ns/j",
        "KUBETUNE_JOB_UID": "uid-j",
    }
    env.pop("KUBETUNE_JOB", None)
    if job is not None:
        env["KUBETUNE_JOB"] = job
    return subprocess.Popen(
        [sys.executable, "-m", "kubetune_trainer", *argv],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **popen,
    )


def finish(process: subprocess.Popen[str]) -> tuple[int, str, str]:
    stdout, stderr = process.communicate(timeout=180)
    return process.returncode, stdout, stderr


def termination(tmp_path: Path) -> dict[str, Any]:
    return json.loads((tmp_path / "termination-log").read_text())


def test_version(tmp_path: Path) -> None:
    code, stdout, _ = finish(run_trainer(tmp_path, "--version"))
    assert code == 0 and stdout.strip() == f"kubetune-trainer {__version__}"


def test_invalid_job_json_exits_78_with_the_validation_message(tmp_path: Path) -> None:
    code, _, stderr = finish(run_trainer(tmp_path, job='{"task": "text-classification", "data": {"train": "ftp://x"}}'))
    assert code == EXIT_INVALID_CONFIG
    message = termination(tmp_path)
    assert message["outcome"] == "Failed" and message["reason"] == "InvalidConfig"
    assert "spec.base: Field required" in message["message"]
    assert "spec.data.train: unsupported URI scheme 'ftp'" in message["message"]
    assert "InvalidConfig" in stderr

    code, _, _ = finish(run_trainer(tmp_path, job="{not json"))
    assert code == EXIT_INVALID_CONFIG and "Invalid JSON" in termination(tmp_path)["message"]

    code, _, _ = finish(run_trainer(tmp_path))
    assert code == EXIT_INVALID_CONFIG and "KUBETUNE_JOB" in termination(tmp_path)["message"]


def test_missing_data_exits_78_invalid_data(tmp_path: Path) -> None:
    config = tmp_path / "job.json"
    config.write_text(job_json("org/model", str(tmp_path / "nope.csv"), str(tmp_path / "out")))
    code, _, _ = finish(run_trainer(tmp_path, "--config", str(config)))
    assert code == EXIT_INVALID_CONFIG
    assert termination(tmp_path) == {
        "protocolVersion": 1,
        "outcome": "Failed",
        "metrics": {},
        "warnings": [],
        "reason": "InvalidData",
        "message": f"data.train: data file not found: {tmp_path}/nope.csv",
    }


def test_success_progress_lines_and_result(tiny_models: TinyModels, tmp_path: Path) -> None:
    train = str(write_csv(tmp_path / "train.csv", toy_rows(16)))
    job = job_json(tiny_models.bert, train, str(tmp_path / "out"), num_train_epochs=2)
    code, stdout, stderr = finish(run_trainer(tmp_path, job=job))
    assert code == EXIT_SUCCEEDED, stderr
    progress = [parse_progress(line) for line in stdout.splitlines() if PROGRESS_KEY in line]
    assert [p.step for p in progress if p is not None][:5] == [0, 1, 2, 3, 4]
    first = json.loads(next(line for line in stdout.splitlines() if PROGRESS_KEY in line))[PROGRESS_KEY]
    assert first["maxSteps"] == 4 and "elapsedSeconds" in first  # camelCase on the wire
    result = decode_result((tmp_path / "termination-log").read_text())
    assert result is not None and result.outcome == "Succeeded"
    assert result.artifact is not None and result.artifact.uri == str(tmp_path / "out")
    assert "train_loss" in result.metrics
    meta = json.loads((tmp_path / "out" / "kubetune.json").read_text())
    marker = json.loads((tmp_path / "out" / "kubetune-run.json").read_text())
    assert (meta["job"], meta["jobUid"]) == (marker["job"], marker["uid"]) == ("ns/j", "uid-j")


def test_killed_run_resumes_when_started_again(tiny_models: TinyModels, tmp_path: Path) -> None:
    train = str(write_csv(tmp_path / "train.csv", toy_rows(64)))
    out = tmp_path / "out"
    # 40 steps with a checkpoint every 4: long enough to kill it part-way.
    job = job_json(tiny_models.bert, train, str(out), num_train_epochs=5, save_steps=4, save_total_limit=1)
    process = run_trainer(tmp_path, job=job)
    assert process.stdout is not None
    for line in process.stdout:
        progress = parse_progress(line)
        if progress is not None and progress.step >= 9:
            break
    process.send_signal(signal.SIGKILL)  # no clean-up, as when a node goes away
    process.communicate(timeout=30)
    checkpoints = sorted(out.glob("checkpoint-*"))
    assert checkpoints and not (out / "kubetune.json").exists()
    killed_at = max(int(p.name.split("-")[1]) for p in checkpoints if (p / "trainer_state.json").is_file())
    assert 8 <= killed_at < 40

    code, stdout, stderr = finish(run_trainer(tmp_path, job=job))
    assert code == EXIT_SUCCEEDED, stderr
    steps = [p.step for line in stdout.splitlines() if (p := parse_progress(line)) is not None]
    assert steps[0] == killed_at and steps[-1] == 40
    meta = json.loads((out / "kubetune.json").read_text())
    assert meta["resumedFromStep"] == killed_at and meta["globalStep"] == 40


@pytest.mark.parametrize(
    ("error", "reason"),
    [(MemoryError(), "OutOfMemory"), (ValueError("loss is nan"), "TrainingError")],
)
def test_training_failure_exits_1(
    tiny_models: TinyModels, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, error: Exception, reason: str
) -> None:
    def fail(*args: Any, **kwargs: Any) -> None:
        raise error

    monkeypatch.setattr(HFTrainer, "__call__", fail)
    train = str(write_csv(tmp_path / "train.csv", toy_rows(8)))
    monkeypatch.setenv("KUBETUNE_JOB", job_json(tiny_models.bert, train, str(tmp_path / "out")))
    monkeypatch.setenv("KUBETUNE_TERMINATION_LOG", str(tmp_path / "termination-log"))
    assert entrypoint.main([]) == EXIT_FAILED
    assert termination(tmp_path)["reason"] == reason
