"""Build `transformers.TrainingArguments` from keyword arguments, with the seed's defaults.

Defaults (each overridable): nothing written to disk unless `output_dir` is given
(output_dir "", save_strategy "no"), no experiment trackers, warning-level logs, CPU
when no accelerator, and batches grouped by length (`group_by_length=False` turns it
off). Grouping is what makes per-batch padding pay: a random batch of varied texts
nearly always holds one long row, so it pads almost as much as padding to the longest
row of the whole set (bench/trainer_vs_txtai.py --workload long-tail: 1.3x txtai's
samples/s ungrouped, 3.6x grouped, same accuracy; see length_batches.py and
docs/performance.md). A misspelt argument is a ConfigError naming the
closest valid names, instead of a TypeError deep inside transformers.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Any

import torch
from transformers import TrainingArguments

from kubetune_api.suggestions import closest
from kubetune_trainer.errors import ConfigError

# Names accepted on top of TrainingArguments' fields. `group_by_length` was a
# TrainingArguments field before transformers 5 (now train_sampling_strategy).
# Each maps to (field, value when true, value when false).
ALIASES: dict[str, tuple[str, Any, Any]] = {
    "group_by_length": ("train_sampling_strategy", "group_by_length", "random"),
}


class KubetuneTrainingArguments(TrainingArguments):
    """TrainingArguments whose output_dir may be empty: then nothing is saved.

    transformers 5 creates output_dir whenever should_save is true, which fails for "".
    """

    @property
    def should_save(self) -> bool:
        """The usual main-process rule, and only when there is somewhere to save."""
        return bool(self.output_dir) and super().should_save


def training_fields() -> list[str]:
    """Every keyword TrainingArguments accepts in the installed transformers."""
    return [field.name for field in dataclasses.fields(TrainingArguments) if field.init]


def has_accelerator() -> bool:
    """True when torch sees a CUDA or Apple MPS device."""
    mps = getattr(torch.backends, "mps", None)
    return torch.cuda.is_available() or bool(mps and mps.is_available())


# The seed's defaults that do not depend on the machine (use_cpu does; see defaults()).
STATIC_DEFAULTS: dict[str, Any] = {
    "output_dir": "",
    "save_strategy": "no",
    "report_to": "none",
    "log_level": "warning",
    "train_sampling_strategy": "group_by_length",
}


def defaults() -> dict[str, Any]:
    """The seed's default TrainingArguments values."""
    return {**STATIC_DEFAULTS, "use_cpu": not has_accelerator()}


def unknown_names(names: Iterable[str]) -> str | None:
    """'unknown training argument ...' with the closest valid names, or None when all are known."""
    valid = [*training_fields(), *ALIASES]
    unknown = [name for name in names if name not in valid]
    if not unknown:
        return None
    return "unknown training argument " + "; ".join(f"{name!r}{closest(name, valid)}" for name in unknown)


def build_training_args(updates: dict[str, Any]) -> KubetuneTrainingArguments:
    """TrainingArguments from the defaults overridden by `updates`."""
    problem = unknown_names(updates)
    if problem is not None:
        raise ConfigError(problem)

    values = defaults()
    for name, value in updates.items():
        if name in ALIASES:
            target, on, off = ALIASES[name]
            values[target] = on if value else off
        else:
            values[name] = value
    if values.get("output_dir") is None:
        values["output_dir"] = ""
    try:
        return KubetuneTrainingArguments(**values)
    except (TypeError, ValueError) as error:
        raise ConfigError(f"invalid training arguments: {error}") from error
