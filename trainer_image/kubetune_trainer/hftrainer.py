"""`HFTrainer`: txtai's HFTrainer call signature and behaviour, on transformers' Trainer.

    from kubetune_trainer import HFTrainer

    trainer = HFTrainer()
    model, tokenizer = trainer("bert-base-uncased", [{"text": "...", "label": 0}, ...])

After a call the instance keeps what the container runtime reports: `warnings`,
`metrics`, `quantized`, `adapter`, `labels`, the GPU defaults it applied (`gpu_defaults`,
see gpu_defaults.py) and the `trainer` itself.
"""

from __future__ import annotations

import logging
import os
import re
from typing import Any

from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training
from transformers import (
    BitsAndBytesConfig,
    PretrainedConfig,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    Trainer,
    TrainerCallback,
    set_seed,
)
from transformers.trainer_utils import get_last_checkpoint

from kubetune_api.tasks import misplaced_options, support_problems, task_info
from kubetune_trainer.errors import ConfigError
from kubetune_trainer.eval_metrics import Metrics, eval_results
from kubetune_trainer.feature_plan import SFTOptions, SFTReport
from kubetune_trainer.final_save import save_final_model
from kubetune_trainer.gpu_defaults import (
    CPU_ONLY,
    DeviceCapabilities,
    RunFacts,
    attention_default,
    describe,
    device_capabilities,
    kbit_checkpointing_kwargs,
    set_attention,
    training_defaults,
)
from kubetune_trainer.inputs import to_dataset
from kubetune_trainer.labels import DEFAULT_MAX_LABELS, LabelScheme
from kubetune_trainer.memory import limit_heap_fragmentation
from kubetune_trainer.model_loaders import is_pair
from kubetune_trainer.models import LoadReport, load_base, load_model
from kubetune_trainer.peft_config import lora_config, plan_quantization, quantization_config
from kubetune_trainer.task_recipes import check_task, prepare
from kubetune_trainer.training_args import KubetuneTrainingArguments, build_training_args, has_accelerator
from kubetune_trainer.transformers_trainer import PERPLEXITY_SUITE, KubetuneTrainer

logger = logging.getLogger(__name__)

QuantizeArg = bool | dict[str, Any] | BitsAndBytesConfig | None
LoraArg = bool | dict[str, Any] | LoraConfig | None

# Reported train metrics (the contract with the runtime): these plus eval metrics.
TRAIN_METRICS = ("train_loss", "train_runtime", "train_samples_per_second")
_DEFAULT_LABEL = re.compile(r"LABEL_\d+")


class HFTrainer:
    """Trains a Hugging Face transformers model for one of six tasks."""

    def __init__(self, capabilities: DeviceCapabilities | None = None) -> None:
        """Fresh state; every call resets it. `capabilities`: the machine's, probed when None (tests pass a GPU's)."""
        self.capabilities = capabilities
        self._reset()

    def _reset(self) -> None:
        self.warnings: list[str] = []
        self.metrics: dict[str, float] = {}
        self.quantized: bool = False
        self.adapter: bool = False
        self.labels: LabelScheme | None = None
        self.sft: SFTReport | None = None  # language-generation: format, masking, batching
        self.gpu_defaults: dict[str, Any] = {}  # what gpu_defaults.py chose, by argument name
        self.trainer: Trainer | None = None

    def _warn(self, message: str) -> None:
        logger.warning(message)
        self.warnings.append(message)

    def __call__(
        self,
        base: Any,
        train: Any,
        validation: Any = None,
        columns: tuple[str, ...] | list[str] | None = None,
        maxlength: int | None = None,
        stride: int = 128,
        task: str = "text-classification",
        prefix: str | None = None,
        metrics: Metrics | None = None,
        tokenizers: int | bool | None = None,
        checkpoint: str | bool | None = None,
        quantize: QuantizeArg = None,
        lora: LoraArg = None,
        callbacks: list[TrainerCallback] | None = None,
        maxlabels: int = DEFAULT_MAX_LABELS,
        format: str | None = None,  # the spec's data.format under the same name, shadowing the builtin here
        chat_template: str | None = None,
        train_on_prompt: bool = False,
        packing: bool | None = None,
        attn_implementation: str | None = None,
        **args: Any,
    ) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
        """Train `base` on `train` and return (model, tokenizer), the model in eval mode.

        Args:
            base: hub id, local path, or (model, tokenizer) from an earlier run
            train: list of dicts, pandas DataFrame, datasets.Dataset or data URI
            validation: optional evaluation data, same forms as train
            columns: columns to read, in task order (see `task_recipes.task_columns`)
            maxlength: maximum tokens per row; default the tokenizer's limit
            stride: question-answering window overlap in tokens
            task: text-classification, language-generation, language-modeling,
                question-answering, sequence-sequence or token-detection
            prefix: sequence-sequence text prepended to every source
            metrics: compute_metrics function for evaluation
            tokenizers: tokenization worker processes (True: one per CPU)
            checkpoint: resume from this checkpoint folder, or True for the latest in output_dir
            quantize: True (4-bit NF4), a dict of BitsAndBytesConfig arguments, or a config
            lora: True (r 16, alpha 8, all-linear), a dict of LoraConfig arguments, or a config
            callbacks: transformers TrainerCallbacks (progress reporting)
            maxlabels: text-classification: the most outputs a label head may have
            attn_implementation: the model's attention (eager, sdpa, flash_attention_2, ...);
                default on a GPU: flash_attention_2 where it can run, else sdpa (gpu_defaults.py)
            args: any transformers.TrainingArguments field (plus group_by_length)
        """
        self._reset()

        # Everything a user can get wrong is checked before any model is loaded.
        task = check_task(task)
        quantization = quantization_config(quantize)
        adapter = lora_config(task, lora)
        for option, problem in support_problems(task, lora=adapter is not None, quantize=quantization is not None):
            raise ConfigError(f"{problem}: remove {option}=")
        # As the seed, an option of another task is ignored; unlike it, the caller hears so.
        given = {
            "prefix": prefix,
            "chat_template": chat_template,
            "train_on_prompt": train_on_prompt or None,
            "packing": packing,
        }
        for option, owners in misplaced_options(task, [name for name, value in given.items() if value is not None]):
            self._warn(f"{option} is only used by task {owners}; ignored for {task}")
        if quantization is not None and adapter is None:
            raise ConfigError("quantize needs lora: a quantized model can only be trained through an adapter")
        training = build_training_args(args)
        if packing and training.use_cache:
            # With a KV cache transformers attends across the packed rows (see packing.py).
            raise ConfigError("packing needs use_cache off: remove use_cache=True")
        train_data = to_dataset(train, "train")
        validation_data = to_dataset(validation, "validation") if validation is not None else None
        resume = self._resume_point(checkpoint, training.output_dir or "")

        set_seed(training.seed)
        if training.use_cpu or not has_accelerator():
            # Opt-in (KUBETUNE_MALLOC_TUNING=1): less heap fragmentation for some speed; see memory.py.
            limit_heap_fragmentation()
        config, tokenizer, maxlength = load_base(base, maxlength)
        if tokenizer.pad_token is None:
            # As the seed: pad with EOS. Our causal LM collator still keeps EOS in the labels.
            tokenizer.pad_token = tokenizer.eos_token
        capabilities = self.capabilities or device_capabilities()
        quantized = plan_quantization(quantization).config is not None and not is_pair(base)
        facts = RunFacts(task, getattr(config, "model_type", None), quantized, adapter is not None)
        self.gpu_defaults = training_defaults(args, capabilities, facts)
        if self.gpu_defaults:
            training = build_training_args({**args, **self.gpu_defaults})

        prepared = prepare(
            task,
            train_data,
            validation_data,
            tokenizer,
            columns,
            maxlength,
            stride=stride,
            prefix=prefix,
            workers=os.cpu_count() if tokenizers is True else (tokenizers or None),
            pad_to_multiple_of=8 if training.fp16 or training.bf16 else None,
            lengths=training.train_sampling_strategy == "group_by_length",
            known_labels=_named_labels(config),
            max_labels=maxlabels,
            data_format=format,
            sft=SFTOptions(chat_template, train_on_prompt, packing),
        )
        for warning in prepared.warnings:
            self._warn(warning)
        self.labels = prepared.labels
        self.sft = prepared.sft

        model = self.model(task, base, config, prepared.labels, tokenizer, quantization)
        if model.config.pad_token_id is None:
            model.config.pad_token_id = tokenizer.pad_token_id
        self._choose_attention(model, attn_implementation, capabilities, training)
        if self.gpu_defaults and int(os.environ.get("RANK", "0")) == 0:
            # A warning because the trainer configures no log handler: lower levels never reach the pod log.
            logger.warning(describe(self.gpu_defaults))
        trained = self._peft(model, adapter, training)

        self.trainer = KubetuneTrainer(
            perplexity=task_info(task).metrics == PERPLEXITY_SUITE,
            model=trained,
            args=training,
            data_collator=prepared.collator,
            train_dataset=prepared.train,
            eval_dataset=prepared.validation,
            processing_class=tokenizer,
            compute_metrics=metrics,
            callbacks=callbacks,
        )
        if prepared.bind is not None:
            # Once the Trainer has put the model on its device: packing's check runs it as training will.
            with self.trainer.accelerator.autocast():
                prepared.bind(model)
        output = self.trainer.train(resume_from_checkpoint=resume)
        self.metrics = {key: float(output.metrics[key]) for key in TRAIN_METRICS if key in output.metrics}
        if prepared.validation is not None:
            self.metrics.update(eval_results(self.trainer.evaluate()))

        if training.output_dir:
            # Full model, or only the adapter with LoRA; the tokenizer goes beside it.
            save_final_model(self.trainer)

        return trained.eval(), tokenizer

    def model(
        self,
        task: str,
        base: Any,
        config: PretrainedConfig,
        labels: int | LabelScheme | None,
        tokenizer: PreTrainedTokenizerBase,
        quantize: QuantizeArg,
    ) -> PreTrainedModel:
        """Load the model to train for `task` (the seed's public `model` method).

        `labels`: number of labels (or a LabelScheme) for text-classification.
        Quantization without a GPU is skipped and recorded in `self.warnings`, unless
        `KUBETUNE_QUANTIZE_ON_CPU=1` forces bitsandbytes on CPU.
        """
        plan = plan_quantization(quantization_config(quantize))
        report = LoadReport()
        model = load_model(check_task(task), base, config, labels, tokenizer, plan, report)
        for warning in report.warnings:
            self._warn(warning)
        self.quantized = report.quantized
        return model

    def _choose_attention(
        self,
        model: PreTrainedModel,
        requested: str | None,
        capabilities: DeviceCapabilities,
        training: KubetuneTrainingArguments,
    ) -> None:
        """The user's attention implementation, else the GPU default (recorded when it changes the model's)."""
        if requested is not None:
            set_attention(model, requested, user_choice=True)
            return
        # use_cpu on a GPU node trains on the CPU: no GPU attention for it.
        choice = attention_default(
            model, CPU_ONLY if training.use_cpu else capabilities, bool(training.bf16 or training.fp16)
        )
        if choice is None or choice == model.config._attn_implementation:
            return
        if set_attention(model, choice, user_choice=False):
            self.gpu_defaults["attn_implementation"] = choice

    def _peft(self, model: PreTrainedModel, adapter: LoraConfig | None, training: KubetuneTrainingArguments) -> Any:
        """Wrap `model` with a LoRA adapter when asked; k-bit preparation only when quantized."""
        if adapter is None:
            return model
        if self.quantized:
            kwargs = training.activation_checkpointing_kwargs
            model = prepare_model_for_kbit_training(
                model,
                use_gradient_checkpointing=bool(training.activation_checkpointing),
                gradient_checkpointing_kwargs=kbit_checkpointing_kwargs(kwargs if isinstance(kwargs, dict) else None),
            )
        wrapped = get_peft_model(model, adapter)
        trainable, total = wrapped.get_nb_trainable_parameters()
        logger.info("LoRA: %d of %d parameters trainable", trainable, total)
        self.adapter = True
        return wrapped

    @staticmethod
    def _resume_point(checkpoint: str | bool | None, output_dir: str) -> str | bool | None:
        """What to pass to `trainer.train(resume_from_checkpoint=...)`, checked up front."""
        if checkpoint is True:
            if not output_dir or not os.path.isdir(output_dir) or get_last_checkpoint(output_dir) is None:
                raise ConfigError(
                    f"checkpoint=True resumes from the latest checkpoint-* folder in output_dir, "
                    f"but {output_dir or 'output_dir (not set)'!s} has none"
                )
            return True
        if isinstance(checkpoint, (str, os.PathLike)):
            if not os.path.isdir(checkpoint):
                raise ConfigError(f"checkpoint {checkpoint!s} is not a folder")
            return os.fspath(checkpoint)
        return None


def _named_labels(config: PretrainedConfig) -> dict[str, int] | None:
    """The base config's label2id when it holds real names (not LABEL_0, LABEL_1, ...)."""
    label2id = dict(getattr(config, "label2id", None) or {})
    if not label2id or all(_DEFAULT_LABEL.fullmatch(str(name)) for name in label2id):
        return None
    return {str(name): int(index) for name, index in label2id.items()}


__all__ = ["HFTrainer"]
