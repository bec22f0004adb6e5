"""Normalise the `quantize` and `lora` arguments into library config objects.

Pure functions (no model is touched) so every accepted form can be tested cheaply:
`True` (seed defaults), a dict, a ready `BitsAndBytesConfig` / `LoraConfig`, and
`False` / `None` (off).
"""

from __future__ import annotations

import inspect
import os
from dataclasses import dataclass
from typing import Any

import torch
from peft import LoraConfig, TaskType
from transformers import BitsAndBytesConfig

from kubetune_api.arguments import as_library_values
from kubetune_api.suggestions import closest
from kubetune_api.tasks import TASKS
from kubetune_trainer.errors import ConfigError

# Env switch that lets CI exercise the real k-bit path on a machine without a GPU:
# bitsandbytes 4-bit / 8-bit runs on CPU with device_map="cpu" and float32 compute.
ENV_QUANTIZE_ON_CPU = "KUBETUNE_QUANTIZE_ON_CPU"

# The seed's defaults for `quantize=True`.
DEFAULT_QUANTIZE: dict[str, Any] = {
    "load_in_4bit": True,
    "bnb_4bit_use_double_quant": True,
    "bnb_4bit_quant_type": "nf4",
    "bnb_4bit_compute_dtype": "bfloat16",
}

# The seed's defaults for `lora=True`; task_type is derived from the task.
DEFAULT_LORA: dict[str, Any] = {
    "r": 16,
    "lora_alpha": 8,
    "target_modules": "all-linear",
    "lora_dropout": 0.05,
    "bias": "none",
}

# The peft task type of each task, as the task registry names it.
LORA_TASK_TYPES: dict[str, TaskType] = {task.value: TaskType[info.peft_task_type] for task, info in TASKS.items()}


def _accepted_keys(cls: type) -> list[str]:
    """Keyword names `cls` really uses (BitsAndBytesConfig swallows unknown ones)."""
    params = inspect.signature(cls).parameters  # the constructor's, without self
    names = [n for n, p in params.items() if n != "self" and p.kind is not p.VAR_KEYWORD]
    return names + [n for n in getattr(cls, "__dataclass_fields__", {}) if n not in names]


def _from_dict(cls: type, values: dict[str, Any], what: str) -> Any:
    """Build `cls(**values)`, turning a misspelt or invalid key into a ConfigError."""
    valid = _accepted_keys(cls)
    bad = [key for key in values if key not in valid]
    if bad:
        hints = "; ".join(f"unknown argument {key!r}{closest(key, valid)}" for key in bad)
        raise ConfigError(f"{what}: {hints}")
    try:
        return cls(**values)
    except (TypeError, ValueError) as error:
        raise ConfigError(f"{what}: {error}") from error


def quantization_config(quantize: bool | dict[str, Any] | BitsAndBytesConfig | None) -> BitsAndBytesConfig | None:
    """The `BitsAndBytesConfig` that `quantize` asks for, or None when it is off."""
    if quantize is None or quantize is False:
        return None
    if quantize is True:
        return BitsAndBytesConfig(**DEFAULT_QUANTIZE)
    if isinstance(quantize, BitsAndBytesConfig):
        return quantize
    if isinstance(quantize, dict):
        if not quantize:
            return None
        # A whole number in JSON (6.0 arrives as 6) where BitsAndBytesConfig insists on a float.
        return _from_dict(BitsAndBytesConfig, as_library_values("quantize", quantize), "quantize")
    raise ConfigError(
        f"quantize must be true, false, a dict of BitsAndBytesConfig arguments or a "
        f"BitsAndBytesConfig, not {type(quantize).__name__}"
    )


def lora_task_type(task: str) -> TaskType:
    """The peft task type that matches a kubetune task (text-classification by default)."""
    return LORA_TASK_TYPES.get(task, TaskType.SEQ_CLS)


def lora_config(task: str, lora: bool | dict[str, Any] | LoraConfig | None) -> LoraConfig | None:
    """The `LoraConfig` that `lora` asks for, or None when it is off.

    Unlike the seed, a user's dict is copied, never modified in place.
    """
    if lora is None or lora is False:
        return None
    if isinstance(lora, LoraConfig):
        return lora
    if lora is True:
        lora = dict(DEFAULT_LORA)
    if isinstance(lora, dict):
        if not lora:
            return None
        values = dict(lora)
        values.setdefault("task_type", lora_task_type(task))
        return _from_dict(LoraConfig, values, "lora")
    raise ConfigError(
        f"lora must be true, false, a dict of LoraConfig arguments or a LoraConfig, not {type(lora).__name__}"
    )


def quantize_on_cpu_forced() -> bool:
    """True when the env asks for the k-bit path even without a GPU (tests, CI)."""
    return os.environ.get(ENV_QUANTIZE_ON_CPU, "").strip().lower() in {"1", "true", "yes", "on"}


@dataclass(frozen=True)
class QuantizationPlan:
    """How the base model will be loaded: the config to use (or None), where, and why."""

    config: BitsAndBytesConfig | None
    device_map: str | None = None
    warning: str | None = None


def plan_quantization(
    config: BitsAndBytesConfig | None,
    cuda_available: bool | None = None,
    force_cpu: bool | None = None,
) -> QuantizationPlan:
    """Decide whether quantization can happen on this machine.

    Without a GPU the seed silently dropped quantization; here it is dropped with a
    warning the caller records, unless `KUBETUNE_QUANTIZE_ON_CPU` forces the CPU
    k-bit path (bitsandbytes supports it, with float32 compute: bfloat16 matmuls on
    CPU are slow or unsupported).
    """
    if config is None:
        return QuantizationPlan(None)
    cuda = torch.cuda.is_available() if cuda_available is None else cuda_available
    force = quantize_on_cpu_forced() if force_cpu is None else force_cpu
    if cuda:
        return QuantizationPlan(config)
    if not force:
        return QuantizationPlan(
            None,
            warning=(
                "quantization skipped: no CUDA GPU is available, so the model is loaded "
                f"unquantized (set {ENV_QUANTIZE_ON_CPU}=1 to force bitsandbytes on CPU)"
            ),
        )
    values = config.to_dict()
    values.pop("quant_method", None)
    values["bnb_4bit_compute_dtype"] = "float32"
    return QuantizationPlan(BitsAndBytesConfig(**values), device_map="cpu")
