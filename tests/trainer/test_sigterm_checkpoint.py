"""SIGTERM mid-epoch: a real `python -m kubetune_trainer` (and the torchrun launcher) saves a
checkpoint at the next step boundary, says Interrupted (exit 1, so the Job retries), and the
next run resumes from that step. save_steps is far beyond the run, so there is no periodic
checkpoint to fall back on: a resume at the SIGTERM step can only come from the stop."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from moto_s3 import Bucket
from runtime_helpers import toy_rows, write_csv
from test_distributed_torchrun import child_env
from test_entrypoint import finish, job_json, run_trainer, termination
from tiny_models import TinyModels

from kubetune_api.protocol import ENV_GRACE_PERIOD, ENV_STAGING_DIR, EXIT_FAILED, EXIT_SUCCEEDED, parse_progress
from kubetune_trainer.graceful_stop import SignalWatch, Stage, StopRequested

STOPPED = re.compile(
    r"stopped by SIGTERM at step (\d+): checkpoint-\1 saved to (\S+); the next attempt resumes from it"
)
NO_PERIODIC_CHECKPOINT = {"save_steps": 100000}


def stop_when_past(process: subprocess.Popen[str], step: int, to: int | None = None) -> int:
    """Read progress until training is past `step`, then SIGTERM `to` (default: the process). The step seen."""
    assert process.stdout is not None
    for line in process.stdout:
        progress = parse_progress(line)
        if progress is not None and progress.step >= step:
            os.kill(to or process.pid, signal.SIGTERM)
            return progress.step
    raise AssertionError(f"the run ended before step {step}")


def resumed_steps(stdout: str) -> list[int]:
    return [p.step for line in stdout.splitlines() if (p := parse_progress(line)) is not None]


def test_sigterm_checkpoints_uploads_and_the_next_run_resumes_from_that_step(
    tiny_models: TinyModels, s3: Bucket, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    train = str(write_csv(tmp_path / "train.csv", toy_rows(64)))
    # 40 steps; the checkpoint must reach the object store before the process exits.
    job = job_json(tiny_models.bert, train, s3.uri("runs/stopped"), num_train_epochs=5, **NO_PERIODIC_CHECKPOINT)
    monkeypatch.setenv(ENV_STAGING_DIR, str(tmp_path / "staging-1"))
    process = run_trainer(tmp_path, job=job)
    seen = stop_when_past(process, 9)
    code, _, stderr = finish(process)

    assert code == EXIT_FAILED, stderr  # not a success: the Job retries
    result = termination(tmp_path)
    assert result["reason"] == "Interrupted", result
    stopped = STOPPED.fullmatch(result["message"])
    assert stopped is not None, result["message"]
    step = int(stopped.group(1))
    assert seen <= step < 40 and stopped.group(2) == s3.uri("runs/stopped")
    assert s3.names("runs/stopped") == ["checkpoint-" + str(step), "kubetune-run.json"]
    assert s3.exists("runs/stopped", f"checkpoint-{step}", "trainer_state.json")  # complete: written last

    # A new pod: empty staging, the checkpoint only in the object store.
    monkeypatch.setenv(ENV_STAGING_DIR, str(tmp_path / "staging-2"))
    code, stdout, stderr = finish(run_trainer(tmp_path, job=job))
    assert code == EXIT_SUCCEEDED, stderr
    steps = resumed_steps(stdout)
    assert steps[0] == step and steps[-1] == 40
    meta = json.loads(s3.fs.cat_file(s3.path("runs/stopped", "kubetune.json")))
    assert meta["resumedFromStep"] == step and meta["globalStep"] == 40


def test_sigterm_under_the_launcher_stops_every_rank_at_one_step(tiny_models: TinyModels, tmp_path: Path) -> None:
    train = str(write_csv(tmp_path / "train.csv", toy_rows(64)))
    out = tmp_path / "out"
    # Two ranks of batch 4: 8 rows a step, 40 steps.
    config = tmp_path / "job.json"
    config.write_text(
        job_json(
            tiny_models.bert,
            train,
            str(out),
            num_train_epochs=5,
            per_device_train_batch_size=4,
            **NO_PERIODIC_CHECKPOINT,
        )
    )
    log = tmp_path / "termination-log"
    launcher = [sys.executable, "-m", "kubetune_trainer.launch", "--standalone", "--nnodes=1", "--nproc-per-node=2"]
    env = child_env(log, **{ENV_GRACE_PERIOD: "120"})
    process = subprocess.Popen(
        [*launcher, "--", "--config", str(config)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
    )
    stop_when_past(process, 5)  # the launcher gets it, as the pod's PID 1 would
    _, stderr = process.communicate(timeout=180)

    assert process.returncode == EXIT_FAILED, stderr
    result = json.loads(log.read_text())
    assert result["reason"] == "Interrupted", result
    stopped = STOPPED.search(result["message"])
    assert stopped is not None, result["message"]
    step = int(stopped.group(1))
    checkpoint = out / f"checkpoint-{step}"
    # One checkpoint, complete, with both ranks' RNG states: both ranks saved it at that step.
    assert sorted(p.name for p in out.glob("checkpoint-*")) == [checkpoint.name]
    assert (checkpoint / "trainer_state.json").is_file()
    assert {p.name for p in checkpoint.glob("rng_state_*.pth")} == {"rng_state_0.pth", "rng_state_1.pth"}
    assert "the launcher got SIGTERM" in stderr

    done = subprocess.run(
        [*launcher, "--", "--config", str(config)], env=env, capture_output=True, text=True, timeout=180, cwd=tmp_path
    )
    assert done.returncode == EXIT_SUCCEEDED, done.stderr
    steps = resumed_steps(done.stdout)
    assert steps[0] == step and steps[-1] == 40


def test_sigterm_before_training_stops_at_once_and_the_old_handler_comes_back() -> None:
    before = signal.getsignal(signal.SIGTERM)
    with SignalWatch() as watch:
        with pytest.raises(StopRequested) as stopped:
            os.kill(os.getpid(), signal.SIGTERM)
            signal.sigtimedwait([], 0.5)  # let the handler run (it runs between bytecodes)
        assert stopped.value.step is None and watch.requested
        later: tuple[Stage, ...] = ("training", "finishing")
        for stage in later:  # only noted: the step boundary acts, or the run's end finishes
            watch.stage = stage
            os.kill(os.getpid(), signal.SIGTERM)
            signal.sigtimedwait([], 0.1)
    assert signal.getsignal(signal.SIGTERM) is before
    assert StopRequested(12).describe("s3://b/run") == (
        "stopped by SIGTERM at step 12: checkpoint-12 saved to s3://b/run; the next attempt resumes from it"
    )
