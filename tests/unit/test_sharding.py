"""FSDP / DeepSpeed with object-store outputs: the two combinations refused (kubetune_api.sharding)."""

from __future__ import annotations

from typing import Any

import pytest

from kubetune_api.launch_command import training_processes
from kubetune_api.sharding import sharded_checkpoint_problem

S3 = "s3://bucket/models/run"
ZERO3 = {"zero_optimization": {"stage": 3}}


@pytest.mark.parametrize(
    ("args", "uri", "processes"),
    [
        ({"deepspeed": {"zero_optimization": {"stage": 2}}}, S3, 16),  # shards uploaded by every rank
        ({"fsdp": "full_shard", "fsdp_config": {"state_dict_type": "SHARDED_STATE_DICT"}}, S3, 16),
        ({"deepspeed": ZERO3, "load_best_model_at_end": True}, "pvc://models/run", 16),  # shared disk
        ({"deepspeed": ZERO3, "load_best_model_at_end": True}, S3, 1),  # one process holds it all
        ({"load_best_model_at_end": True}, S3, 16),  # DDP: rank 0 has the whole model
        ({"deepspeed": {"zero_optimization": {"stage": 3, "stage3_gather_16bit_weights_on_model_save": True}}}, S3, 8),
        ({"deepspeed": "/etc/ds_config.json"}, S3, 8),  # a file in the image: not readable here
    ],
)
def test_what_runs(args: dict[str, Any], uri: str, processes: int) -> None:
    assert sharded_checkpoint_problem(args, uri, processes) is None


def test_best_model_at_end_needs_every_shard_on_local_disk() -> None:
    problem = sharded_checkpoint_problem({"fsdp": "full_shard", "load_best_model_at_end": True}, S3, 16)
    assert problem == (
        "spec.trainingArgs.load_best_model_at_end: with spec.trainingArgs.fsdp and an object-store output "
        f"({S3}), each of the 16 training processes would reload the best checkpoint from its own local staging "
        "folder, which holds only the files that process wrote; drop load_best_model_at_end, or use a pvc:// "
        "output on a ReadWriteMany claim"
    )
    deepspeed = sharded_checkpoint_problem({"deepspeed": {}, "load_best_model_at_end": True}, "gs://b/m", 2)
    assert deepspeed is None  # an empty deepspeed config is no DeepSpeed
    deepspeed = sharded_checkpoint_problem({"deepspeed": "ds.json", "load_best_model_at_end": True}, "gs://b/m", 2)
    assert deepspeed is not None and "with spec.trainingArgs.deepspeed and an object-store output" in deepspeed


def test_zero3_without_gathered_weights_saves_no_model() -> None:
    problem = sharded_checkpoint_problem({"deepspeed": ZERO3}, S3, training_processes(8, 2))
    assert problem is not None
    assert problem.startswith(
        "spec.trainingArgs.deepspeed.zero_optimization.stage3_gather_16bit_weights_on_model_save: without it"
    )
    assert "set it to true, or use a pvc:// output on a ReadWriteMany claim" in problem


def test_training_processes_counts_one_per_gpu_and_one_per_cpu_pod() -> None:
    assert training_processes(8, 2) == 16 and training_processes(0, 3) == 3 and training_processes(1, 1) == 1
