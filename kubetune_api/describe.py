"""One line saying what a job trains, for `kubetune validate` and `kubetune run`.

It is told from the spec alone (no data is read): what the run detects from the data is
said to be detected, and kubetune.json records what it found.
"""

from __future__ import annotations

from kubetune_api.tasks import TASKS, Task
from kubetune_api.training import TrainingSpec

# What the loss covers by default, per data format that has a prompt.
_ANSWERS = {"chat": "the assistant turns", "prompt-completion": "the completion"}


def describe_training(spec: TrainingSpec) -> str:
    """e.g. "language-generation, chat data, loss on the assistant turns, packed into 2048-token sequences"."""
    info = TASKS[Task(spec.task)]
    parts = [info.task.value]
    if len(info.formats) > 1:
        parts += _data_parts(spec)
    if spec.lora is not None:
        parts.append("QLoRA" if spec.quantize is not None else "LoRA")
    return ", ".join(parts)


def _data_parts(spec: TrainingSpec) -> list[str]:
    data_format = spec.data.format
    parts = [f"{data_format} data" if data_format else "data format detected from the data"]
    if spec.train_on_prompt:
        parts.append("loss on every token")
    elif data_format in _ANSWERS:
        parts.append(f"loss on {_ANSWERS[data_format]}")
    elif data_format is None:
        parts.append("loss on the answers of chat and prompt-completion data")
    length = f"{spec.max_length}-token" if spec.max_length else "maxLength"
    if spec.packing:
        parts.append(f"packed into {length} sequences")
    elif spec.packing is False or data_format in _ANSWERS:
        parts.append("padded per batch")
    elif data_format == "text":
        parts.append(f"concatenated into {length} blocks")
    return parts
