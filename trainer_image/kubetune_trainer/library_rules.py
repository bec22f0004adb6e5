"""What the libraries check beyond their type annotations, as read in their source, and proved.

Annotations say an argument's type; they do not say that peft refuses `r: 0`, that
BitsAndBytesConfig refuses 4-bit and 8-bit together, or that `fsdp` takes more shapes than
its annotation admits. Those facts were read in the installed sources and are written here,
each with where it was read. The generator does not take them on trust: every library bound
and rule carries probes (values the library must refuse, and for kubetune's own bounds a
value the library takes), and `catalogue_gen` runs them, so a library upgrade that drops or
changes a check fails the generator (and the drift test) instead of leaving a stale rule.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kubetune_api.argument_catalogue import ANY, ArgumentKind, Bound, Condition, CrossFieldRule, Shape


@dataclass(frozen=True)
class ProvedBound:
    kind: ArgumentKind
    argument: str
    bound: Bound
    refused: tuple[Any, ...] = ()  # values the library must refuse (library bounds)
    taken: tuple[Any, ...] = ()  # values outside the bound the library takes (kubetune bounds)
    # How to try a value when the check is not in the config class (None: build the class).
    probe: Callable[[Any], object] | None = None


@dataclass(frozen=True)
class ProvedRule:
    kind: ArgumentKind
    rule: CrossFieldRule
    refused: tuple[dict[str, Any], ...] = ()  # argument sets the library must refuse


@dataclass(frozen=True)
class ShapeOverride:
    """An argument whose annotation is narrower than what the library really takes."""

    kind: ArgumentKind
    argument: str
    shape: Shape
    why: str
    taken: tuple[Any, ...] = ()  # values of the wider shape the library must take
    refused: tuple[Any, ...] = ()  # values outside the narrower shape the library refuses
    probe: Callable[[Any], object] | None = None  # as ProvedBound.probe


TA = "transformers/training_args.py"
LORA_LAYER = "peft/tuners/lora/layer.py"
LORA_CONFIG = "peft/tuners/lora/config.py"
BNB_CONFIG = "transformers/utils/quantization_config.py"


# Any sized, indexable container is a map-style dataset to a DataLoader; torch's stubs want a Dataset.
_TWO_ITEMS: Any = [0, 1]


def _batch_size_probe(value: Any) -> object:
    from torch.utils.data import DataLoader

    return DataLoader(_TWO_ITEMS, batch_size=value)


def _workers_probe(value: Any) -> object:
    from torch.utils.data import DataLoader

    return DataLoader(_TWO_ITEMS, num_workers=value)


def _quant_type_probe(value: Any) -> object:
    import torch
    from bitsandbytes.functional import quantize_4bit

    return quantize_4bit(torch.zeros(64), quant_type=value)


def _lib(limit: str, value: float, source: str) -> Bound:
    return Bound(limit, value, "library", source)  # type: ignore[arg-type]


def _ours(limit: str, value: float, source: str) -> Bound:
    return Bound(limit, value, "kubetune", source)  # type: ignore[arg-type]


BOUNDS: tuple[ProvedBound, ...] = (
    ProvedBound(
        "trainingArgs",
        "warmup_steps",
        _lib("minimum", 0, f"{TA} TrainingArguments._validate_args: `if self.warmup_steps < 0: raise ValueError`"),
        refused=(-1,),
    ),
    ProvedBound(
        "trainingArgs",
        "torch_empty_cache_steps",
        _lib("minimum", 1, f"{TA} TrainingArguments._validate_args: must be an integer bigger than 0"),
        refused=(0,),
    ),
    ProvedBound(
        "trainingArgs",
        "per_device_train_batch_size",
        _lib("minimum", 1, "torch/utils/data/sampler.py BatchSampler (the Trainer's DataLoader): batch_size <= 0"),
        refused=(0,),
        probe=_batch_size_probe,
    ),
    ProvedBound(
        "trainingArgs",
        "per_device_eval_batch_size",
        _lib("minimum", 1, "torch/utils/data/sampler.py BatchSampler (the Trainer's DataLoader): batch_size <= 0"),
        refused=(0,),
        probe=_batch_size_probe,
    ),
    ProvedBound(
        "trainingArgs",
        "dataloader_num_workers",
        _lib("minimum", 0, "torch/utils/data/dataloader.py DataLoader: num_workers option should be non-negative"),
        refused=(-1,),
        probe=_workers_probe,
    ),
    ProvedBound(
        "trainingArgs",
        "gradient_accumulation_steps",
        _ours(
            "minimum",
            1,
            "kubetune rule: TrainingArguments takes 0, then transformers/trainer.py divides by it "
            "(ZeroDivisionError once training starts)",
        ),
        taken=(0,),
    ),
    ProvedBound(
        "trainingArgs",
        "learning_rate",
        _ours(
            "minimum",
            0,
            "kubetune rule: TrainingArguments takes a negative rate; torch's AdamW (the default optim) "
            "refuses it only when the optimizer is built, other optimizers never",
        ),
        taken=(-1.0,),
    ),
    ProvedBound(
        "lora",
        "r",
        _lib("minimum", 1, f"{LORA_LAYER} LoraLayer.update_layer: `if r <= 0: raise ValueError` (adapter applied)"),
        refused=(0, -4),
    ),
    ProvedBound(
        "lora",
        "lora_dropout",
        _lib("maximum", 1, "torch/nn/modules/dropout.py nn.Dropout (built by LoraLayer.update_layer when > 0): p > 1"),
        refused=(1.5,),
    ),
    ProvedBound(
        "lora",
        "lora_dropout",
        _ours(
            "minimum",
            0,
            f"kubetune rule: {LORA_LAYER} LoraLayer.update_layer builds a Dropout only when lora_dropout > 0, "
            "so a negative value silently means no dropout",
        ),
        taken=(-0.5,),
    ),
)


def _forbid(*conditions: tuple[str, str, Any]) -> tuple[Condition, ...]:
    return tuple(Condition(name, op, value) for name, op, value in conditions)  # type: ignore[arg-type]


RULES: tuple[ProvedRule, ...] = (
    ProvedRule(
        "trainingArgs",
        CrossFieldRule(
            "fp16-xor-bf16",
            _forbid(("fp16", "is", True), ("bf16", "is", True)),
            "fp16 and bf16 are mutually exclusive; keep one",
            "library",
            f"{TA} TrainingArguments._validate_args: At most one of fp16 and bf16 can be True",
        ),
        refused=({"fp16": True, "bf16": True},),
    ),
    ProvedRule(
        "trainingArgs",
        CrossFieldRule(
            "fp16-full-eval-xor-bf16-full-eval",
            _forbid(("fp16_full_eval", "is", True), ("bf16_full_eval", "is", True)),
            "fp16_full_eval and bf16_full_eval are mutually exclusive; keep one",
            "library",
            f"{TA} TrainingArguments._validate_args: At most one of fp16 and bf16 can be True for full eval",
        ),
        refused=({"fp16_full_eval": True, "bf16_full_eval": True},),
    ),
    ProvedRule(
        "trainingArgs",
        CrossFieldRule(
            "prefetch-needs-workers",
            _forbid(("dataloader_prefetch_factor", "set", None), ("dataloader_num_workers", "is", 0)),
            "dataloader_prefetch_factor needs dataloader_num_workers above 0 (prefetching happens in workers)",
            "library",
            f"{TA} TrainingArguments._validate_args: --dataloader_prefetch_factor can only be set when "
            "dataloader_num_workers > 0",
        ),
        refused=({"dataloader_prefetch_factor": 2},),
    ),
    ProvedRule(
        "trainingArgs",
        CrossFieldRule(
            "scheduler-needs-eval",
            _forbid(("lr_scheduler_type", "in", ["reduce_lr_on_plateau", "greedy"]), ("eval_strategy", "is", "no")),
            "lr_scheduler_type reduce_lr_on_plateau and greedy need an eval_strategy (steps or epoch)",
            "library",
            f"{TA} TrainingArguments._validate_args: lr_scheduler_type ... requires an eval strategy",
        ),
        refused=({"lr_scheduler_type": "reduce_lr_on_plateau"}, {"lr_scheduler_type": "greedy"}),
    ),
    ProvedRule(
        "trainingArgs",
        CrossFieldRule(
            "step-logging-needs-steps",
            _forbid(("logging_strategy", "is", "steps"), ("logging_steps", "is", 0)),
            "logging_strategy steps needs a logging_steps other than 0",
            "library",
            f"{TA} TrainingArguments._validate_args: logging strategy steps requires non-zero --logging_steps",
        ),
        refused=({"logging_steps": 0},),
    ),
    ProvedRule(
        "trainingArgs",
        CrossFieldRule(
            "one-sampling-setting",
            _forbid(("group_by_length", "set", None), ("train_sampling_strategy", "set", None)),
            "group_by_length is kubetune's alias of train_sampling_strategy; set one of them",
            "kubetune",
            "kubetune rule: kubetune_trainer/training_args.py ALIASES maps group_by_length onto "
            "train_sampling_strategy, and one would silently override the other",
        ),
    ),
    ProvedRule(
        "lora",
        CrossFieldRule(
            "layers-pattern-needs-layers",
            _forbid(("layers_pattern", "set", None), ("layers_to_transform", "unset", None)),
            "layers_pattern needs layers_to_transform",
            "library",
            f"{LORA_CONFIG} LoraConfig.__post_init__: When `layers_pattern` is specified, "
            "`layers_to_transform` must also be specified",
        ),
        refused=({"layers_pattern": ["layers"]},),
    ),
    ProvedRule(
        "lora",
        CrossFieldRule(
            "dora-without-megatron",
            _forbid(("use_dora", "is", True), ("megatron_config", "set", None)),
            "use_dora does not work with megatron_config; drop one",
            "library",
            f"{LORA_CONFIG} LoraConfig.__post_init__: DoRA does not support megatron_core",
        ),
        refused=({"use_dora": True, "megatron_config": {"num_layers": 1}},),
    ),
    ProvedRule(
        "lora",
        CrossFieldRule(
            "lora-bias-without-dora",
            _forbid(("lora_bias", "is", True), ("use_dora", "is", True)),
            "lora_bias is not supported with use_dora; drop one",
            "library",
            f"{LORA_CONFIG} LoraConfig.__post_init__: lora_bias=True is not supported for DoRA",
        ),
        refused=({"lora_bias": True, "use_dora": True},),
    ),
    ProvedRule(
        "lora",
        CrossFieldRule(
            "lora-bias-needs-plain-init",
            _forbid(("lora_bias", "is", True), ("init_lora_weights", "not_in", [True, False])),
            "lora_bias needs init_lora_weights true or false",
            "library",
            f"{LORA_CONFIG} LoraConfig.__post_init__: lora_bias=True is only supported with "
            "init_lora_weights=True or False",
        ),
        refused=({"lora_bias": True, "init_lora_weights": "gaussian"},),
    ),
    ProvedRule(
        "quantize",
        CrossFieldRule(
            "4bit-xor-8bit",
            _forbid(("load_in_4bit", "is", True), ("load_in_8bit", "is", True)),
            "load_in_4bit and load_in_8bit are mutually exclusive; keep one",
            "library",
            f"{BNB_CONFIG} BitsAndBytesConfig.__init__: load_in_4bit and load_in_8bit are both True, "
            "but only one can be used at the same time",
        ),
        refused=({"load_in_4bit": True, "load_in_8bit": True},),
    ),
)

SHAPE_OVERRIDES: tuple[ShapeOverride, ...] = (
    ShapeOverride(
        "trainingArgs",
        "fsdp",
        Shape(ANY, accepts=("array", "boolean", "string"), nullable=True),
        f"annotated `str | None`, but {TA} TrainingArguments._process_fsdp_args takes true, a string of "
        'options ("full_shard auto_wrap") or a list of them',
        taken=(True, "full_shard auto_wrap", ["full_shard", "auto_wrap"]),
    ),
    ShapeOverride(
        "quantize",
        "bnb_4bit_quant_type",
        Shape("string", enum=("fp4", "nf4")),
        'bitsandbytes/functional.py quantize_4bit: `if quant_type not in ("nf4", "fp4"): raise ValueError` '
        "(when the model is quantized; BitsAndBytesConfig itself only checks for a string)",
        refused=("nf5", "int4"),
        probe=_quant_type_probe,
    ),
)
