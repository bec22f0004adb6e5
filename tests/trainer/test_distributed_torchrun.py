"""The trainer under torchrun on CPU (gloo): two processes on one node, two "nodes" on localhost.

Equivalence with one process is checked exactly enough to catch a rank training on the
wrong data or a gradient not averaged: dropout off, sequential sampling, and the same
global batch (2 x 4 against 1 x 8). Accelerate hands whole per-device batches to the
ranks in turn, so each optimizer step sees the same 8 rows either way.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from moto_s3 import Bucket
from runtime_helpers import toy_rows, write_csv
from tiny_models import build_bert

from kubetune_api.launch_command import torchrun_command
from kubetune_api.protocol import EXIT_INVALID_CONFIG, Progress, decode_result, parse_progress
from kubetune_api.training import TrainingSpec
from kubetune_trainer.runner import run_training

ARGS = {
    "learning_rate": 1e-3,
    "num_train_epochs": 3,
    "logging_steps": 2,
    "train_sampling_strategy": "sequential",
    "seed": 7,
}
TIMEOUT_S = 240


@pytest.fixture(scope="module")
def bert_without_dropout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = build_bert(tmp_path_factory.mktemp("bert-no-dropout"))
    config_file = path / "config.json"
    config = json.loads(config_file.read_text())
    config.update(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    config_file.write_text(json.dumps(config))
    return path


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("data")
    return {
        "train": str(write_csv(root / "train.csv", toy_rows(64))),
        "validation": str(write_csv(root / "validation.csv", toy_rows(16, seed=1))),
    }


def job(base: Path, data: dict[str, str], output: Path, batch: int) -> dict[str, Any]:
    return {
        "base": {"model": str(base)},
        "data": data,
        "trainingArgs": {**ARGS, "per_device_train_batch_size": batch},
        "output": {"uri": str(output)},
    }


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def child_env(termination_log: Path, **extra: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env.update(
        OMP_NUM_THREADS="1",  # two workers on two cores: no thread oversubscription
        HF_HUB_OFFLINE="1",
        KUBETUNE_TERMINATION_LOG=str(termination_log),
        KUBETUNE_JOB_NAME="team/ddp",
        **extra,
    )
    return env


def python_command(command: list[str]) -> list[str]:
    """torchrun_command's `python` is the image's; here it is this venv's."""
    assert command[0] == "python"
    return [sys.executable, *command[1:]]


def progress_steps(stdout: str) -> list[int]:
    reports = [parse_progress(line) for line in stdout.splitlines()]
    return [report.step for report in reports if report is not None]


def test_two_processes_train_like_one(bert_without_dropout: Path, data: dict[str, str], tmp_path: Path) -> None:
    # One process, global batch 8 (in this process: the reference).
    single_out = tmp_path / "single"
    seen: list[Progress] = []
    single = run_training(
        TrainingSpec.model_validate(job(bert_without_dropout, data, single_out, batch=8)),
        job_name="team/single",
        on_progress=seen.append,
    )
    assert single.outcome == "Succeeded", single.message

    # Two processes under a plain torchrun, 4 rows each.
    out = tmp_path / "ddp"
    config = tmp_path / "job.json"
    config.write_text(json.dumps(job(bert_without_dropout, data, out, batch=4)))
    log = tmp_path / "termination-log"
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2"]
    done = subprocess.run(
        [*torchrun, "-m", "kubetune_trainer", "--config", str(config)],
        env=child_env(log),
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr[-3000:]

    # Both ranks trained (each says so), in one gloo world of two.
    for rank in (0, 1):
        assert f"kubetune: rank {rank} of 2 (node 0, local rank {rank}) finished: Succeeded" in done.stderr
    meta = json.loads((out / "kubetune.json").read_text())
    assert meta["distributed"] == {
        "worldSize": 2,
        "nodes": 1,
        "processesPerNode": 2,
        "backend": "gloo",
        "parallelMode": "distributed",
    }
    assert meta["globalStep"] == 24  # 64 rows / global batch 8 x 3 epochs, as in one process

    # Only rank 0 reported and saved: one progress stream, the same one a single process writes.
    assert progress_steps(done.stdout) == [p.step for p in seen]
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in single_out.iterdir())
    result = decode_result(log.read_text())
    assert result is not None and result.outcome == "Succeeded"
    assert result.artifact is not None and result.artifact.uri == str(out)

    # Same model quality: losses equal up to float summation order in the all-reduce.
    assert result.metrics["train_loss"] == pytest.approx(single.metrics["train_loss"], abs=1e-3)
    assert result.metrics["loss"] == pytest.approx(single.metrics["loss"], abs=1e-3)
    assert result.metrics["accuracy"] == single.metrics["accuracy"]
    assert single.metrics["accuracy"] >= 0.75  # the comparison is between models that learned


def test_two_nodes_on_localhost_finish(bert_without_dropout: Path, data: dict[str, str], tmp_path: Path) -> None:
    """Two launchers as two pods of an Indexed Job: c10d at 127.0.0.1, index 0 hosts the store."""
    out = tmp_path / "out"  # one folder for both "pods": the shared PVC
    config = tmp_path / "job.json"
    config.write_text(json.dumps(job(bert_without_dropout, data, out, batch=4)))
    command = python_command(torchrun_command(1, 2, f"127.0.0.1:{free_port()}", "kubetune-test"))
    pods = [
        subprocess.Popen(
            [*command, "--", "--config", str(config)],
            env=child_env(tmp_path / f"termination-log-{index}", JOB_COMPLETION_INDEX=str(index)),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=tmp_path,
        )
        for index in (0, 1)
    ]
    outputs = []
    try:
        for pod in pods:
            outputs.append(pod.communicate(timeout=TIMEOUT_S))
    finally:
        for pod in pods:
            if pod.poll() is None:
                pod.kill()
    for pod, (_, stderr) in zip(pods, outputs, strict=True):
        assert pod.returncode == 0, stderr[-3000:]
    stderr = "".join(err for _, err in outputs)
    assert "rank 0 of 2 (node 0, local rank 0) finished: Succeeded" in stderr
    assert "rank 1 of 2 (node 1, local rank 0) finished: Succeeded" in stderr
    # The pod holding global rank 0 reports the artifact; the other one has nothing to say.
    logs = [tmp_path / f"termination-log-{index}" for index in (0, 1)]
    written = [log for log in logs if log.exists()]
    assert len(written) == 1
    result = decode_result(written[0].read_text())
    assert result is not None and result.outcome == "Succeeded" and result.artifact is not None
    assert sum(len(progress_steps(stdout)) > 0 for stdout, _ in outputs) == 1
    meta = json.loads((out / "kubetune.json").read_text())
    assert (meta["distributed"]["worldSize"], meta["distributed"]["nodes"]) == (2, 2)


def test_a_bad_job_fails_every_rank_with_exit_78(bert_without_dropout: Path, tmp_path: Path) -> None:
    """Plain torchrun would exit 1 (a retry); the launcher passes the workers' 78 on."""
    config = tmp_path / "job.json"
    missing = {"train": str(tmp_path / "missing.csv")}
    config.write_text(json.dumps(job(bert_without_dropout, missing, tmp_path / "out", batch=4)))
    log = tmp_path / "termination-log"
    done = subprocess.run(
        [*python_command(torchrun_command(2, 1, None, "j")), "--", "--config", str(config)],
        env=child_env(log),
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        cwd=tmp_path,
    )
    assert done.returncode == EXIT_INVALID_CONFIG, done.stderr[-3000:]
    for rank in (0, 1):
        assert f"rank {rank} of 2 (node 0, local rank {rank}) finished: Failed" in done.stderr
    result = decode_result(log.read_text())
    assert result is not None and result.reason == "InvalidData"
    assert result.message is not None and "of 2 (node 0" in result.message and "missing.csv" in result.message


def test_two_processes_with_an_s3_output_upload_every_ranks_files(
    bert_without_dropout: Path, data: dict[str, str], tmp_path: Path, s3: Bucket
) -> None:
    """Each process stages its own files: every rank's part of a checkpoint reaches S3
    (here the per-rank RNG state; with DeepSpeed or sharded FSDP, each rank's shard), and
    trainer_state.json only after all of them. A rerun resumes on both ranks from S3."""
    spec = {**job(bert_without_dropout, data, tmp_path / "unused", batch=4), "output": {"uri": s3.uri("ddp")}}
    spec["trainingArgs"] = {**spec["trainingArgs"], "num_train_epochs": 1, "save_steps": 4}
    config = tmp_path / "job.json"
    config.write_text(json.dumps(spec))
    staging = tmp_path / "staging"
    staging.mkdir()

    def run(log: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*python_command(torchrun_command(2, 1, None, "j")), "--", "--config", str(config)],
            env=child_env(log, KUBETUNE_STAGING_DIR=str(staging), KUBETUNE_JOB_UID="uid-ddp"),
            capture_output=True,
            text=True,
            timeout=TIMEOUT_S,
            cwd=tmp_path,
        )

    done = run(tmp_path / "termination-log")
    assert done.returncode == 0, done.stderr[-3000:]
    assert s3.names("ddp/checkpoint-8") == [
        "config.json",
        "model.safetensors",
        "optimizer.pt",
        "rng_state_0.pth",
        "rng_state_1.pth",  # written by rank 1 into its own staging folder, uploaded by it
        "scheduler.pt",
        "tokenizer.json",
        "tokenizer_config.json",
        "trainer_state.json",
        "training_args.bin",
    ]
    assert {"checkpoint-4", "checkpoint-8", "kubetune-run.json", "kubetune.json", "model.safetensors"} <= set(
        s3.names("ddp")
    )
    marker = json.loads(s3.fs.cat_file(s3.path("ddp/kubetune-run.json")))
    assert (marker["uid"], marker["spec"]["processes"]) == ("uid-ddp", 2)

    again = run(tmp_path / "termination-log-2")
    assert again.returncode == 0, again.stderr[-3000:]
    result = decode_result((tmp_path / "termination-log-2").read_text())
    assert result is not None and result.outcome == "Succeeded"
    assert any(warning.startswith("resumed from checkpoint-8 (step 8)") for warning in result.warnings)
