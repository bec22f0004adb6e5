"""kubetune.json: what was trained, from what, how, and with which libraries.

Written last into the output, and only on success, so its presence marks a finished run.
Credential-like values in trainingArgs, lora and quantize (hub_token, *_key, *_secret,
passwords, connection strings: `kubetune_api.credentials`) are written as "<redacted>".
"""

from __future__ import annotations

import dataclasses
import json
import platform
from datetime import datetime
from importlib import metadata as importlib_metadata
from typing import TYPE_CHECKING, Any

from kubetune_api import __version__
from kubetune_api.credentials import redact
from kubetune_api.protocol import Artifact
from kubetune_api.training import Task, TrainingSpec
from kubetune_trainer.distributed import DistributedEnv

if TYPE_CHECKING:
    from kubetune_trainer.feature_plan import SFTReport

_VERSIONED = ("torch", "transformers", "datasets", "peft", "accelerate", "bitsandbytes", "fsspec")


def build_metadata(
    spec: TrainingSpec,
    *,
    job_name: str,
    job_uid: str | None = None,
    training_hash: str | None = None,
    artifact: Artifact,
    metrics: dict[str, float],
    warnings: list[str],
    train_rows: int,
    validation_rows: int | None,
    quantized: bool,
    trainer_args: Any,
    sft: SFTReport | None = None,
    gpu_defaults: dict[str, Any] | None = None,
    global_step: int | None,
    resumed_from: int | None,
    started_at: datetime,
    place: DistributedEnv | None = None,
    finished_at: datetime,
    duration: float,
) -> dict[str, Any]:
    """The contents of kubetune.json: enough to know what was trained, from what, how."""
    return {
        "kubetuneVersion": __version__,
        "job": job_name,
        "jobUid": job_uid,
        "trainingHash": training_hash,
        "task": Task(spec.task).value,
        "base": {"model": spec.base.model, "revision": spec.base.revision},
        "data": {
            "train": spec.data.train,
            "validation": spec.data.validation,
            "columns": spec.data.columns,
            "fileFormat": spec.data.file_format,
            # The rows' layout as trained (detected when the spec does not say).
            "format": sft.format if sft is not None else spec.data.format,
            "trainRows": train_rows,
            "validationRows": validation_rows,
        },
        "maxLength": spec.max_length,
        # language-generation: what the loss covered, how prompts were masked, how rows were batched.
        "sft": sft.as_metadata() if sft is not None else None,
        "quantize": {"requested": redact(spec.quantize), "applied": quantized},
        "lora": redact(spec.lora),
        "trainingArgs": redact(spec.training_args),
        "uncheckedTrainingArgs": redact(spec.unchecked_training_args),
        "resolvedTrainingArgs": redact(_changed_training_args(trainer_args)),
        # What kubetune turned on because the run had a GPU and the spec did not say (gpu_defaults.py).
        "gpuDefaults": dict(gpu_defaults or {}),
        "artifact": artifact.model_dump(mode="json", by_alias=True, exclude_none=True),
        "metrics": metrics,
        "warnings": warnings,
        "globalStep": global_step,
        "resumedFromStep": resumed_from,
        "distributed": _distributed_metadata(place or DistributedEnv(), trainer_args),
        "versions": library_versions(),
        "startedAt": started_at.isoformat(),
        "finishedAt": finished_at.isoformat(),
        "durationSeconds": round(duration, 3),
    }


def _distributed_metadata(place: DistributedEnv, trainer_args: Any) -> dict[str, Any]:
    """How many processes trained, on how many nodes, with which collective backend."""
    nodes = place.world_size // place.local_world_size if place.local_world_size else 1
    backend = None
    if place.distributed:
        import torch.distributed as dist

        backend = dist.get_backend() if dist.is_available() and dist.is_initialized() else None
    return {
        "worldSize": place.world_size,
        "nodes": nodes,
        "processesPerNode": place.local_world_size,
        "backend": backend,
        "parallelMode": str(getattr(getattr(trainer_args, "parallel_mode", None), "value", "")) or None,
    }


def library_versions() -> dict[str, str]:
    versions = {"python": platform.python_version(), "kubetune": __version__}
    for name in _VERSIONED:
        try:
            versions[name] = importlib_metadata.version(name)
        except importlib_metadata.PackageNotFoundError:
            continue
    return versions


def _changed_training_args(args: Any) -> dict[str, Any]:
    """The TrainingArguments that differ from transformers' defaults (paths left out)."""
    if args is None:
        return {}
    from transformers import TrainingArguments

    # With use_cpu as in the run: building TrainingArguments resets accelerate's state, and
    # a CPU run under torchrun would otherwise be re-set up as not distributed (and warn so).
    defaults = TrainingArguments(output_dir=args.output_dir, use_cpu=args.use_cpu).to_dict()
    defaults["use_cpu"] = _field_default("use_cpu")
    skip = {"output_dir", "logging_dir"}
    changed = {}
    for key, value in args.to_dict().items():
        if key not in skip and defaults.get(key) != value:
            changed[key] = value if _json_safe(value) else str(value)
    return changed


def _field_default(name: str) -> Any:
    from transformers import TrainingArguments

    return next(field.default for field in dataclasses.fields(TrainingArguments) if field.name == name)


def _json_safe(value: Any) -> bool:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return False
    return True
