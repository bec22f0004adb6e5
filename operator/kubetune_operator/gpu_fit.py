"""Does a run's memory estimate fit the GPUs it may land on? (pure)

The GPUs a run may land on are those of the nodes its nodeSelector matches that carry
NVIDIA GPU feature discovery's `nvidia.com/gpu.memory` label (MiB per GPU); without such
a node, the operator's KUBETUNE_GPU_MEMORY setting; without either, nothing is checked.
Node affinity, taints and cordons are not looked at: the largest matching GPU is a
generous bound, so a warning means no candidate is large enough.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from kubetune_api.finetunejob import FineTuneJobSpec
from kubetune_api.memory_estimate import MemoryEstimate
from kubetune_api.quantity import format_bytes

GPU_MEMORY_LABEL = "nvidia.com/gpu.memory"  # MiB of one GPU, set by GPU feature discovery
SETTING = "KUBETUNE_GPU_MEMORY"


@dataclass(frozen=True)
class Gpu:
    memory: int  # bytes
    source: str  # where the figure comes from, for the message


def _labels(node: Mapping[str, Any]) -> Mapping[str, str]:
    return node.get("metadata", {}).get("labels") or {}


def largest_gpu(
    nodes: Sequence[Mapping[str, Any]], node_selector: Mapping[str, str], setting: int | None
) -> Gpu | None:
    """The largest GPU among the nodes the selector matches, else the setting's, else None."""
    best: Gpu | None = None
    for node in nodes:
        labels = _labels(node)
        if any(labels.get(key) != value for key, value in node_selector.items()):
            continue
        try:
            memory = int(labels.get(GPU_MEMORY_LABEL, "")) * 2**20
        except ValueError:
            continue
        if best is None or memory > best.memory:
            name = node.get("metadata", {}).get("name", "?")
            best = Gpu(memory, f"node {name}, label {GPU_MEMORY_LABEL}")
    if best is None and setting is not None:
        return Gpu(setting, f"the operator's {SETTING}")
    return best


def how_to_fit(spec: FineTuneJobSpec) -> list[str]:
    """What in the spec could be changed to need less memory, most effective first."""
    args = spec.all_training_args()
    changes = []
    if spec.lora is None:
        changes.append("lora: true (train an adapter, not the whole model)")
    if spec.quantize is None:
        changes.append("quantize: true with lora (QLoRA: 4-bit base weights)")
    if not (args.get("gradient_checkpointing") or args.get("activation_checkpointing")):
        changes.append("trainingArgs.gradient_checkpointing: true")
    if int(args.get("per_device_train_batch_size") or 8) > 1:
        changes.append(
            "a smaller trainingArgs.per_device_train_batch_size (gradient_accumulation_steps keeps the batch)"
        )
    changes.append("a smaller maxLength")
    return changes


def memory_warning(estimate: MemoryEstimate, spec: FineTuneJobSpec, gpu: Gpu | None) -> str | None:
    """The warning for a run whose estimate exceeds its largest GPU; None when it fits or is unknown."""
    if gpu is None or spec.resources.gpus == 0 or estimate.fits(gpu.memory):
        return None
    return (
        f"the run may not fit its GPU: it needs {estimate.describe()}, and the largest GPU it can land on has "
        f"{format_bytes(gpu.memory)} ({gpu.source}). To need less: {'; '.join(how_to_fit(spec))}. "
        "The Job is created all the same: this is an estimate"
    )
