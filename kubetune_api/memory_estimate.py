"""How much GPU memory a FineTuneJob needs, from the model's config.json and the spec (pure).

`estimate_memory(config, spec)` counts, for one GPU of the run:

* weights: every parameter at the dtype it trains in. transformers 5 loads with
  dtype="auto" (the config's dtype); bitsandbytes NF4/FP4 stores 0.5 B per weight of the
  blocks' linear layers plus one absmax per 64 weights (fp32, or 8-bit plus an fp32 per
  256 blocks with double quantization: QLoRA paper, Dettmers et al. 2023, section 3),
  LLM.int8 1 B plus an fp32 scale per output row; embeddings, norms, biases and the heads
  are not quantized, and peft's `prepare_model_for_kbit_training` casts them to fp32.
  LoRA adds r x (in + out) per targeted linear, in fp32 (peft's autocast_adapter_dtype);
  modules_to_save a trainable copy of the module;
* gradients: one per trainable parameter, at its dtype;
* optimizer state: AdamW two moments per trainable parameter at its dtype (the Trainer
  keeps no separate fp32 master copy: with bf16/fp16 mixed precision the weights stay
  in the dtype they were loaded in), 8-bit optimizers 1 B per moment, Adafactor factored
  row and column statistics, SGD none;
* activations saved for the backward pass, per token and layer (after Korthikanti et al.
  2022, "Reducing Activation Recomputation in Large Transformer Models", section 4.1,
  whose GPT layer stores 34 x hidden bytes per token at 16 bits; the attention scores
  term is left out: SDPA, the transformers default, keeps no seq x seq matrix):
  attention: input, Q, K, V, attention output; MLP: input and the intermediate tensors
  (4 x intermediate gated, 2 x plain); the two norms' inputs; LoRA dropout's copy of each
  targeted linear's input and its mask. With gradient checkpointing a layer keeps only
  its input and one layer is recomputed at a time. Language-model tasks add the logits:
  batch x seq x vocab at the compute dtype, their fp32 copy for the loss and its
  gradient (they dominate small models);
* overhead: CUDA context, cuBLAS workspaces and the caching allocator's slack, a rule of
  thumb (CUDA_CONTEXT + ALLOCATOR_SLACK of the rest), not a measurement.

It ignores: data-loader and pinned host memory (not GPU), the evaluation pass, KV caches,
DeepSpeed/FSDP sharding (each GPU is counted as holding everything), eager attention's
scores matrix, DoRA's extra norm, and the ELECTRA generator's size (token-detection
counts the model twice). bench/memory_estimate.py compares it with published figures
and with tensors measured on CPU.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kubetune_api.model_shapes import Linear, ModelShape, ShapeError, model_shape
from kubetune_api.quantity import format_bytes
from kubetune_api.tasks import Task
from kubetune_api.training import TrainingSpec

__all__ = ["EstimateError", "MemoryEstimate", "TrainingPlan", "estimate_memory", "plan_of"]

GiB = 2**30
CUDA_CONTEXT = int(0.75 * GiB)  # context + cuBLAS/cuDNN workspaces on a recent GPU
ALLOCATOR_SLACK = 0.10  # reserved over allocated in PyTorch's caching allocator
NF4_BLOCK = 64  # weights per absmax (bitsandbytes blocksize for 4-bit)
DOUBLE_QUANT_BLOCK = 256  # absmax values per second-level fp32 constant
DEFAULT_SEQ = 512  # when neither maxLength nor the config says
LOGIT_TASKS = frozenset({Task.LANGUAGE_GENERATION, Task.LANGUAGE_MODELING, Task.TOKEN_DETECTION})
# peft's default target_modules per model type (TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING).
PEFT_DEFAULT_TARGETS: dict[str, tuple[str, ...]] = {
    "gpt2": ("c_attn",),
    "gpt_neox": ("query_key_value",),
    "bert": ("query", "value"),
    "roberta": ("query", "value"),
    "xlm-roberta": ("query", "value"),
    "electra": ("query", "value"),
    "distilbert": ("q_lin", "v_lin"),
    "phi3": ("qkv_proj",),
    "phi": ("q_proj", "v_proj", "fc1", "fc2"),
}
# Optimizer state bytes per trainable parameter: (states, bytes each or None for the param dtype).
OPTIMIZER_STATES: dict[str, tuple[int, int | None]] = {
    "sgd": (0, None),
    "adagrad": (1, None),
    "rmsprop": (1, None),
    "rmsprop_bnb": (1, 4),
    "rmsprop_bnb_32bit": (1, 4),
    "rmsprop_bnb_8bit": (1, 1),
    "lion_32bit": (1, 4),
    "paged_lion_32bit": (1, 4),
    "lion_8bit": (1, 1),
    "paged_lion_8bit": (1, 1),
    "adamw_8bit": (2, 1),
    "adamw_bnb_8bit": (2, 1),
    "paged_adamw_8bit": (2, 1),
    "adamw_torch_8bit": (2, 1),
    "adamw_torch_4bit": (2, 0),  # half a byte each: counted below
    "paged_adamw_32bit": (2, 4),
    "ademamix": (3, None),
    "ademamix_8bit": (3, 1),
    "paged_ademamix_8bit": (3, 1),
    "paged_ademamix_32bit": (3, 4),
}
ADAMW_LIKE = ("adamw", "stable_adamw", "schedule_free", "adamw_anyprecision", "grokadamw")


class EstimateError(ValueError):
    """No estimate for this model or spec (the reason is the message)."""


@dataclass(frozen=True)
class TrainingPlan:
    """What in a spec decides the memory: the spec's fields with their defaults filled in."""

    task: Task
    quantization: str | None = None  # "nf4", "fp4" or "int8"
    double_quant: bool = False
    lora_r: int | None = None  # None: no LoRA, full fine-tuning
    lora_targets: str | tuple[str, ...] = "all-linear"
    lora_dropout: float = 0.0
    modules_to_save: tuple[str, ...] = ()
    mixed_precision: bool = False  # bf16 or fp16 autocast
    optim: str = "adamw_torch_fused"
    batch: int = 8
    seq: int = DEFAULT_SEQ
    checkpointing: bool = False


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes one GPU of the run needs, by part; `total` is what to compare with a GPU."""

    weights: int
    gradients: int
    optimizer: int
    activations: int
    overhead: int
    parameters: int  # of the model (LoRA included)
    trainable: int
    loaded_weights: int  # right after from_pretrained, before k-bit preparation and LoRA
    notes: tuple[str, ...] = ()

    @property
    def total(self) -> int:
        return self.weights + self.gradients + self.optimizer + self.activations + self.overhead

    def fits(self, gpu_bytes: int) -> bool:
        return self.total <= gpu_bytes

    def describe(self) -> str:
        """One line: the total and its parts."""
        parts = (
            f"weights {format_bytes(self.weights)}, gradients {format_bytes(self.gradients)}, "
            f"optimizer {format_bytes(self.optimizer)}, activations {format_bytes(self.activations)}, "
            f"CUDA and allocator {format_bytes(self.overhead)}"
        )
        return (
            f"about {format_bytes(self.total)} of GPU memory ({parts}; "
            f"{_count(self.parameters)} parameters, {_count(self.trainable)} trainable)"
        )


def _count(n: int) -> str:
    return f"{n / 1e9:.2f} B" if n >= 1e9 else f"{n / 1e6:.1f} M"


def _flag(args: Mapping[str, Any], *names: str) -> bool:
    return any(bool(args.get(name)) for name in names)


def plan_of(spec: TrainingSpec, shape: ModelShape) -> TrainingPlan:
    """The TrainingPlan of a spec, with the trainer's and the libraries' defaults."""
    args = spec.all_training_args()
    quantization, double_quant = None, False
    if spec.quantize is True:
        quantization, double_quant = "nf4", True  # kubetune's quantize: true
    elif isinstance(spec.quantize, dict):
        if spec.quantize.get("load_in_4bit"):
            quantization = str(spec.quantize.get("bnb_4bit_quant_type") or "fp4")
            double_quant = bool(spec.quantize.get("bnb_4bit_use_double_quant"))
        elif spec.quantize.get("load_in_8bit"):
            quantization = "int8"
    lora: dict[str, Any] = {}
    if spec.lora is True:
        lora = {"r": 16, "target_modules": "all-linear", "lora_dropout": 0.05}  # kubetune's lora: true
    elif isinstance(spec.lora, dict):
        lora = dict(spec.lora)
    targets = lora.get("target_modules")
    if targets is None:
        targets = PEFT_DEFAULT_TARGETS.get(shape.model_type, ("q_proj", "v_proj"))
    seq = spec.max_length or min(shape.max_positions or DEFAULT_SEQ, 131072)
    return TrainingPlan(
        task=Task(spec.task),
        quantization=quantization,
        double_quant=double_quant,
        lora_r=int(lora.get("r") or 8) if spec.lora else None,
        lora_targets=targets if isinstance(targets, str) else tuple(targets),
        lora_dropout=float(lora.get("lora_dropout") or 0.0),
        modules_to_save=tuple(lora.get("modules_to_save") or ()),
        mixed_precision=_flag(args, "bf16", "fp16"),
        optim=str(args.get("optim") or "adamw_torch_fused"),
        batch=int(args.get("per_device_train_batch_size") or 8),
        seq=seq,
        checkpointing=_flag(args, "gradient_checkpointing", "activation_checkpointing"),
    )


def targeted(linears: tuple[Linear, ...], targets: str | tuple[str, ...]) -> list[Linear]:
    """The linears LoRA wraps: all of a block's for all-linear, else those peft's names match."""
    if targets == "all-linear":
        return list(linears)
    if isinstance(targets, str):  # a regex peft full-matches against module names
        return [linear for linear in linears if re.search(targets, linear.name)]
    return [linear for linear in linears if linear.name in targets]


def head_params(shape: ModelShape, task: Task) -> int:
    """The task head's parameters (an untied LM head included)."""
    h = shape.hidden
    if task == Task.TEXT_CLASSIFICATION:
        if shape.family == "encoder":  # pooler (pre_classifier) and classifier, with biases
            return h * h + h + h * shape.num_labels + shape.num_labels
        return h * shape.num_labels  # a decoder's score layer
    if task == Task.QUESTION_ANSWERING:
        return 2 * h + 2
    if task == Task.SEQUENCE_SEQUENCE:
        raise EstimateError("sequence-sequence needs an encoder-decoder model, which the estimate does not model")
    lm_head = 0 if shape.tied else shape.vocab * h
    if shape.family == "encoder":  # MLM transform (dense + LayerNorm) and the decoder's bias
        lm_head += h * h + 3 * h + shape.vocab
    return lm_head


def _quantized_bytes(weights: int, rows: int, plan: TrainingPlan) -> float:
    if plan.quantization == "int8":
        return weights + 4 * rows
    absmax = weights / NF4_BLOCK
    constants = absmax + 4 * absmax / DOUBLE_QUANT_BLOCK if plan.double_quant else 4 * absmax
    return weights / 2 + constants


@dataclass(frozen=True)
class Tensors:
    """`count` trainable tensors of rows x cols, `size` bytes per element."""

    rows: int
    cols: int
    count: int
    size: int

    @property
    def elements(self) -> int:
        return self.rows * self.cols * self.count


def _optimizer_bytes(plan: TrainingPlan, trainable: list[Tensors], notes: list[str]) -> float:
    name = plan.optim
    if name.startswith("paged_"):
        notes.append(f"{name}: its state can page out to host memory under pressure; counted on the GPU")
    if "adafactor" in name:  # factored second moment: a row and a column vector per matrix, fp32
        return sum(4 * t.count * (t.rows + t.cols if t.cols > 1 else t.rows) for t in trainable)
    states, size = OPTIMIZER_STATES.get(name, (2, None))
    if name not in OPTIMIZER_STATES and not name.startswith(ADAMW_LIKE):
        notes.append(f"optimizer {name} is not modelled: counted as AdamW (two moments)")
    if name == "adamw_torch_4bit":
        return sum(t.elements for t in trainable)  # two moments at half a byte
    return sum(states * t.elements * (size or t.size) for t in trainable)


def _activation_bytes(shape: ModelShape, plan: TrainingPlan, lora: list[Linear], act: int, copies: int) -> float:
    tokens = plan.batch * plan.seq
    h = shape.hidden
    attention = h + 2 * shape.q_dim + 2 * shape.kv_dim
    mlp = h + (4 if shape.family == "gated-decoder" else 2) * shape.intermediate * shape.experts_per_token
    per_layer = (attention + mlp + 2 * h) * act
    if plan.lora_dropout > 0:  # dropout(x) and its mask, per targeted linear
        per_layer += sum(linear.inputs for linear in lora) * (act + 1)
    # Checkpointed: each layer keeps only its input, and one layer is recomputed at a time.
    layers = shape.layers * h * act + per_layer if plan.checkpointing else shape.layers * per_layer
    total = tokens * (layers + 2 * h * act)  # embeddings' output and the final norm
    if plan.task in LOGIT_TASKS:
        upcast = 4 if act != 4 else 0
        total += tokens * shape.vocab * (act + upcast + 4)
    return total * copies


def estimate_memory(config: Mapping[str, Any], spec: TrainingSpec) -> MemoryEstimate:
    """The GPU memory `spec` needs with the model `config` describes; EstimateError if unknown."""
    try:
        shape = model_shape(config)
    except ShapeError as error:
        raise EstimateError(str(error)) from None
    return estimate_for_plan(shape, plan_of(spec, shape))


def estimate_for_plan(shape: ModelShape, plan: TrainingPlan) -> MemoryEstimate:
    notes: list[str] = []
    copies = 2 if plan.task == Task.TOKEN_DETECTION else 1
    if copies == 2:
        notes.append("token-detection: the generator is counted as large as the discriminator")
    head = head_params(shape, plan.task)
    base = shape.dtype_bytes
    # Non-quantized parameters after k-bit preparation are fp32 (peft casts 16-bit ones).
    rest_bytes = 4 if plan.quantization else base
    linear_weights = shape.layers * shape.block_linear_weights
    other = shape.body_params - linear_weights + head  # embeddings, norms, biases, heads
    rows = shape.layers * sum(linear.outputs * linear.copies for linear in shape.linears)
    if plan.quantization:
        quantized = _quantized_bytes(linear_weights, rows, plan)
        loaded = quantized + other * base
        weights = quantized + other * rest_bytes
    else:
        loaded = weights = (linear_weights + other) * base
    lora = targeted(shape.linears, plan.lora_targets) if plan.lora_r else []
    if plan.lora_r:
        if not lora:
            raise EstimateError(f"lora.target_modules {plan.lora_targets!r} matches no linear layer of the model")
        r, n = plan.lora_r, shape.layers
        trainable = [Tensors(li.inputs, r, n * li.copies, 4) for li in lora]  # A, fp32
        trainable += [Tensors(r, li.outputs, n * li.copies, 4) for li in lora]  # B
        if plan.lora_targets == "all-linear" and _has_pooler(shape, plan.task):  # the pooler's dense is a linear
            trainable += [Tensors(shape.hidden, r, 1, 4), Tensors(r, shape.hidden, 1, 4)]
        # modules_to_save, and the task head peft trains (a copy of each, beside the original)
        saved = _modules_to_save(shape, plan) + _saved_head(shape, plan.task, head)
        trainable.append(Tensors(saved, 1, 1, rest_bytes))
        weights += sum(t.elements * t.size for t in trainable)
    else:
        trainable = [Tensors(li.inputs, li.outputs, shape.layers * li.copies, base) for li in shape.linears]
        trainable.append(Tensors(other, 1, 1, base))
    trainable_params = sum(t.elements for t in trainable)
    gradients = sum(t.elements * t.size for t in trainable)
    optimizer = _optimizer_bytes(plan, trainable, notes)
    act = 2 if plan.mixed_precision else rest_bytes
    activations = _activation_bytes(shape, plan, lora, act, copies)
    tensors = copies * (weights + gradients + optimizer) + activations
    lora_params = trainable_params if plan.lora_r else 0
    return MemoryEstimate(
        weights=int(copies * weights),
        gradients=int(copies * gradients),
        optimizer=int(copies * optimizer),
        activations=int(activations),
        overhead=int(CUDA_CONTEXT + ALLOCATOR_SLACK * tensors),
        parameters=copies * (linear_weights + other + lora_params),
        trainable=copies * trainable_params,
        loaded_weights=int(copies * loaded),
        notes=tuple(notes),
    )


def _has_pooler(shape: ModelShape, task: Task) -> bool:
    return shape.family == "encoder" and task == Task.TEXT_CLASSIFICATION


def _saved_head(shape: ModelShape, task: Task, head: int) -> int:
    """The part of the task head peft trains under LoRA (its classifier, score or qa_outputs)."""
    if task in LOGIT_TASKS:
        return 0
    if _has_pooler(shape, task):
        return shape.hidden * shape.num_labels + shape.num_labels  # the pooler stays frozen
    return head


EMBEDDING_NAMES = frozenset({"lm_head", "embed_out", "embed_tokens", "wte", "word_embeddings", "embed_in"})


def _modules_to_save(shape: ModelShape, plan: TrainingPlan) -> int:
    """Parameters of the modules_to_save the plan names that matter: embeddings and the LM head."""
    return sum(shape.vocab * shape.hidden for name in plan.modules_to_save if name in EMBEDDING_NAMES)
