"""Pure parts of distributed runs: torchrun's env, the container command, the launcher's choices."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from kubetune_api import launch_command
from kubetune_api.launch_command import RDZV_PORT, torchrun_command
from kubetune_api.protocol import ENV_TERMINATION_LOG, Result, decode_result, exit_code, failed
from kubetune_trainer import distributed, launch
from kubetune_trainer.__main__ import report_result
from kubetune_trainer.distributed import DistributedEnv
from kubetune_trainer.errors import ConfigError, DataError
from kubetune_trainer.runner import agree_before_training

# ---- torchrun's environment ----


def test_no_torchrun_env_is_a_single_main_process() -> None:
    place = DistributedEnv.from_environ({})
    assert place == DistributedEnv(rank=0, local_rank=0, world_size=1, local_world_size=1, node_rank=0)
    assert place.is_main_process and place.is_local_main_process and not place.distributed


def test_torchrun_env_is_read() -> None:
    env = {"RANK": "3", "LOCAL_RANK": "1", "WORLD_SIZE": "4", "LOCAL_WORLD_SIZE": "2", "GROUP_RANK": "1"}
    place = DistributedEnv.from_environ(env)
    assert (place.rank, place.local_rank, place.world_size, place.local_world_size, place.node_rank) == (3, 1, 4, 2, 1)
    assert place.distributed and not place.is_main_process and not place.is_local_main_process
    assert place.describe() == "rank 3 of 4 (node 1, local rank 1)"
    assert not distributed.is_main_process(env)
    assert distributed.is_main_process({**env, "RANK": "0", "LOCAL_RANK": "0"})


def test_other_nodes_local_rank_zero_is_local_main_not_main() -> None:
    place = DistributedEnv.from_environ({"RANK": "2", "LOCAL_RANK": "0", "WORLD_SIZE": "4", "LOCAL_WORLD_SIZE": "2"})
    assert place.is_local_main_process and not place.is_main_process


@pytest.mark.parametrize(
    "env",
    [
        {"RANK": "two", "WORLD_SIZE": "2"},
        {"RANK": "2", "WORLD_SIZE": "2"},
        {"RANK": "-1", "WORLD_SIZE": "2"},
        {"RANK": "0", "WORLD_SIZE": "0"},
        {"RANK": "0", "LOCAL_RANK": "2", "WORLD_SIZE": "4", "LOCAL_WORLD_SIZE": "2"},
    ],
)
def test_impossible_torchrun_env_is_rejected(env: dict[str, str]) -> None:
    with pytest.raises(ValueError):
        DistributedEnv.from_environ(env)


def test_distributed_module_imports_without_torch() -> None:
    """The operator builds its container command with it, and its image has no torch."""
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "from kubetune_api.launch_command import torchrun_command\n"
        "print(torchrun_command(2, 1, None, 'x'))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "kubetune_trainer.launch" in done.stdout


# ---- the container command ----


@pytest.mark.parametrize("gpus", [0, 1])
def test_one_process_runs_the_trainer_directly(gpus: int) -> None:
    assert torchrun_command(gpus, 1, None, "job") == ["python", "-m", "kubetune_trainer"]


def test_one_node_several_gpus_is_standalone() -> None:
    assert torchrun_command(4, 1, "ignored:1", "job") == [
        "python",
        "-m",
        "kubetune_trainer.launch",
        "--standalone",
        "--nnodes=1",
        "--nproc-per-node=4",
    ]


def test_several_nodes_rendezvous_at_the_endpoint() -> None:
    command = torchrun_command(8, 3, "ft-abc-0.ft-abc", "0d6c-uid")
    assert command[:3] == ["python", "-m", "kubetune_trainer.launch"]
    assert "--nnodes=3" in command and "--nproc-per-node=8" in command
    assert "--rdzv-backend=c10d" in command
    assert f"--rdzv-endpoint=ft-abc-0.ft-abc:{RDZV_PORT}" in command
    assert "--rdzv-id=0d6c-uid" in command
    assert "--max-restarts=0" in command
    # A port given with the endpoint is kept; a CPU job on several nodes runs one process each.
    assert "--rdzv-endpoint=host:1234" in torchrun_command(1, 2, "host:1234", "j")
    assert "--nproc-per-node=1" in torchrun_command(0, 2, "host", "j")


@pytest.mark.parametrize(
    ("gpus", "nodes", "endpoint", "job_id"),
    [(-1, 1, None, "j"), (1, 0, None, "j"), (1, 2, None, "j"), (1, 2, "", "j"), (1, 2, "h", ""), (1, 2, "h", "a b")],
)
def test_command_arguments_are_checked(gpus: int, nodes: int, endpoint: str | None, job_id: str) -> None:
    with pytest.raises(ValueError):
        torchrun_command(gpus, nodes, endpoint, job_id)


def test_launcher_accepts_the_command_torch_would() -> None:
    """Every option torchrun_command emits parses with the installed torchrun."""
    from torch.distributed.run import parse_args

    command = torchrun_command(2, 2, "h", "j")
    args = parse_args(launch.torchrun_args(command[3:], {"JOB_COMPLETION_INDEX": "0"}))
    assert (args.nnodes, args.nproc_per_node, args.rdzv_backend, args.rdzv_endpoint) == ("2", "2", "c10d", "h:29400")
    assert args.rdzv_conf == f"join_timeout={launch_command.RDZV_JOIN_TIMEOUT_S},is_host=true"
    assert (args.module, args.training_script) == (True, "kubetune_trainer")


# ---- the launcher's choices ----


def test_completion_index_zero_hosts_the_store() -> None:
    argv = ["--nnodes=2", "--rdzv-backend=c10d", "--rdzv-endpoint=h:1"]
    assert launch.torchrun_args(argv, {"JOB_COMPLETION_INDEX": "0"})[-3] == "--rdzv-conf=is_host=true"
    assert launch.torchrun_args(argv, {"JOB_COMPLETION_INDEX": "1"})[-3] == "--rdzv-conf=is_host=false"
    # Without an Indexed Job torch keeps guessing from the hostname; an explicit setting wins.
    assert launch.torchrun_args(argv, {}) == [*argv, "-m", "kubetune_trainer"]
    explicit = [*argv, "--rdzv-conf=is_host=false"]
    assert launch.torchrun_args(explicit, {"JOB_COMPLETION_INDEX": "0"})[:-2] == explicit


def test_workers_get_the_pods_grace_period_to_save() -> None:
    """torch waits 30 s for its workers after SIGTERM; the pod's grace period decides instead."""
    from torch.distributed.run import parse_args

    argv = ["--standalone", "--nproc-per-node=2"]
    args = parse_args(launch.torchrun_args(argv, {"KUBETUNE_TERMINATION_GRACE_SECONDS": "300"}))
    assert args.shutdown_timeout == 300 - launch.REPORT_MARGIN_S
    assert not any(a.startswith("--shutdown-timeout") for a in launch.torchrun_args(argv, {}))
    explicit = [*argv, "--shutdown-timeout=5"]
    assert launch.torchrun_args(explicit, {"KUBETUNE_TERMINATION_GRACE_SECONDS": "300"})[:-2] == explicit


def test_trainer_arguments_follow_the_module() -> None:
    args = launch.torchrun_args(["--standalone", "--nproc-per-node=2", "--", "--config", "job.json"], {})
    assert args == ["--standalone", "--nproc-per-node=2", "-m", "kubetune_trainer", "--config", "job.json"]


def _write(folder: Path, rank: int, result: Result, mtime: float) -> None:
    import os

    path = folder / f"rank-{rank}.json"
    path.write_text(json.dumps(result.model_dump(mode="json", by_alias=True, exclude_none=True)))
    os.utime(path, (mtime, mtime))


def test_pod_result_success_is_rank_zeros_and_other_pods_say_nothing(tmp_path: Path) -> None:
    main = Result(outcome="Succeeded", metrics={"loss": 0.1})
    _write(tmp_path, 0, main, 10)
    _write(tmp_path, 1, Result(outcome="Succeeded"), 11)
    assert launch.pod_result(launch.read_rank_results(tmp_path), None) == main
    (tmp_path / "rank-0.json").unlink()
    assert launch.pod_result(launch.read_rank_results(tmp_path), None) is None


def test_pod_result_failure_is_the_first_failed_rank(tmp_path: Path) -> None:
    _write(tmp_path, 0, failed("TrainingError", "rank 0: peer closed the connection"), 20)
    _write(tmp_path, 3, failed("OutOfMemory", "rank 3: out of memory"), 15)
    _write(tmp_path, 2, Result(outcome="Succeeded"), 5)
    chosen = launch.pod_result(launch.read_rank_results(tmp_path), {0: object()})
    assert chosen is not None and chosen.reason == "OutOfMemory"


def test_pod_result_for_a_silent_death_names_the_rank() -> None:
    def failure(exitcode: int, timestamp: int) -> Any:
        return SimpleNamespace(exitcode=exitcode, timestamp=timestamp, message="m", signal_name=lambda: "SIGKILL")

    # The agent's SIGTERM to the survivor (recorded in the same second) is not the cause.
    chosen = launch.pod_result({}, {0: failure(-15, 2), 1: failure(-9, 2)})
    assert chosen is not None and chosen.reason == "TrainingError"
    assert chosen.message is not None and chosen.message.startswith("rank 1 was killed by signal 9")
    chosen = launch.pod_result({}, {1: failure(-15, 1), 0: failure(3, 1)})
    assert chosen is not None and chosen.message is not None and "rank 0 exited with code 3" in chosen.message


# ---- who writes the termination message ----


@pytest.mark.parametrize(
    ("env", "outcome", "written"),
    [
        ({}, "Succeeded", True),
        ({"RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "2"}, "Succeeded", True),
        ({"RANK": "1", "LOCAL_RANK": "1", "WORLD_SIZE": "2"}, "Failed", False),  # shares rank 0's pod
        ({"RANK": "2", "LOCAL_RANK": "0", "WORLD_SIZE": "4", "LOCAL_WORLD_SIZE": "2"}, "Succeeded", False),
        ({"RANK": "2", "LOCAL_RANK": "0", "WORLD_SIZE": "4", "LOCAL_WORLD_SIZE": "2"}, "Failed", True),
    ],
)
def test_plain_torchrun_termination_message_writers(
    env: dict[str, str], outcome: str, written: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = tmp_path / "termination-log"
    monkeypatch.setenv(ENV_TERMINATION_LOG, str(log))
    monkeypatch.delenv(distributed.ENV_RANK_RESULTS, raising=False)
    result = Result(outcome="Succeeded") if outcome == "Succeeded" else failed("TrainingError", "boom")
    report_result(result, DistributedEnv.from_environ(env))
    assert log.exists() == written
    if written:
        assert decode_result(log.read_text()) == result


def test_under_the_launcher_every_rank_leaves_a_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    log = tmp_path / "termination-log"
    monkeypatch.setenv(ENV_TERMINATION_LOG, str(log))
    monkeypatch.setenv(distributed.ENV_RANK_RESULTS, str(tmp_path))
    report_result(Result(outcome="Succeeded"), DistributedEnv(rank=1, local_rank=1, world_size=2, local_world_size=2))
    assert not log.exists()
    assert decode_result((tmp_path / "rank-1.json").read_text()) == Result(outcome="Succeeded")


# ---- ranks agree before training ----


def _gathering(monkeypatch: pytest.MonkeyPatch, others: list[Any]) -> None:
    """all_gather as if the other ranks had reported `others` (this rank is rank 0)."""
    monkeypatch.setattr(distributed, "all_gather", lambda value: [value, *others])


TWO = DistributedEnv(rank=0, local_rank=0, world_size=2, local_world_size=2)


def test_a_data_error_on_another_rank_fails_this_one_as_invalid_data(monkeypatch: pytest.MonkeyPatch) -> None:
    _gathering(monkeypatch, [(("InvalidData", "data.train: data file not found: x.csv"), None)])
    with pytest.raises(DataError, match=r"rank 1.*data file not found") as raised:
        agree_before_training(TWO, None, None)
    assert raised.value.reason == "InvalidData"
    _gathering(monkeypatch, [(("InvalidConfig", "base.model: no model folder"), None)])
    with pytest.raises(ConfigError, match="no model folder") as raised_config:
        agree_before_training(TWO, None, None)
    assert raised_config.value.reason == "InvalidConfig"
    _gathering(monkeypatch, [(("OutputInUse", "output.uri s3://b/m belongs to FineTuneJob ml/old"), None)])
    with pytest.raises(ConfigError, match=r"\(found by rank 1\) output.uri s3://b/m belongs to") as in_use:
        agree_before_training(TWO, None, None)
    assert in_use.value.reason == "OutputInUse"  # exit 78 on every rank, the same reason


def test_another_ranks_crash_fails_this_one_for_a_retry(monkeypatch: pytest.MonkeyPatch) -> None:
    _gathering(monkeypatch, [(("Other", "OSError: disk full"), None)])
    with pytest.raises(RuntimeError, match="rank 1 failed before training: OSError: disk full"):
        agree_before_training(TWO, None, None)


def test_ranks_must_resume_from_the_same_checkpoint(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _gathering(monkeypatch, [(None, "checkpoint-8")])
    agree_before_training(TWO, None, tmp_path / "checkpoint-8")  # same step: fine
    with pytest.raises(RuntimeError, match=r"disagree.*rank 0: checkpoint-6, rank 1: checkpoint-8"):
        agree_before_training(TWO, None, tmp_path / "checkpoint-6")
    with pytest.raises(RuntimeError, match="disagree"):
        agree_before_training(TWO, None, None)


def test_a_single_process_needs_no_agreement(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(distributed, "all_gather", lambda value: pytest.fail("no collective in one process"))
    agree_before_training(DistributedEnv(), None, None)


def test_run_training_reports_the_agreed_failure(monkeypatch: pytest.MonkeyPatch) -> None:
    """A ConfigError raised by the agreement is an InvalidData Result (exit 78) like a local one."""
    error = DataError("(found by rank 1) data.train: data file not found")
    assert exit_code(failed(error.reason, str(error))) == 78
