"""Which run an output belongs to: the hash of the training-relevant part of a spec.

A checkpoint of run A is a valid starting point for run B exactly when B would follow
the same training trajectory: the same task, base model and revision, data and columns,
tokenization (maxLength, stride, prefix), quantization, LoRA adapter, and the same
optimizer, schedule, batch, precision and seed (trainingArgs), on the same number of
training processes (the global batch is per-device batch x processes x accumulation).

Left out, because they change what is logged, evaluated, saved or how fast data is fed,
never what is trained:

* `output` (where the run goes is what the hash protects, not part of it);
* the trainingArgs in `BOOKKEEPING_TRAINING_ARGS` (logging, evaluation and saving
  cadence, experiment trackers, hub pushes, data loader workers, timeouts).

Values are hashed as written (canonical JSON of the camelCase spec, fields at their
default left out, so `stride: 128` and no stride hash alike), not as the libraries would
resolve them: writing `learning_rate: 5.0e-5` where it was omitted before counts as a
change. The trainer writes the hash into the output's run marker (kubetune-run.json)
and resumes only from checkpoints whose marker carries its own hash.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from kubetune_api.training import TrainingSpec

# Bumped when the definition above changes, so hashes of two definitions never meet.
TRAINING_HASH_VERSION = 1
TRAINING_HASH_PREFIX = "sha256:"

BOOKKEEPING_TRAINING_ARGS: frozenset[str] = frozenset(
    {
        # logging and experiment tracking
        "logging_strategy",
        "logging_steps",
        "logging_first_step",
        "logging_nan_inf_filter",
        "log_level",
        "log_level_replica",
        "log_on_each_node",
        "disable_tqdm",
        "report_to",
        "run_name",
        "project",
        "trackio_space_id",
        "trackio_bucket_id",
        "trackio_static_space_id",
        "include_num_input_tokens_seen",
        "skip_memory_metrics",
        # saving cadence and hub pushes
        "save_strategy",
        "save_steps",
        "save_total_limit",
        "save_on_each_node",
        "save_only_model",
        "enable_jit_checkpoint",
        "push_to_hub",
        "hub_model_id",
        "hub_strategy",
        "hub_token",
        "hub_private_repo",
        "hub_always_push",
        "hub_revision",
        "resume_from_checkpoint",
        # evaluation cadence (evaluation never changes the weights)
        "eval_strategy",
        "eval_steps",
        "eval_delay",
        "eval_on_start",
        "per_device_eval_batch_size",
        "eval_accumulation_steps",
        "eval_do_concat_batches",
        "eval_use_gather_object",
        "batch_eval_metrics",
        "include_for_metrics",
        "prediction_loss_only",
        "bf16_full_eval",
        "fp16_full_eval",
        "do_train",
        "do_eval",
        "do_predict",
        # how fast data is fed, and how long ranks wait for each other
        "dataloader_num_workers",
        "dataloader_prefetch_factor",
        "dataloader_persistent_workers",
        "dataloader_pin_memory",
        "dataloader_multiprocessing_context",
        "ddp_timeout",
        "torch_empty_cache_steps",
    }
)


def training_relevant(spec: TrainingSpec, processes: int = 1) -> dict[str, Any]:
    """The part of `spec` that decides the training trajectory, as camelCase JSON values."""
    relevant = spec.model_dump(mode="json", by_alias=True, exclude_defaults=True, exclude={"output"})
    arguments = {name: value for name, value in spec.training_args.items() if name not in BOOKKEEPING_TRAINING_ARGS}
    relevant.pop("trainingArgs", None)
    if arguments:
        relevant["trainingArgs"] = arguments
    relevant["processes"] = processes
    return relevant


def training_hash(spec: TrainingSpec, processes: int = 1) -> str:
    """'sha256:<hex>' of `training_relevant(spec, processes)` in canonical JSON."""
    canonical = json.dumps(
        training_relevant(spec, processes), sort_keys=True, separators=(",", ":"), ensure_ascii=False
    )
    digest = hashlib.sha256(f"kubetune-training-v{TRAINING_HASH_VERSION}\n{canonical}".encode()).hexdigest()
    return TRAINING_HASH_PREFIX + digest
