"""The defaults kubetune adds on a CUDA GPU when the run does not say: one place decides them.

What a run gets depends on a small frozen `DeviceCapabilities`, probed once from torch,
so tests hand in a GPU's capabilities instead of needing one. Each default is applied
only when the user did not set the argument (the user's value always wins), and only on
CUDA: on a CPU (or Apple MPS) machine the TrainingArguments are exactly the seed's.

On a GPU (docs/gpu.md has the table users read, with how to turn each off):

* bf16 where the GPU computes in bfloat16 natively: half the activation memory, tensor
  cores, and float32's range, so no loss scaling;
* tf32 on Ampere or newer: float32 matmuls on tensor cores (10-bit mantissa);
* optim adamw_torch_fused: one kernel for all parameters (transformers' own default with
  torch >= 2.8, written out for older torch);
* activation checkpointing for quantized LoRA: QLoRA is how big models fit small GPUs,
  and activations are what is left to save;
* use_reentrant False whenever checkpointing is on and its kwargs do not say: torch's
  recommended variant (the reentrant one needs inputs that require grad; a frozen base
  has none);
* use_liger_kernel for causal LMs of a model type liger-kernel patches, when installed;
* attention: flash_attention_2 where flash-attn, an Ampere+ GPU, half precision and the
  model allow it, else sdpa where the model supports it.

fp16 is never a default: it needs loss scaling and can overflow and diverge where bf16
trains as float32 does; a user who wants it (GPUs before Ampere) says `fp16: true`.
"""

from __future__ import annotations

import functools
import json
import logging
from dataclasses import dataclass
from typing import Any

from transformers import PreTrainedModel

from kubetune_trainer.errors import ConfigError

logger = logging.getLogger(__name__)

# Ampere: bf16 and TF32 tensor cores, and the oldest architecture flash-attn 2 supports.
AMPERE = (8, 0)
FUSED_ADAMW = "adamw_torch_fused"
FLASH_ATTENTION = "flash_attention_2"
SDPA = "sdpa"
# Liger's patches are written for the causal LM forward (fused linear cross-entropy over the LM head).
LIGER_TASKS = frozenset({"language-generation"})
# Both spellings of each checkpointing argument (transformers 5 renamed gradient_* to activation_*).
CHECKPOINTING = ("activation_checkpointing", "gradient_checkpointing")
CHECKPOINTING_KWARGS = ("activation_checkpointing_kwargs", "gradient_checkpointing_kwargs")
# activation_checkpointing_kwargs keys the Trainer consumes itself; the rest go to torch.utils.checkpoint.
TRAINER_CHECKPOINTING_KEYS = frozenset({"every_n_layers", "offload"})


@dataclass(frozen=True)
class DeviceCapabilities:
    """What this machine can do that the defaults depend on (the first CUDA device's)."""

    cuda: bool = False
    bf16: bool = False  # native bfloat16, not emulated
    compute_capability: tuple[int, int] | None = None
    flash_attn: bool = False  # flash-attn 2 importable, as transformers checks it
    liger_model_types: frozenset[str] = frozenset()  # model types liger-kernel patches; empty when not installed

    @property
    def ampere_or_newer(self) -> bool:
        return self.cuda and self.compute_capability is not None and self.compute_capability >= AMPERE


CPU_ONLY = DeviceCapabilities()


@functools.cache
def device_capabilities() -> DeviceCapabilities:
    """This machine's capabilities, probed once (the probe imports nothing a CPU run lacks)."""
    import torch

    if not torch.cuda.is_available():
        return CPU_ONLY
    from transformers.utils import is_flash_attn_2_available, is_liger_kernel_available

    return DeviceCapabilities(
        cuda=True,
        bf16=torch.cuda.is_bf16_supported(including_emulation=False),
        compute_capability=tuple(torch.cuda.get_device_capability()),  # type: ignore[arg-type]
        flash_attn=is_flash_attn_2_available(),
        liger_model_types=_liger_model_types() if is_liger_kernel_available() else frozenset(),
    )


def _liger_model_types() -> frozenset[str]:
    # Liger's own table of the model types it can patch, so the list follows the installed version.
    from liger_kernel.transformers.monkey_patch import MODEL_TYPE_TO_APPLY_LIGER_FN

    return frozenset(MODEL_TYPE_TO_APPLY_LIGER_FN)


@dataclass(frozen=True)
class RunFacts:
    """What the training-argument defaults depend on besides the machine."""

    task: str
    model_type: str | None
    quantized: bool  # the base is loaded in 4 or 8 bits (not merely asked for)
    adapter: bool  # a LoRA adapter is trained


def training_defaults(args: dict[str, Any], caps: DeviceCapabilities, run: RunFacts) -> dict[str, Any]:
    """TrainingArguments values to add to `args` (the user's): only names `args` leaves unset.

    The one exception is the checkpointing kwargs: a user's dict without `use_reentrant`
    comes back with `use_reentrant: False` added (and the user's keys as they were).
    """
    updates: dict[str, Any] = {}
    if caps.cuda and not args.get("use_cpu"):
        if caps.bf16 and "bf16" not in args and not args.get("fp16"):
            updates["bf16"] = True
        if caps.ampere_or_newer and "tf32" not in args:
            updates["tf32"] = True
        if "optim" not in args:
            updates["optim"] = FUSED_ADAMW
        if run.quantized and run.adapter and not any(name in args for name in CHECKPOINTING):
            updates["activation_checkpointing"] = True
        if run.task in LIGER_TASKS and run.model_type in caps.liger_model_types and "use_liger_kernel" not in args:
            updates["use_liger_kernel"] = True
        # Written out on a GPU only: it is transformers' own default when the kwargs are
        # empty, so a CPU run keeps exactly the arguments it was given.
        checkpointing = any(args.get(name) for name in CHECKPOINTING) or updates.get("activation_checkpointing", False)
        if checkpointing:
            updates.update(_non_reentrant(args))
    return updates


def _non_reentrant(args: dict[str, Any]) -> dict[str, Any]:
    """The checkpointing kwargs with use_reentrant=False unless they name it, under the user's spelling."""
    # The new name wins in transformers when both are given; a new setting goes under it too.
    name = next((name for name in CHECKPOINTING_KWARGS if args.get(name) is not None), CHECKPOINTING_KWARGS[0])
    given = args.get(name)
    if isinstance(given, str) and given.startswith("{"):
        given = json.loads(given)  # TrainingArguments reads a JSON string the same way
    if given is not None and not isinstance(given, dict):
        return {}  # a path or another form: transformers judges it
    if given is not None and "use_reentrant" in given:
        return {}
    return {name: {**(given or {}), "use_reentrant": False}}


def kbit_checkpointing_kwargs(kwargs: dict[str, Any] | None) -> dict[str, Any]:
    """The checkpointing kwargs for peft's prepare_model_for_kbit_training.

    peft hands them to torch.utils.checkpoint, which knows nothing of the Trainer's own
    keys; and its choice between enable_input_require_grads and an embedding hook
    follows use_reentrant, so it must see the value the Trainer will use.
    """
    values = {key: value for key, value in (kwargs or {}).items() if key not in TRAINER_CHECKPOINTING_KEYS}
    values.setdefault("use_reentrant", False)  # what transformers uses when the kwargs are empty
    return values


def pretrained_parts(model: PreTrainedModel) -> list[PreTrainedModel]:
    """The model and every transformers model inside it (token detection holds two)."""
    return [module for module in model.modules() if isinstance(module, PreTrainedModel)]


def attention_default(model: PreTrainedModel, caps: DeviceCapabilities, half_precision: bool) -> str | None:
    """The attention kubetune picks for `model`, or None to keep what transformers chose."""
    if not caps.cuda:
        return None
    parts = pretrained_parts(model)
    if caps.flash_attn and caps.ampere_or_newer and half_precision and all(p._supports_flash_attn for p in parts):
        return FLASH_ATTENTION
    if all(p._supports_sdpa for p in parts):
        return SDPA
    return None


def set_attention(model: PreTrainedModel, implementation: str, user_choice: bool) -> bool:
    """Switch `model` to `implementation`; True when it did.

    The user's choice that transformers refuses is a ConfigError; a default it refuses
    leaves the model's own (logged).
    """
    try:
        model.set_attn_implementation(implementation)
    except (ValueError, ImportError) as error:
        if user_choice:
            raise ConfigError(f"attn_implementation={implementation!r}: {error}") from error
        logger.warning("attention stays %s: %s", model.config._attn_implementation, error)
        return False
    return True


def describe(applied: dict[str, Any]) -> str:
    """One log line naming each default applied and where to turn it off."""
    settings = ", ".join(f"{name}={value!r}" for name, value in applied.items())
    return (
        f"GPU defaults applied: {settings} (set any of them in trainingArgs, or spec.attnImplementation, "
        "to choose otherwise; see docs/gpu.md)"
    )
